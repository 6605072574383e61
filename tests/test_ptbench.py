"""Standard Portuguese benchmarks (lib.ptbench, lib.ptbench_tasks): the leaderboard's exact prompts, answer rules and
metrics on hand-made items, the shipped data, bad input, generation after a shared prefix, servers and resuming."""

from __future__ import annotations

import dataclasses
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lib import api, ptbench, ptbench_tasks
from lib.ptbench_tasks import INVALID, TASKS, BenchDataError, TaskData, read_choice, read_label, read_number

EXAM = {
    "id": "x_1",
    "question": "Quanto é 2 + 2?\nResponda com atenção.",
    "choices": {"text": ["3", "4", "5", "22", "nenhuma"], "label": list("ABCDE")},
    "answerKey": "B",
}
EXAM_SHOT = {
    "id": "x_0",
    "question": "Qual é a capital do Brasil?",
    "choices": {"text": ["Rio", "Brasília", "Salvador", "Recife", "Belém"], "label": list("ABCDE")},
    "answerKey": "B",
}
PAIR = {"sentence_pair_id": 7, "premise": "Um homem toca violão", "hypothesis": "Alguém toca um instrumento"}
PAIR |= {"relatedness_score": 4.25, "entailment_judgment": 1}
PAIR_SHOT = {"sentence_pair_id": 1, "premise": "Uma mulher corta cebolas", "hypothesis": "Um gato dorme"}
PAIR_SHOT |= {"relatedness_score": 1.0, "entailment_judgment": 0}
QA = {"question": "Quando a USP foi fundada?", "answer": "A USP foi fundada em 1934.", "label": 1}
QA_SHOT = {"question": "O que é o CNPq?", "answer": "O prédio fica no centro.", "label": 0}
TEXT = {"idx": 9, "sentence": "que dia lindo hoje", "label": 0}
TEXT_SHOT = {"idx": 3, "sentence": "você é um palhaço", "label": 1}
TWEET = {"id": "9", "sentence": "adorei o jogo de ontem", "label": "Positive"}
TWEET_SHOT = {"id": "3", "sentence": "o ônibus atrasou de novo", "label": "Negative"}

# The prompt each task sends for one hand-made shot and item, written out by hand from the fork's YAML.
EXPECTED = {
    "enem_challenge": (
        EXAM_SHOT,
        EXAM,
        "As perguntas a seguir são questões de múltipla escolha do Exame Nacional do Ensino Médio (ENEM), selecione "
        'a única alternativa correta e responda apenas com as letras "A", "B", "C", "D" ou "E".\n\n'
        "Pergunta:\nQual é a capital do Brasil?\nAlternativas:\nA. Rio\nB. Brasília\nC. Salvador\nD. Recife\n"
        "E. Belém\nResposta correta: B\n\n"
        "Pergunta:\nQuanto é 2 + 2?\nResponda com atenção.\nAlternativas:\nA. 3\nB. 4\nC. 5\nD. 22\nE. nenhuma\n"
        "Resposta correta:",
    ),
    "bluex": (
        EXAM_SHOT,
        EXAM,
        "As perguntas a seguir são questões de múltipla escolha de provas de vestibular de universidades brasileiras, "
        'selecione a única alternativa correta e responda apenas com as letras "A", "B", "C", "D" ou "E".\n\n'
        "Pergunta:\nQual é a capital do Brasil?\nAlternativas:\nA. Rio\nB. Brasília\nC. Salvador\nD. Recife\n"
        "E. Belém\nResposta correta: B\n\n"
        "Pergunta:\nQuanto é 2 + 2?\nResponda com atenção.\nAlternativas:\nA. 3\nB. 4\nC. 5\nD. 22\nE. nenhuma\n"
        "Resposta correta:",
    ),
    "oab_exams": (
        {**EXAM_SHOT, "choices": {"text": ["Rio", "Brasília", "Salvador", "Recife"], "label": list("ABCD")}},
        {**EXAM, "choices": {"text": ["3", "4", "5", "22"], "label": list("ABCD")}},
        "As perguntas a seguir são questões de múltipla escolha do Exame de Ordem da Ordem dos Advogados do Brasil "
        '(OAB), selecione a única alternativa correta e responda apenas com as letras "A", "B", "C" ou "D".\n\n'
        "Questão:\nQual é a capital do Brasil?\nAlternativas:\nA. Rio\nB. Brasília\nC. Salvador\nD. Recife\n"
        "Resposta correta: B\n\n"
        "Questão:\nQuanto é 2 + 2?\nResponda com atenção.\nAlternativas:\nA. 3\nB. 4\nC. 5\nD. 22\n"
        "Resposta correta:",
    ),
    "assin2_rte": (
        PAIR_SHOT,
        PAIR,
        "Abaixo estão pares de premissa e hipótese. Para cada par, indique se a hipótese pode ser inferida a partir "
        'da premissa, responda apenas com "Sim" ou "Não".\n\n'
        "Premissa: Uma mulher corta cebolas\nHipótese: Um gato dorme\nPergunta: A hipótese pode ser inferida pela "
        "premissa? Sim ou Não?\nResposta: Não\n\n"
        "Premissa: Um homem toca violão\nHipótese: Alguém toca um instrumento\nPergunta: A hipótese pode ser "
        "inferida pela premissa? Sim ou Não?\nResposta:",
    ),
    "assin2_sts": (
        PAIR_SHOT,
        PAIR,
        "Abaixo estão pares de frases que você deve avaliar o grau de similaridade. Dê uma pontuação entre 1,0 e 5,0, "
        "sendo 1,0 pouco similar e 5,0 muito similar.\n\n"
        "Frase 1: Uma mulher corta cebolas\nFrase 2: Um gato dorme\nPergunta: Quão similares são as duas frases? Dê "
        "uma pontuação entre 1,0 a 5,0.\nResposta: 1,0\n\n"
        "Frase 1: Um homem toca violão\nFrase 2: Alguém toca um instrumento\nPergunta: Quão similares são as duas "
        "frases? Dê uma pontuação entre 1,0 a 5,0.\nResposta:",
    ),
    "faquad_nli": (
        QA_SHOT,
        QA,
        "Abaixo estão pares de pergunta e resposta. Para cada par, você deve julgar se a resposta responde à pergunta "
        'de maneira satisfatória e aparenta estar correta. Escreva apenas "Sim" ou "Não".\n\n'
        "Pergunta: O que é o CNPq?\nResposta: O prédio fica no centro.\nA resposta dada satisfaz à pergunta? Sim ou "
        "Não? Não\n\n"
        "Pergunta: Quando a USP foi fundada?\nResposta: A USP foi fundada em 1934.\nA resposta dada satisfaz à "
        "pergunta? Sim ou Não?",
    ),
    "hatebr_offensive": (
        TEXT_SHOT,
        TEXT,
        "Abaixo contém o texto de comentários de usuários do Instagram em português, sua tarefa é classificar se o "
        'texto é ofensivo ou não. Responda apenas com "Sim" ou "Não".\n\n'
        "Texto: você é um palhaço\nPergunta: O texto é ofensivo?\nResposta: Sim\n\n"
        "Texto: que dia lindo hoje\nPergunta: O texto é ofensivo?\nResposta:",
    ),
    "portuguese_hate_speech": (
        TEXT_SHOT,
        TEXT,
        "Abaixo contém o texto de tweets de usuários do Twitter em português, sua tarefa é classificar se o texto "
        'contém discurso de ódio ou não. Responda apenas com "Sim" ou "Não".\n\n'
        "Texto: você é um palhaço\nPergunta: O texto contém discurso de ódio?\nResposta: Sim\n\n"
        "Texto: que dia lindo hoje\nPergunta: O texto contém discurso de ódio?\nResposta:",
    ),
    "tweetsentbr": (
        TWEET_SHOT,
        TWEET,
        "Abaixo contém o texto de tweets de usuários do Twitter em português, sua tarefa é classificar se o "
        "sentimento do texto é Positivo, Neutro ou Negativo. Responda apenas com uma das opções.\n\n"
        "Texto: o ônibus atrasou de novo\nPergunta: O sentimento do texto é Positivo, Neutro ou Negativo?\n"
        "Resposta: Negativo\n\n"
        "Texto: adorei o jogo de ontem\nPergunta: O sentimento do texto é Positivo, Neutro ou Negativo?\nResposta:",
    ),
}


def one_shot(name: str, shot: dict, item: dict) -> TaskData:
    task = dataclasses.replace(TASKS[name], shots=1)
    return TaskData(task, [shot], [item], ["0"])


@pytest.mark.parametrize("name", list(TASKS))
def test_each_task_renders_the_leaderboard_prompt_exactly(name):
    shot, item, expected = EXPECTED[name]
    data = one_shot(name, shot, item)
    assert ptbench.render(data, item) == expected


def test_chat_prompt_is_the_forks_conversation():
    data = one_shot("assin2_rte", PAIR_SHOT, PAIR)
    messages = ptbench.render(data, PAIR, None, "system_user_assistant")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"].endswith('responda apenas com "Sim" ou "Não".')  # stripped
    assert messages[2]["content"] == "Não"
    assert messages[3]["content"].endswith("Sim ou Não?\nResposta:")
    folded = ptbench.render(data, PAIR, None, "user_assistant")  # no system role: instruction + first shot
    assert [m["role"] for m in folded] == ["user", "assistant", "user"]
    assert folded[0]["content"].startswith("Abaixo estão pares") and "\n\nPremissa: Uma mulher" in folded[0]["content"]


def test_a_shot_equal_to_the_item_is_dropped_as_the_fork_does():
    data = TaskData(dataclasses.replace(TASKS["tweetsentbr"], shots=1), [TWEET, TWEET_SHOT], [TWEET], ["0"])
    assert "o ônibus atrasou" in ptbench.render(data, TWEET) and "adorei o jogo de ontem\nPergunta" in ptbench.render(
        data, TWEET
    )
    assert ptbench.render(data, TWEET).count("adorei o jogo") == 1


EXAM_ANSWERS = [
    (" B", "B"),
    ("B", "B"),
    ("Letra C", "C"),
    ("A resposta correta é a alternativa D, porque", "D"),
    ("Opção: E", "E"),  # accents go before the regexes: "Opcao: E"
    ("resposta correta é E", "E"),  # "e" after accent removal: pattern 1
    ("Acho que é C. Mas A também", "C"),  # "X." before the others
    ("(D) é a certa", "D"),
    ("D) 4", "D"),
    ("A\n\nPergunta", "A"),  # spaces normalised; a bare first A
    ("Eu acho", INVALID),  # no bare capital letter
    ("não sei", INVALID),
    ("", INVALID),
    ("a resposta é b", INVALID),  # lower case is no answer
    ("As alternativas B e C", "C"),  # a bare final letter wins over the first bare one ("As" is no bare A)
    ("B ou C talvez", "B"),  # no final letter: the first bare one
]


@pytest.mark.parametrize("text,expected", EXAM_ANSWERS)
def test_exam_answer_rule(text, expected):
    assert read_choice(text, "ABCDE") == expected


def test_exam_rule_knows_only_the_tasks_letters():
    assert read_choice("E", "ABCD") == INVALID
    assert read_choice("Alternativa E, ou D", "ABCD") == "D"


LABEL_ANSWERS = [
    (" Sim", ("Sim", "Não"), "Sim"),
    ("não", ("Sim", "Não"), "Não"),
    ("NAO", ("Sim", "Não"), "Não"),
    ("Sim.", ("Sim", "Não"), "Sim"),  # the one label contained
    ("Não, não é.", ("Sim", "Não"), "Não"),
    ("Sim e não", ("Sim", "Não"), "Sim"),  # both contained: the text's start by similarity
    ("Nã", ("Sim", "Não"), "Não"),  # "na" vs "nao": 0.67
    ("Talvez", ("Sim", "Não"), INVALID),
    ("", ("Sim", "Não"), INVALID),
    ("Positiva", ("Positivo", "Neutro", "Negativo"), "Positivo"),
    ("Neutro ou Negativo", ("Positivo", "Neutro", "Negativo"), "Neutro"),
    ("negativo!", ("Positivo", "Neutro", "Negativo"), "Negativo"),
    ("xyz", ("Positivo", "Neutro", "Negativo"), INVALID),
]


@pytest.mark.parametrize("text,labels,expected", LABEL_ANSWERS)
def test_label_answer_rule(text, labels, expected):
    assert read_label(text, labels) == expected


NUMBER_ANSWERS = [
    ("4,5", (4.5, True)),
    (" 4.5", (4.5, True)),
    ("nota 3", (3.0, True)),
    ("10", (5.0, True)),  # clipped
    ("0,5", (1.0, True)),
    ("3,5 de 5,0", (3.55, True)),  # every digit kept, the first dot between digits
    ("1.2.3", (1.23, True)),
    ("", (5.0, False)),  # fallback 5.0, counted invalid
    ("cinco", (5.0, False)),
    ("-2", (2.0, True)),  # no negatives: the dash is dropped
]


@pytest.mark.parametrize("text,expected", NUMBER_ANSWERS)
def test_number_answer_rule(text, expected):
    value, readable = read_number(text)
    assert (round(value, 4), readable) == expected


def test_metrics_as_the_leaderboard_computes_them():
    rte = TASKS["assin2_rte"]
    # macro-F1 over the gold labels only: the invalid answer is wrong but no class of its own
    golds, preds = ["Sim", "Sim", "Não", "Não"], ["Sim", INVALID, "Não", "Sim"]
    # Sim: precision 1/2, recall 1/2; Não: precision 1, recall 1/2
    assert ptbench_tasks.metric_value(rte, golds, preds) == pytest.approx(100 * (1 / 2 + 2 / 3) / 2)
    sts = TASKS["assin2_sts"]
    assert ptbench_tasks.metric_value(sts, [1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(100.0)  # |r|
    assert ptbench_tasks.metric_value(sts, [1.0, 2.0, 3.0], [5.0, 5.0, 5.0]) == 0.0  # undefined -> 0
    assert ptbench_tasks.metric_value(TASKS["enem_challenge"], list("ABCD"), list("ABXX")) == 50.0
    scores = {"enem_challenge": 60.0, "assin2_sts": 50.0}
    assert ptbench_tasks.npm(scores) == pytest.approx(100 * ((60 - 20) / 80 + 0.5) / 2)


def test_published_scores_are_the_leaderboards():
    assert ptbench_tasks.PUBLISHED_SCORES["HuggingFaceH4/zephyr-7b-beta"]["enem_challenge"] == 57.87
    assert ptbench_tasks.PUBLISHED_SCORES["HuggingFaceH4/zephyr-7b-beta"]["assin2_rte"] == 88.36
    assert ptbench_tasks.PUBLISHED_SCORES["maritaca-ai/sabia-7b"]["average"] == 47.09


# ---------------------------------------------------------------- shipped data and bad input


@pytest.mark.parametrize("name", list(TASKS))
def test_shipped_items_load_with_every_few_shot_id(name):
    data = ptbench.load_task(name, ptbench.SAMPLES)
    assert len(data.shots) >= TASKS[name].shots and len(data.items) >= 12
    if TASKS[name].exclude_fewshot:  # the listed ids are never scored
        assert not set(data.item_ids) & {str(i) for i in TASKS[name].fewshot}
    if TASKS[name].sampler == "ids":
        assert [s[TASKS[name].id_column] for s in data.shots] == list(TASKS[name].fewshot)


def test_shipped_exam_items_have_no_length_shortcut():
    for name in ("enem_challenge", "bluex", "oab_exams"):
        items = ptbench.load_task(name, ptbench.SAMPLES).items
        longest = sum(
            max(zip(d["choices"]["text"], d["choices"]["label"]), key=lambda c: len(c[0]))[1] == d["answerKey"]
            for d in items
        )
        assert longest / len(items) <= 0.35, name


def copy_task(tmp_path, name: str):
    import shutil

    shutil.copytree(ptbench.SAMPLES / name, tmp_path / name)
    return tmp_path / name


def test_a_missing_split_is_named(tmp_path):
    (copy_task(tmp_path, "hatebr_offensive") / "test.jsonl").unlink()
    with pytest.raises(BenchDataError, match=r"hatebr_offensive: split 'test' missing"):
        ptbench.load_task("hatebr_offensive", tmp_path)


def test_a_missing_few_shot_id_is_named(tmp_path):
    folder = copy_task(tmp_path, "enem_challenge")
    rows = [json.loads(line) for line in (folder / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    (folder / "train.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows if r["id"] != "2022_88"), encoding="utf-8"
    )
    with pytest.raises(BenchDataError, match=r"few-shot id\(s\) \['2022_88'\]"):
        ptbench.load_task("enem_challenge", tmp_path)


def test_a_short_position_split_names_the_missing_position(tmp_path):
    folder = copy_task(tmp_path, "faquad_nli")
    lines = (folder / "train.jsonl").read_text(encoding="utf-8").splitlines()
    (folder / "train.jsonl").write_text("\n".join(lines[:40]) + "\n", encoding="utf-8")
    with pytest.raises(BenchDataError, match=r"position 2282 is missing"):
        ptbench.load_task("faquad_nli", tmp_path)


@pytest.mark.parametrize(
    "line,message",
    [
        ('{"idx": 1, "sentence": "oi", "label": 2}', r"line 1: field 'label' is 2 \(int\); expected one of \[0, 1\]"),
        ('{"idx": 1, "label": 0}', r"line 1: field 'sentence' is missing"),
        ('{"idx": "1", "sentence": "oi", "label": 0}', r"field 'idx' is '1' \(str\); expected int"),
        ('{"idx": 1, "sentence": "   ", "label": 0}', r"field 'sentence' is empty"),
        ('{"idx": 1, "sentence": "oi", "label": 0', r"line 1: not valid JSON"),
        ("[1, 2]", r"line 1: expected a JSON object"),
    ],
)
def test_a_bad_row_is_named_by_line_and_field(tmp_path, line, message):
    folder = copy_task(tmp_path, "hatebr_offensive")
    (folder / "test.jsonl").write_text(line + "\n", encoding="utf-8")
    with pytest.raises(BenchDataError, match=message):
        ptbench.load_task("hatebr_offensive", tmp_path)


def test_bad_exam_choices_are_named(tmp_path):
    folder = copy_task(tmp_path, "oab_exams")
    row = {**EXAM, "id": "2099-01_1", "choices": {"text": ["a", "b"], "label": ["A", "E"]}, "answerKey": "A"}
    with (folder / "train.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    with pytest.raises(BenchDataError, match=r"line \d+: field 'answerKey'"):
        ptbench.load_task("oab_exams", tmp_path)


def test_an_unknown_task_lists_the_known_ones():
    with pytest.raises(ptbench.UnknownTaskError, match=r"unknown task 'enem'.*enem_challenge, bluex"):
        ptbench.resolve_tasks("enem")
    assert ptbench.resolve_tasks("all,belebele_por_Latn")[-1] == "belebele_por_Latn"
    assert len(ptbench.resolve_tasks("all")) == 9


def test_cli_unknown_task_exits_with_the_list(capsys):
    with pytest.raises(SystemExit) as exit_info:
        ptbench.main(["--tasks", "nope", "--model", "embedded", "--output-dir", "runs/x"])
    assert exit_info.value.code == 2
    assert "Leaderboard tasks: enem_challenge" in capsys.readouterr().err


def test_hub_data_offline_fails_before_any_model_loads(monkeypatch, tmp_path):
    from lib import models

    monkeypatch.setattr(models, "hub_unreachable_reason", lambda: "HF_HUB_OFFLINE is set")
    monkeypatch.setattr(ptbench, "load_scored", lambda *a: pytest.fail("a model was loaded"))
    with pytest.raises(BenchDataError, match=r"Hub cannot be reached.*--data-dir data/samples/pt_benchmarks"):
        ptbench.run("embedded", tasks="assin2_rte", output_dir=tmp_path)
    with pytest.raises(BenchDataError, match=r"belebele_por_Latn read Hub datasets"):  # upstream tasks too
        ptbench.run("embedded", tasks="belebele_por_Latn", data_dir=ptbench.SAMPLES, output_dir=tmp_path)


def test_an_adapter_of_another_base_is_refused_before_loading(monkeypatch, tmp_path):
    adapter = tmp_path / "sabia_adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "maritaca-ai/sabia-7b"}))
    monkeypatch.setattr(ptbench, "load_scored", lambda *a: pytest.fail("a model was loaded"))
    with pytest.raises(ValueError, match=r"trained on 'maritaca-ai/sabia-7b', not on --model 'embedded'"):
        ptbench.run("embedded", [str(adapter)], "assin2_rte", data_dir=ptbench.SAMPLES, output_dir=tmp_path)
    ptbench.check_adapter(str(adapter), "sabia-7b")  # its own base (preset name or Hub id) is accepted
    with pytest.raises(FileNotFoundError, match="no adapter_config.json"):
        ptbench.check_adapter(str(tmp_path), "embedded")


def test_adapter_labels():
    assert ptbench.parse_adapter("results/smoke/04_qlora_canarim/adapter/final_adapter")[0] == "04_qlora_canarim"
    assert ptbench.parse_adapter("tuned=runs/x/final_adapter")[0] == "tuned"


# ---------------------------------------------------------------- generation after a shared prefix


@pytest.fixture(scope="module")
def twin():
    from lib import inference

    return inference.load_for_eval("zephyr-7b-beta-tiny")


@pytest.fixture(scope="module")
def short_window_twin(twin):
    """The Zephyr twin's architecture with a 64-token sliding window: every prompt here is far longer, so a hole
    inside the window (padding between prefix and item) would change the answers."""
    import torch
    from transformers import AutoModelForCausalLM

    config = twin[0].config.__class__.from_dict({**twin[0].config.to_dict(), "sliding_window": 64})
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval(), twin[1]


@pytest.mark.parametrize("batch_size", [1, 4])
def test_generation_after_a_shared_prefix_equals_generating_each_prompt(short_window_twin, batch_size):
    import torch

    from lib import inference

    net, tokenizer = short_window_twin
    data = ptbench.load_task("tweetsentbr", ptbench.SAMPLES, limit=6)
    seqs = [tokenizer(ptbench.render(data, d))["input_ids"] for d in data.items]
    seqs[1] = seqs[1] + tokenizer(" e mais um pouco de texto aqui", add_special_tokens=False)["input_ids"]  # uneven
    n = inference.shared_prefix(seqs)
    assert n > 400 and all(len(s) > n for s in seqs) and len({len(s) for s in seqs}) > 2
    stop = tokenizer.decode(seqs[0][n : n + 2])  # a stop string the random model may meet
    ours = inference.generate_after_prefix(net, tokenizer, seqs[0][:n], [s[n:] for s in seqs], 12, (stop,), batch_size)
    for seq, got in zip(seqs, ours):
        alone = net.generate(torch.tensor([seq]), max_new_tokens=12, do_sample=False, pad_token_id=0)[0, len(seq) :]
        text = tokenizer.decode(alone, skip_special_tokens=True)
        assert got["text"] == (text[: text.index(stop)] if stop in text else text)


@pytest.mark.slow
def test_generation_after_a_shared_prefix_on_gemma_with_its_512_token_window():
    """The embedded Gemma (sliding window 512) on prompts of ~1 000 tokens, batched: the answers of whole prompts."""
    import torch

    from lib import inference

    net, tokenizer = inference.load_for_eval("embedded")
    data = ptbench.load_task("tweetsentbr", ptbench.SAMPLES, limit=8)
    seqs = [tokenizer(ptbench.render(data, d))["input_ids"] for d in data.items]
    n = inference.shared_prefix(seqs)
    assert n > 512
    ours = inference.generate_after_prefix(net, tokenizer, seqs[0][:n], [s[n:] for s in seqs], 6, ("\n\n",), 8)
    for seq, got in zip(seqs, ours):
        alone = net.generate(torch.tensor([seq]), max_new_tokens=6, do_sample=False)[0, len(seq) :]
        assert got["text"] == tokenizer.decode(alone, skip_special_tokens=True).split("\n\n")[0]


# ---------------------------------------------------------------- servers


class CompletionServer:
    """A real OpenAI-compatible server on 127.0.0.1: `reply(body)` gives (status, JSON-able body or raw bytes)."""

    def __init__(self, reply):
        self.bodies, server = [], self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.bodies.append((self.path, body))
                status, payload = reply(body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def completion(text):
    return 200, {"id": "x", "object": "text_completion", "model": "m", "choices": [{"index": 0, "text": text}]}


@pytest.fixture
def no_backoff(monkeypatch):
    monkeypatch.setattr(api.Jobs, "_delay", lambda self, attempt, retry_after: 0.0)


def test_a_served_model_is_scored_with_the_same_prompts_and_rules(tmp_path, no_backoff):
    data = ptbench.load_task("assin2_rte", ptbench.SAMPLES)
    gold_by_prompt = {ptbench.render(data, d): TASKS["assin2_rte"].target(d) for d in data.items}
    server = CompletionServer(lambda body: completion(" " + gold_by_prompt[body["prompt"]] + "\n\nPremissa: x"))
    try:
        m = ptbench.run(None, tasks="assin2_rte", data_dir=ptbench.SAMPLES, output_dir=tmp_path,
                        base_url=server.base_url, served_model="m")  # fmt: skip
    finally:
        server.close()
    result = m["tasks"]["assin2_rte"]["m"]
    assert (result["value"], result["invalid"], result["n"]) == (100.0, 0, len(data.items))
    path, body = server.bodies[0]
    assert path.endswith("/completions") and body["stop"] == ["\n\n"] and body["temperature"] == 0
    assert body["max_tokens"] == ptbench.DEFAULT_MAX_NEW_TOKENS


def test_a_chat_server_gets_the_instruction_as_system_message(tmp_path, no_backoff):
    def reply(body):
        return 200, {"id": "x", "object": "chat.completion", "model": "m",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": "Positivo"}}]}  # fmt: skip

    server = CompletionServer(reply)
    try:
        m = ptbench.run(None, tasks="tweetsentbr", limit=3, data_dir=ptbench.SAMPLES, output_dir=tmp_path,
                        base_url=server.base_url, served_model="m", chat=True)  # fmt: skip
    finally:
        server.close()
    path, body = server.bodies[0]
    assert path.endswith("/chat/completions")
    assert [x["role"] for x in body["messages"]] == ["system"] + ["user", "assistant"] * 25 + ["user"]
    assert m["tasks"]["tweetsentbr"]["m"]["invalid"] == 0


@pytest.mark.parametrize(
    "fault",
    [
        lambda body: (500, {"error": "boom"}),
        lambda body: (200, b"<html>not json</html>"),
        lambda body: (200, {"choices": []}),
        lambda body: completion(""),
        lambda body: completion("\x00garbage \u2028 zzz"),
    ],
    ids=["http-500", "not-json", "no-choices", "empty", "garbage"],
)
def test_a_faulty_server_counts_invalid_answers_and_never_crashes(tmp_path, no_backoff, fault):
    server = CompletionServer(fault)
    try:
        m = ptbench.run(None, tasks="hatebr_offensive", limit=4, data_dir=ptbench.SAMPLES, output_dir=tmp_path,
                        base_url=server.base_url, served_model="m")  # fmt: skip
        again = ptbench.run(None, tasks="hatebr_offensive", limit=4, data_dir=ptbench.SAMPLES, output_dir=tmp_path,
                            base_url=server.base_url, served_model="m")  # fmt: skip
    finally:
        server.close()
    assert m["tasks"]["hatebr_offensive"]["m"]["invalid"] == 4
    assert again == m  # a rerun asks nothing again: every item was answered or failed for good
    sent = len(server.bodies)
    assert sent in (4, 4 * 4)  # an answer at once, or the first try and 3 retries
    lines = (tmp_path / "predictions.jsonl").read_text(encoding="utf-8").rstrip("\n").split("\n")  # U+2028 stays
    assert len(lines) == 4 and all(json.loads(line)["answer"] == INVALID for line in lines)


def test_metrics_equal_sklearn_and_scipy_on_random_answers():
    import numpy as np
    from scipy.stats import pearsonr
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    labels = ["Positivo", "Neutro", "Negativo", INVALID]
    for _ in range(50):
        n = int(rng.integers(2, 30))
        golds = list(rng.choice(labels[:3], n))
        preds = list(rng.choice(labels, n))
        expected = 100 * f1_score(golds, preds, labels=list(set(golds)), average="macro", zero_division=0)
        assert ptbench_tasks.metric_value(TASKS["tweetsentbr"], golds, preds) == pytest.approx(expected)
        x, y = rng.uniform(1, 5, n), rng.uniform(1, 5, n)
        assert ptbench_tasks.metric_value(TASKS["assin2_sts"], list(x), list(y)) == pytest.approx(
            100 * abs(pearsonr(x, y)[0])
        )


def test_measured_scores_next_to_the_published_ones():
    metrics = {"models": ["zephyr-7b-beta"], "tasks": {"assin2_rte": {"zephyr-7b-beta": {"value": 87.0, "n": 2448}}}}
    row = ptbench.compare_published(metrics, "HuggingFaceH4/zephyr-7b-beta")["tasks"]["assin2_rte"]
    assert (row["published"], row["difference"], row["within_2_points"]) == (88.36, -1.36, True)
    with pytest.raises(ValueError, match="no published scores"):
        ptbench.compare_published(metrics, "someone/else")


# ---------------------------------------------------------------- end to end on the tiny twin (slow tier)


@pytest.fixture(scope="module")
def twin_adapter(tmp_path_factory, twin):
    """A random LoRA adapter on the Zephyr twin (it changes answers; its base is the twin)."""
    from peft import LoraConfig, get_peft_model

    net, _ = twin
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM")
    config.base_model_name_or_path = "zephyr-7b-beta-tiny"
    folder = tmp_path_factory.mktemp("adapter") / "final_adapter"
    peft_model = get_peft_model(net, config)
    peft_model.save_pretrained(folder)
    peft_model.unload()  # the shared twin fixture stays the plain base
    return folder


@pytest.mark.slow
def test_base_and_adapter_in_one_run(tmp_path, twin_adapter):
    kwargs = {"tasks": "assin2_rte,enem_challenge", "limit": 4, "data_dir": ptbench.SAMPLES, "max_new_tokens": 6}
    kwargs["quantize_4bit"] = True  # the default with an adapter: the base alone must run on the same 4-bit base
    both = ptbench.run("zephyr-7b-beta-tiny", [f"tuned={twin_adapter}"], output_dir=tmp_path / "both", **kwargs)
    ptbench.run("zephyr-7b-beta-tiny", output_dir=tmp_path / "alone", **kwargs)
    assert both["models"] == ["zephyr-7b-beta-tiny", "tuned"] and both["chat_template"] == "system_user_assistant"
    predictions = [json.loads(x) for x in (tmp_path / "both" / "predictions.jsonl").read_text().splitlines()]
    base = [p["generation"] for p in predictions if p["model"] == "zephyr-7b-beta-tiny"]
    tuned = [p["generation"] for p in predictions if p["model"] == "tuned"]
    alone_base = [
        json.loads(x)["generation"] for x in (tmp_path / "alone" / "predictions.jsonl").read_text().splitlines()
    ]
    assert base == alone_base  # the adapter is off for the base column
    assert tuned != base  # and on for its own
    assert both["tasks"]["assin2_rte"]["tuned"]["paired_vs_base"]["test"] == "mcnemar_exact"
    assert both["adapter"] and (tmp_path / "both" / "pt_benchmarks.png").is_file()


@pytest.mark.slow
def test_kill_9_and_rerun_scores_no_item_twice(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    command = [sys.executable, "-m", "lib.ptbench", "--model", "zephyr-7b-beta-tiny", "--tasks",
               "assin2_rte,hatebr_offensive", "--limit", "8", "--data-dir", str(ptbench.SAMPLES), "--batch-size", "1",
               "--max-new-tokens", "24"]  # fmt: skip
    cache = tmp_path / "killed" / "cache.jsonl"
    proc = subprocess.Popen([*command, "--output-dir", str(tmp_path / "killed")], cwd=ptbench.paths.ROOT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if cache.is_file() and len(cache.read_text().splitlines()) >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    before = len(cache.read_text().splitlines())
    assert 3 <= before < 16
    for out in ("killed", "clean"):
        subprocess.run([*command, "--output-dir", str(tmp_path / out)], cwd=ptbench.paths.ROOT, check=True)
    keys = [json.loads(x)["id"] for x in cache.read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 16  # each item answered once, across the kill
    resumed, clean = (json.loads((tmp_path / o / "metrics.json").read_text())["tasks"] for o in ("killed", "clean"))
    assert resumed == clean


def test_upstream_tasks_with_a_server_are_refused_before_any_request(tmp_path):
    server = CompletionServer(lambda body: completion(" Sim"))
    try:
        with pytest.raises(ValueError, match="belebele_por_Latn: upstream lm-eval tasks need a local --model"):
            ptbench.run(None, tasks="assin2_rte,belebele_por_Latn", data_dir=ptbench.SAMPLES, output_dir=tmp_path,
                        base_url=server.base_url, served_model="m")  # fmt: skip
    finally:
        server.close()
    assert server.bodies == []
