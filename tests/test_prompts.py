import pytest

from lib import prompts

ROW = {
    "id": "q1",
    "contexto": "Ana mora em Recife.",
    "pergunta": "Onde Ana mora?",
    "A": "Em Natal.",
    "B": "Em Recife.",
    "C": "Em Belém.",
    "D": "Nenhuma das opções acima.",
    "Label": "B",
}


@pytest.mark.parametrize("tok_fixture, eos", [("gemma_tokenizer", "<eos>"), ("smol_tokenizer", "<|im_end|>")])
def test_alpaca_pt_without_input_is_byte_exact(request, tok_fixture, eos):
    tokenizer = request.getfixturevalue(tok_fixture)
    out = prompts.format_alpaca_pt({"instruction": "Liste três frutas.", "input": "", "output": "1. Caju"}, tokenizer)
    expected_prompt = (
        "Abaixo está uma instrução que descreve uma tarefa. Escreva uma resposta que conclua adequadamente a "
        "solicitação.\n\n### Instrução:\nListe três frutas.\n\n### Resposta:\n"
    )
    assert out["prompt"] == expected_prompt
    assert out["completion"] == "1. Caju" + eos
    assert out["text"] == expected_prompt + "1. Caju" + eos


def test_alpaca_pt_with_input_is_byte_exact(gemma_tokenizer):
    row = {"instruction": "Resuma o texto.", "input": 'Choveu "muito" em São Paulo.', "output": "Choveu."}
    out = prompts.format_alpaca_pt(row, gemma_tokenizer)
    assert out["text"] == (
        "Abaixo está uma instrução que descreve uma tarefa, emparelhada com uma entrada que fornece mais contexto. "
        "Escreva uma resposta que conclua adequadamente a solicitação.\n\n### Instrução:\nResuma o texto.\n\n"
        '### Entrada:\nChoveu "muito" em São Paulo.\n\n### Resposta:\nChoveu.<eos>'
    )


def test_whitespace_only_input_uses_the_template_without_input(gemma_tokenizer):
    blank = prompts.format_alpaca_pt({"instruction": "Oi", "input": "  \n", "output": "Olá"}, gemma_tokenizer)
    none = prompts.format_alpaca_pt({"instruction": "Oi", "input": None, "output": "Olá"}, gemma_tokenizer)
    assert blank == none
    assert "### Entrada:" not in blank["prompt"]


def test_a_tokenizer_without_eos_is_refused(gemma_tokenizer):
    class NoEos:
        eos_token = None

    with pytest.raises(ValueError, match="eos_token"):
        prompts.format_alpaca_pt({"instruction": "Oi", "input": "", "output": "Olá"}, NoEos())


@pytest.mark.parametrize("tok_fixture", ["gemma_tokenizer", "smol_tokenizer"])
def test_cosmos_training_and_inference_render_the_same_prefix(request, tok_fixture):
    tokenizer = request.getfixturevalue(tok_fixture)
    out = prompts.render_cosmos(ROW, tokenizer)
    inference = tokenizer.apply_chat_template(
        prompts.cosmos_messages(ROW, with_answer=False), tokenize=False, add_generation_prompt=True
    )
    training = tokenizer.apply_chat_template(prompts.cosmos_messages(ROW), tokenize=False)
    assert out["prompt"] == inference
    assert out["prompt"] + out["completion"] == out["text"] == training
    assert out["completion"].startswith("Alternativa B")
    assert prompts.COSMOS_SYSTEM_PROMPT in out["prompt"]
    for letter in "ABCD":
        assert f"Alternativa {letter}) {ROW[letter]}" in out["prompt"]
    assert "Alternativa B" not in out["prompt"].split("Alternativa D)")[-1]  # the answer never leaks


def test_cosmos_unlabeled_row_renders_prompt_only(gemma_tokenizer):
    out = prompts.render_cosmos({**ROW, "Label": None}, gemma_tokenizer)
    assert out["completion"] == "" and out["text"] == out["prompt"]


def test_cosmos_needs_a_chat_template(gemma_tokenizer):
    class Plain:
        chat_template = None

    with pytest.raises(ValueError, match="chat template"):
        prompts.render_cosmos(ROW, Plain())


def test_length_report_on_known_numbers():
    report = prompts.length_report([10, 20, 30, 50], max_length=25)
    assert report["n"] == 4 and report["max"] == 50 and report["n_over_max_length"] == 2
    assert report["tokens_cut"] == 5 + 25
    assert report["pad_to_max_waste"] == round(1 - (10 + 20 + 25 + 25) / 100, 4)


def test_token_lengths_do_not_double_the_bos(gemma_tokenizer):
    text = prompts.render_cosmos(ROW, gemma_tokenizer)["text"]
    ids = gemma_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids.count(gemma_tokenizer.bos_token_id) == 1
    assert prompts.token_lengths([text], gemma_tokenizer) == [len(ids)]
