import json

import pytest

from lib import evaluate, inference, instructions, pipeline, synthetic
from lib.evaluate import INVALID

OPTIONS = {
    "A": "Ela foi à praia.",
    "B": "Ela visitou a avó.",
    "C": "Ela estudou para a prova.",
    "D": "Nenhuma das opções acima.",
}


# ---------------------------------------------------------------- parser (kinds of answers seen in the prior work)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Alternativa B", "B"),
        ("alternativa c", "C"),
        ("Alternativa D) Nenhuma das opções acima.", "D"),
        ("A resposta correta é a letra C.", "C"),
        ("a resposta correta é (a) D", "D"),
        ("Resposta: A", "A"),
        ("Opção A", "A"),
        ("A alternativa correta é a B, porque ela visitou a avó.", "B"),
        ("B", "B"),
        ("(C)", "C"),
        ("C) Ela estudou para a prova.", "C"),
        ("Ela visitou a avó no domingo.", "B"),  # option text, no letter
        ("Alternativa B. A alternativa B está correta.", "B"),  # the same letter twice is fine
    ],
)
def test_parser_reads_letters_and_option_text(text, expected):
    assert evaluate.parse_answer(text, OPTIONS) == (expected, None)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty answer"),
        ("Alternativa E", "does not exist (E)"),  # invented option E
        ("Alternativa E) Ela ficou em casa. A resposta correta é a alternativa E.", "does not exist (E)"),
        ("Alternativa K", "does not exist (K)"),
        ("Alternativa A) errada. Alternativa B) errada. Alternativa C) certa.", "several different letters"),
        ("A resposta é a letra A ou a letra C.", "several different letters"),
        ("Não sei responder essa pergunta.", "no letter and no option text found"),
        ("Ela foi à praia. Ela visitou a avó.", "text matches several options"),
    ],
)
def test_parser_explains_invalid_answers(text, reason):
    letter, why = evaluate.parse_answer(text, OPTIONS)
    assert letter == INVALID and reason in why


def test_parser_does_not_read_the_portuguese_article_as_a_letter():
    assert evaluate.parse_answer("A praia era o destino dela.", OPTIONS)[0] == INVALID


# ---------------------------------------------------------------- statistics on known inputs


def test_bootstrap_ci_brackets_the_mean_and_is_seeded():
    values = [1] * 70 + [0] * 30
    low, high = evaluate.bootstrap_ci(values, seed=1)
    assert low < 0.7 < high and 0.55 < low and high < 0.85
    assert evaluate.bootstrap_ci(values, seed=1) == [low, high]
    assert evaluate.bootstrap_ci([1, 1, 1]) == [1.0, 1.0]


def test_mcnemar_exact_on_known_tables():
    # 10 discordant pairs, all in favour of b: p = 2 * 0.5**10
    a = [False] * 10 + [True] * 5
    b = [True] * 10 + [True] * 5
    result = evaluate.mcnemar_exact(a, b)
    assert result["only_a_right"] == 0 and result["only_b_right"] == 10
    assert result["p_value"] == pytest.approx(2 * 0.5**10)
    assert evaluate.mcnemar_exact([True, False], [True, False])["p_value"] == 1.0
    assert evaluate.mcnemar_exact([True] * 3 + [False] * 3, [False] * 3 + [True] * 3)["p_value"] == 1.0


def test_mc_metrics_on_hand_made_predictions():
    preds = [
        {"gold": "A", "pred": "A", "correct": True, "invalid_reason": None, "has_none_option": True},
        {"gold": "B", "pred": INVALID, "correct": False, "invalid_reason": "empty answer"},
        {"gold": "C", "pred": "A", "correct": False, "invalid_reason": None},
        {
            "gold": "D",
            "pred": "D",
            "correct": True,
            "invalid_reason": None,
            "has_none_option": True,
            "gold_is_none": True,
        },
    ]
    m = evaluate.mc_metrics(preds)
    assert m["n"] == 4 and m["accuracy"] == 0.5 and m["invalid_rate"] == 0.25
    assert m["accuracy_valid_only"] == round(2 / 3, 4) and m["invalid_reasons"] == {"empty answer": 1}
    assert m["confusion"]["C"]["A"] == 1 and m["confusion"]["B"][INVALID] == 1
    assert m["accuracy_by_type"]["with_none_option"] == 1.0 and m["accuracy_by_type"]["gold_is_none_option"] == 1.0
    assert m["pred_distribution"] == {"A": 2, "B": 0, "C": 0, "D": 1, INVALID: 1}


# ---------------------------------------------------------------- instruction-following metrics on known strings


def test_list_requests_and_items():
    assert instructions.requested_items("Liste exatamente três frutas tropicais.") == 3
    assert instructions.requested_items("Cite 4 capitais do Nordeste.") == 4
    assert instructions.requested_items("Dê duas dicas de estudo.") == 2
    assert instructions.requested_items("Explique o que é fotossíntese.") is None
    assert instructions.count_list_items("1. Caju\n2. Manga\n3. Açaí") == 3
    assert instructions.count_list_items("- a\n- b\nfim") == 2


def test_repetition_metrics():
    looped = instructions.repetition("um dois três quatro " * 5)
    assert looped["repeated_4gram_rate"] == pytest.approx(1 - 4 / 17)
    assert looped["distinct_1"] == pytest.approx(4 / 20)
    assert instructions.repetition("cada palavra aqui é diferente das outras")["repeated_4gram_rate"] == 0


def test_text_metrics_handle_portuguese_accents():
    same = instructions.text_metrics(["A ação é rápida."], ["A ação é rápida."])
    assert same["rouge_l"] == pytest.approx(100) and same["chrf"] == pytest.approx(100)
    # rouge-score's default tokenizer would drop "ação"/"rápida" and call these identical
    different = instructions.text_metrics(["ação rápida"], ["emoção lenta"])
    assert different["rouge_l"] == 0


def test_contamination_counts_exact_and_normalised_matches():
    result = evaluate.contamination(
        ["Ana mora em Recife.", "ANA mora em recife!", "Outro texto."], ["Ana mora em Recife."]
    )
    assert result == {"n_eval": 3, "exact": 1, "normalized": 2}


# ---------------------------------------------------------------- on the embedded model


@pytest.fixture(scope="module")
def gemma():
    return inference.load_for_eval("embedded", quantize_4bit=False)


@pytest.fixture(scope="module")
def questions():
    return list(synthetic.generate(seed=5, sizes={"validation": 10})["validation"])


def test_letter_tokens_split_at_the_answer_letter(gemma, smol_tokenizer):
    _, tokenizer = gemma
    for tok in (tokenizer, smol_tokenizer):
        prompt = tok.apply_chat_template(
            [{"role": "user", "content": "Oi"}], tokenize=False, add_generation_prompt=True
        )
        prefix, firsts = evaluate.letter_tokens(tok, prompt)
        assert len(set(firsts)) == 4
        for letter, token_id in zip("ABCD", firsts):
            assert tok.decode([token_id]).strip() == letter
            assert tok.decode(prefix + [token_id]).endswith(f"Alternativa {letter}") or tok.decode(
                prefix + [token_id]
            ).endswith(f"Alternativa{letter}")


def test_letters_mode_is_invariant_to_batch_size(gemma, questions):
    net, tokenizer = gemma
    runs = [evaluate.score_letters(net, tokenizer, questions, batch_size=b) for b in (1, 3, 10)]
    assert [r["pred"] for r in runs[0]] == [r["pred"] for r in runs[1]] == [r["pred"] for r in runs[2]]
    for a, b in zip(runs[0], runs[2]):
        assert max(abs(a["probs"][k] - b["probs"][k]) for k in "ABCD") < 1e-3


def test_options_and_generate_modes_run(gemma, questions):
    net, tokenizer = gemma
    options = evaluate.evaluate_mc(net, tokenizer, questions[:3], "options", batch_size=4)
    assert all(p["pred"] in "ABCD" and p["pred_norm"] in "ABCD" for p in options)
    generated = evaluate.evaluate_mc(net, tokenizer, questions[:2], "generate", batch_size=2, max_new_tokens=8)
    for p in generated:
        assert p["pred"] in list("ABCD") + [INVALID] and isinstance(p["output"], str)
        assert (p["pred"] == INVALID) == (p["invalid_reason"] is not None)


def test_perplexity_counts_only_the_completion(gemma):
    net, tokenizer = gemma
    low = instructions.completion_perplexity(net, tokenizer, [("A capital do Brasil é", " Brasília.")])
    high = instructions.completion_perplexity(net, tokenizer, [("A capital do Brasil é", " zebra azul cantando.")])
    assert 1 < low < high


def test_a_bad_adapter_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        inference.load_for_eval("embedded", adapter=str(tmp_path / "missing"))


@pytest.mark.slow
def test_notebook_06_evaluates_valid_rows_and_reports_rejected_ones(tmp_path):
    good = list(synthetic.generate(seed=9, sizes={"validation": 6})["validation"])
    lines = (
        [json.dumps(r, ensure_ascii=False) for r in good[:3]]
        + ["{broken", json.dumps({**good[3], "Label": "Z"})]
        + [json.dumps(r, ensure_ascii=False) for r in good[4:]]
    )
    source = tmp_path / "questions.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "results"
    pipeline.run(
        "smoke",
        only=["06"],
        results_root=out,
        overrides={
            "adapter": None,
            "data": str(source),
            "split": "train",
            "generate_limit": 0,
            "sample_data": None,
            "train_data": None,
            "load_in_4bit": False,
        },
    )
    folder = out / "smoke" / "06_accuracy_analysis"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["n"] == 5 and metrics["rejected_rows"] == 2 and metrics["adapter"] is None
    assert 0 <= metrics["ci95"][0] <= metrics["accuracy"] <= metrics["ci95"][1] <= 1
    predictions = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    assert [p["id"] for p in predictions] == [r["id"] for r in good[:3] + good[4:]]
    assert {"id", "gold", "pred", "correct"} <= set(predictions[0])
    rejects = [json.loads(line) for line in (folder / "rejects.jsonl").read_text().splitlines()]
    assert [r["location"] for r in rejects] == ["line 4", "line 5"]


# ---------------------------------------------------------------- shared-prompt scoring (one pass over the context)


def _natural_validation(limit=None):
    from lib import data, paths

    loaded, _ = data.load(paths.SAMPLES / "cosmos_qa_ptbr", "cosmos_qa_pt", splits=["validation"], limit=limit)
    return list(loaded["validation"])


def _with_random_lora(net):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(
        net, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM")
    ).eval()


@pytest.mark.parametrize(
    "model, quantize, adapter, limit",
    [
        ("zephyr-7b-beta-tiny", False, False, None),  # every question of the validation split: Mistral, sliding window
        ("zephyr-7b-beta-tiny", True, False, None),  # ... in 4-bit
        ("zephyr-7b-beta-tiny", True, True, None),  # ... with a (random, non-zero) LoRA adapter
        ("embedded", True, True, 6),  # Gemma 3 (soft-capping, 262k vocabulary) + the committed adapter
    ],
)
@pytest.mark.slow
def test_shared_prompt_options_equal_scoring_each_option_whole(model, quantize, adapter, limit):
    from lib import paths, prompts

    rows = _natural_validation(limit)
    committed = paths.ROOT / "results" / "smoke" / "05_qlora_cosmos_qa" / "adapter" / "final_adapter"
    if adapter and model == "embedded":
        net, tokenizer = inference.load_for_eval(model, str(committed), quantize_4bit=quantize)
    else:
        net, tokenizer = inference.load_for_eval(model, quantize_4bit=quantize)
        net = _with_random_lora(net) if adapter else net
    pairs = [(prompts.render_cosmos(r, tokenizer)["prompt"], r[k]) for r in rows for k in "ABCD"]
    whole = evaluate.continuation_logprobs(net, tokenizer, pairs, batch_size=8)
    shared = evaluate.score_options(net, tokenizer, rows, batch_size=8)
    for i, (row, got) in enumerate(zip(rows, shared)):
        raw = [whole[4 * i + k][0] for k in range(4)]
        assert max(abs(got["logprobs"][k] - raw[n]) for n, k in enumerate("ABCD")) < 1e-4, row["id"]
        expected = evaluate._options_prediction(row, raw)
        assert (got["pred"], got["pred_norm"]) == (expected["pred"], expected["pred_norm"]), row["id"]


def test_letters_and_options_from_one_pass_equal_the_two_passes():
    net, tokenizer = inference.load_for_eval("zephyr-7b-beta-tiny", quantize_4bit=True)
    rows = _natural_validation(40)
    letters, options = evaluate.score_letters_and_options(net, tokenizer, rows, batch_size=8)
    alone = evaluate.score_letters(net, tokenizer, rows, batch_size=8)
    assert [p["pred"] for p in letters] == [p["pred"] for p in alone]
    assert max(abs(a["probs"][k] - b["probs"][k]) for a, b in zip(letters, alone) for k in "ABCD") < 1e-5
    assert [p["pred"] for p in options] == [p["pred"] for p in evaluate.score_options(net, tokenizer, rows)]
    both = evaluate.mc_runs(net, tokenizer, rows, ["letters", "options"], "zephyr-7b-beta-tiny", None)
    assert both["letters"][0]["accuracy"] == evaluate.mc_run(net, tokenizer, rows, "letters", "t", None)[0]["accuracy"]
    assert "acc_norm" in both["options"][0]


def test_shared_prefix_scoring_of_uneven_continuations():
    """Continuations of different lengths and counts per context, one empty-suffix edge: still the whole-pair scores."""
    net, tokenizer = inference.load_for_eval("zephyr-7b-beta-tiny", quantize_4bit=False)
    groups = [
        ("Pergunta: qual é a cor do céu?\nResposta:", [" azul", " azul-claro num dia sem nuvens", " cinza"]),
        ("Uma frase bem mais longa, com vírgulas, acentos e números (1, 2, 3) antes da resposta:", [" sim", " não"]),
    ]
    shared = evaluate.shared_prefix_logprobs(net, tokenizer, groups, batch_size=2)
    whole = evaluate.continuation_logprobs(net, tokenizer, [(c, x) for c, xs in groups for x in xs], batch_size=2)
    flat = [score for group in shared for score in group]
    assert [n for _, n in flat] == [n for _, n in whole]
    assert max(abs(a - b) for (a, _), (b, _) in zip(flat, whole)) < 1e-4
