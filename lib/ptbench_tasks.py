"""The Open Portuguese LLM Leaderboard's nine tasks, by its protocol (eval version 1.1.0): datasets and splits, fixed
few-shot examples, instruction lines, prompt templates, answer rules, metrics, NPM baselines and published scores.

Transcribed from eduagarcia/lm-evaluation-harness-pt (`lm_eval/tasks/portuguese/*.yaml`, `util.py`,
`lm_eval/tasks/oab_exams/default/`, `lm_eval/api/samplers.py`, `lm_eval/filters/custom.py`, `api/metrics.py`, the HF
model's `_apply_chat_template`) and eduagarcia/llm_leaderboard_eval_bot (`tasks_config/pt_config.yaml`); the fork
cannot be installed beside our `datasets`, so this module is our own code around the same protocol
(docs/pt_benchmarks.md). Model running lives in `lib.ptbench`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from lib import paths
from lib.data import jsonl_lines

INVALID = "[invalid]"  # the fork's fallback: an unreadable answer, counted as wrong
STOP = "\n\n"  # generation stops at the few-shot delimiter (the fork's default `until`)

# ---------------------------------------------------------------- answer rules (the fork's filters, in order)

_EXAM_PATTERNS = (
    r"(?:[Ll]etra|[Aa]lternativa|[Rr]esposta|[Rr]esposta [Cc]orreta|[Rr]esposta [Cc]orreta e|[Oo]pcao):? ([{c}])\b",
    r"\b([{c}])\.",
    r"\b([{c}]) ?[.):-]",
    r"\b([{c}])$",
    r"\b([{c}])\b",
)


def read_choice(text: str, letters: str) -> str:
    """normalize_spaces, remove_accents, find_choices, take_first: spaces normalised, accents transliterated, the
    whole text if it is a letter, else the first regex (in order) that matches anywhere; else INVALID."""
    from unidecode import unidecode

    text = re.sub(" +", " ", text.replace("\n", " ").replace("\r", " ").replace("\t", " ")).strip()
    text = unidecode(text).strip()
    if text in letters and len(text) == 1:
        return text
    for pattern in _EXAM_PATTERNS:
        if match := re.search(pattern.format(c=letters), text):
            return match.group(1)
    return INVALID


def read_label(text: str, labels: tuple[str, ...]) -> str:
    """find_similar_label: exact after lower-casing and transliterating; else the one label contained in the text;
    else the text cut at the first punctuation (and to the longest label's length) by Levenshtein similarity >= 0.5."""
    from rapidfuzz.distance import Levenshtein
    from unidecode import unidecode

    norm = [unidecode(label.strip().lower()) for label in labels]
    prediction = unidecode(text.strip().lower())
    if prediction in norm:
        return labels[norm.index(prediction)]
    if prediction == "":
        return INVALID
    contained = [label for label in norm if label in prediction]
    if len(contained) == 1:
        return labels[norm.index(contained[0])]
    for char in (".", ",", ";", ":", "(", ")", "[", "]", "\n"):
        if char in prediction:
            prediction = prediction[: prediction.find(char)]
    prediction = prediction[: max(len(label) for label in norm)]
    similarities = [Levenshtein.normalized_similarity(prediction, label) for label in norm]
    return INVALID if max(similarities) < 0.5 else labels[similarities.index(max(similarities))]


def read_number(text: str, low: float = 1.0, high: float = 5.0, fallback: float = 5.0) -> tuple[float, bool]:
    """number_filter (float, clip, fallback 5.0): comma decimals, every non-digit dropped, the first dot between two
    digits kept. Returns (value, readable): the fallback is scored as the fork does, and counted as invalid."""
    digits = re.sub(r"[^0-9\.]", "", text.replace(",", "."))
    if "." in digits:
        if match := re.search(r"[0-9]\.[0-9]", digits):
            dot = match.span()[0] + 1
            digits = digits[:dot].replace(".", "") + "." + digits[dot + 1 :].replace(".", "")
        else:
            digits = digits.replace(".", "")
    try:
        value = float(digits)
    except ValueError:
        return fallback, False
    return min(max(value, low), high), True


# ---------------------------------------------------------------- prompts


def _options(doc: dict) -> str:
    return "\n".join(f"{label}. {text}" for text, label in zip(doc["choices"]["text"], doc["choices"]["label"]))


def _exam(word: str):
    return lambda d: f"{word}:\n{d['question']}\nAlternativas:\n{_options(d)}\nResposta correta:"


NAO_SIM = ("Não", "Sim")


@dataclass(frozen=True)
class Task:
    name: str
    hub: str  # Hub dataset id
    config: str | None
    split: str  # the split scored
    shots: int
    description: str  # the instruction line(s) before the shots
    template: object  # doc -> prompt text
    target: object  # doc -> the answer as the few-shot examples show it
    rule: str  # "choices" | "label" | "number"
    metric: str  # "acc" | "f1_macro" | "pearson"
    baseline: float  # NPM's random baseline, in percent
    fields: dict  # field -> type (or allowed values) that every row must have
    fewshot: tuple = ()  # ids (sampler "ids"), row positions ("positions"); empty for "first_n"
    sampler: str = "ids"
    id_column: str | None = "id"
    exclude_fewshot: bool = False  # the listed ids are not scored (exams: shots come from the scored split)
    choices: tuple[str, ...] = ()  # letters (exams) or labels
    fewshot_split: str = "train"
    max_new_tokens: int | None = None  # the task's own cap (OAB: 32)

    def gold(self, doc: dict):
        return float(doc["relatedness_score"]) if self.rule == "number" else self.target(doc)

    def read(self, text: str) -> tuple[object, bool]:
        """(answer, readable) from a generation, by the task's rule."""
        if self.rule == "number":
            return read_number(text)
        answer = read_choice(text, "".join(self.choices)) if self.rule == "choices" else read_label(text, self.choices)
        return answer, answer != INVALID


_EXAM_FIELDS = {"id": str, "question": str, "choices": dict, "answerKey": str}
_EXAM_RULE = "selecione a única alternativa correta e responda apenas com as letras"
_ASSIN2_IDS = (1, 3251, 2, 3252, 3, 4, 5, 6, 3253, 7, 3254, 3255, 3256, 8, 9, 10, 3257, 11, 3258, 12, 13, 14, 15, 3259)
_ASSIN2_IDS += (3260, 3261, 3262, 3263, 16, 17, 3264, 18, 3265, 3266, 3267, 19, 20, 3268, 3269, 21, 3270, 3271, 22)
_ASSIN2_IDS += (3272, 3273, 23, 3274, 24, 25, 3275)
_ASSIN2_FIELDS = {
    "sentence_pair_id": int,
    "premise": str,
    "hypothesis": str,
    "relatedness_score": float,
    "entailment_judgment": (0, 1),
}
_BINARY_TEXT_FIELDS = {"idx": int, "sentence": str, "label": (0, 1)}
_SIM_NAO = 'Responda apenas com "Sim" ou "Não".\n\n'

TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            "enem_challenge", "eduagarcia/enem_challenge", None, "train", 3,
            "As perguntas a seguir são questões de múltipla escolha do Exame Nacional do Ensino Médio (ENEM), "
            f'{_EXAM_RULE} "A", "B", "C", "D" ou "E".\n\n',
            _exam("Pergunta"), lambda d: d["answerKey"], "choices", "acc", 20.0, _EXAM_FIELDS,
            fewshot=("2022_21", "2022_88", "2022_143"), exclude_fewshot=True, choices=tuple("ABCDE"),
        ),
        Task(
            "bluex", "eduagarcia-temp/BLUEX_without_images", None, "train", 3,
            "As perguntas a seguir são questões de múltipla escolha de provas de vestibular de universidades "
            f'brasileiras, {_EXAM_RULE} "A", "B", "C", "D" ou "E".\n\n',
            _exam("Pergunta"), lambda d: d["answerKey"], "choices", "acc", 22.5, _EXAM_FIELDS,
            fewshot=("USP_2018_3", "UNICAMP_2018_2", "USP_2018_35", "UNICAMP_2018_16", "USP_2018_89"),
            exclude_fewshot=True, choices=tuple("ABCDE"),
        ),
        Task(
            "oab_exams", "eduagarcia/oab_exams", None, "train", 3,
            "As perguntas a seguir são questões de múltipla escolha do Exame de Ordem da Ordem dos Advogados do "
            f'Brasil (OAB), {_EXAM_RULE} "A", "B", "C" ou "D".\n\n',
            _exam("Questão"), lambda d: d["answerKey"], "choices", "acc", 25.0, _EXAM_FIELDS,
            fewshot=tuple(f"2010-01_{n}" for n in (1, 11, 13, 23, 26, 28, 38, 48, 58, 68, 76, 83, 85, 91, 99)),
            exclude_fewshot=True, choices=tuple("ABCD"), max_new_tokens=32,
        ),
        Task(
            "assin2_rte", "assin2", None, "test", 15,
            "Abaixo estão pares de premissa e hipótese. Para cada par, indique se a hipótese pode ser inferida a "
            'partir da premissa, responda apenas com "Sim" ou "Não".\n\n',
            lambda d: f"Premissa: {d['premise']}\nHipótese: {d['hypothesis']}\nPergunta: A hipótese pode ser "
            "inferida pela premissa? Sim ou Não?\nResposta:",
            lambda d: NAO_SIM[d["entailment_judgment"]], "label", "f1_macro", 50.0, _ASSIN2_FIELDS,
            fewshot=_ASSIN2_IDS, id_column="sentence_pair_id", choices=("Sim", "Não"),
        ),
        Task(
            "assin2_sts", "assin2", None, "test", 15,
            "Abaixo estão pares de frases que você deve avaliar o grau de similaridade. Dê uma pontuação entre 1,0 "
            "e 5,0, sendo 1,0 pouco similar e 5,0 muito similar.\n\n",
            lambda d: f"Frase 1: {d['premise']}\nFrase 2: {d['hypothesis']}\nPergunta: Quão similares são as duas "
            "frases? Dê uma pontuação entre 1,0 a 5,0.\nResposta:",
            lambda d: "{:.1f}".format(d["relatedness_score"]).replace(".", ","), "number", "pearson", 0.0,
            _ASSIN2_FIELDS, fewshot=_ASSIN2_IDS, id_column="sentence_pair_id",
        ),
        Task(
            "faquad_nli", "ruanchaves/faquad-nli", None, "test", 15,
            "Abaixo estão pares de pergunta e resposta. Para cada par, você deve julgar se a resposta responde à "
            'pergunta de maneira satisfatória e aparenta estar correta. Escreva apenas "Sim" ou "Não".\n\n',
            lambda d: f"Pergunta: {d['question']}\nResposta: {d['answer']}\nA resposta dada satisfaz à pergunta? "
            "Sim ou Não?",
            lambda d: NAO_SIM[d["label"]], "label", "f1_macro", 45.6, {"question": str, "answer": str, "label": (0, 1)},
            fewshot=(1893, 949, 663, 105, 1169, 2910, 2227, 2813, 974, 558, 1503, 1958, 2918, 601, 1560, 984, 2388)
            + (995, 2233, 1982, 165, 2788, 1312, 2285, 522, 1113, 1670, 323, 236, 1263, 1562, 2519, 1049, 432, 1167)
            + (1394, 2022, 2551, 2194, 2187, 2282, 2816, 108, 301, 1185, 1315, 1420, 2436, 2322, 766),
            sampler="positions", id_column=None, choices=("Sim", "Não"),
        ),
        Task(
            "hatebr_offensive", "eduagarcia/portuguese_benchmark", "HateBR_offensive_binary", "test", 25,
            "Abaixo contém o texto de comentários de usuários do Instagram em português, sua tarefa é classificar "
            f"se o texto é ofensivo ou não. {_SIM_NAO}",
            lambda d: f"Texto: {d['sentence']}\nPergunta: O texto é ofensivo?\nResposta:",
            lambda d: "Sim" if d["label"] == 1 else "Não", "label", "f1_macro", 50.0, _BINARY_TEXT_FIELDS,
            fewshot=(48, 44, 36, 20, 3511, 88, 3555, 16, 56, 3535, 60, 40, 3527, 4, 76, 3579, 3523, 3551, 68, 3503)
            + (84, 3539, 64, 3599, 80, 3563, 3559, 3543, 3547, 3587, 3595, 3575, 3567, 3591, 24, 96, 92, 3507, 52)
            + (72, 8, 3571, 3515, 3519, 3531, 28, 32, 0, 12, 3583),
            id_column="idx", choices=("Sim", "Não"),
        ),
        Task(
            "portuguese_hate_speech", "eduagarcia/portuguese_benchmark", "Portuguese_Hate_Speech_binary", "test", 25,
            "Abaixo contém o texto de tweets de usuários do Twitter em português, sua tarefa é classificar se o "
            f"texto contém discurso de ódio ou não. {_SIM_NAO}",
            lambda d: f"Texto: {d['sentence']}\nPergunta: O texto contém discurso de ódio?\nResposta:",
            lambda d: "Sim" if d["label"] == 1 else "Não", "label", "f1_macro", 47.9, _BINARY_TEXT_FIELDS,
            fewshot=(52, 50, 39, 28, 3, 105, 22, 25, 60, 11, 66, 41, 9, 4, 91, 42, 7, 20, 76, 1, 104, 13, 67, 54, 97)
            + (27, 24, 14, 16, 48, 53, 40, 34, 49, 32, 119, 114, 2, 58, 83, 18, 36, 5, 6, 10, 35, 38, 0, 21, 46),
            id_column="idx", choices=("Sim", "Não"),
        ),
        Task(
            "tweetsentbr", "eduagarcia/tweetsentbr_fewshot", None, "test", 25,
            "Abaixo contém o texto de tweets de usuários do Twitter em português, sua tarefa é classificar se o "
            "sentimento do texto é Positivo, Neutro ou Negativo. Responda apenas com uma das opções.\n\n",
            lambda d: f"Texto: {d['sentence']}\nPergunta: O sentimento do texto é Positivo, Neutro ou Negativo?"
            "\nResposta:",
            lambda d: {"Positive": "Positivo", "Negative": "Negativo"}.get(d["label"], "Neutro"), "label", "f1_macro",
            32.8, {"sentence": str, "label": ("Positive", "Neutral", "Negative")},
            sampler="first_n", id_column=None, choices=("Positivo", "Neutro", "Negativo"),
        ),
    )
}  # fmt: skip

# Published scores, eval_version 1.1.0 (HF dataset eduagarcia-temp/llm_pt_leaderboard_requests): drawn and reported
# as "published, not measured here", never mixed with our measurements.
PUBLISHED = {
    "maritaca-ai/sabia-7b": (55.07, 47.71, 41.41, 46.68, 1.89, 58.34, 61.93, 64.13, 46.64, 47.09),
    "HuggingFaceH4/zephyr-7b-beta": (57.87, 47.98, 39.32, 88.36, 66.78, 70.18, 81.77, 66.59, 46.06, 62.77),
}
PUBLISHED_SCORES = {model: dict(zip([*TASKS, "average"], row)) for model, row in PUBLISHED.items()}


# ---------------------------------------------------------------- data


class BenchDataError(ValueError):
    """A data folder or Hub split that cannot be scored as the protocol says; the message names what is wrong."""


def _check_row(task: Task, row, where: str) -> None:
    if not isinstance(row, dict):
        raise BenchDataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for name, kind in task.fields.items():
        value = row.get(name)
        if name not in row:
            raise BenchDataError(f"{where}: field {name!r} is missing")
        if isinstance(kind, tuple):
            ok = value in kind and type(value) is type(kind[0])
        elif kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        else:
            ok = isinstance(value, kind) and not isinstance(value, bool)
        if not ok:
            want = f"one of {list(kind)}" if isinstance(kind, tuple) else kind.__name__
            raise BenchDataError(f"{where}: field {name!r} is {value!r} ({type(value).__name__}); expected {want}")
        if kind is str and not value.strip():
            raise BenchDataError(f"{where}: field {name!r} is empty")
    if task.rule == "choices":
        choices = row["choices"]
        texts, labels = choices.get("text"), choices.get("label")
        if not (isinstance(texts, list) and isinstance(labels, list) and len(texts) == len(labels) >= 2):
            raise BenchDataError(f"{where}: field 'choices' needs two lists of equal length, 'text' and 'label'")
        if bad := [x for x in texts + labels if not isinstance(x, str) or not x.strip()]:
            raise BenchDataError(f"{where}: field 'choices' holds a non-text or empty entry: {bad[0]!r}")
        if row["answerKey"] not in labels or any(label not in task.choices for label in labels):
            raise BenchDataError(
                f"{where}: field 'answerKey' {row['answerKey']!r} must be one of the labels {labels}, "
                f"themselves among {list(task.choices)}"
            )
    if task.rule == "number" and not 1.0 <= row["relatedness_score"] <= 5.0:
        raise BenchDataError(f"{where}: field 'relatedness_score' {row['relatedness_score']} is outside 1-5")


def read_split(task: Task, path: Path) -> list[dict]:
    """Every row of a local `<task>/<split>.jsonl`, checked against the task's fields (an error names line and
    field: a benchmark split is scored whole or not at all)."""
    rows = []
    for location, row, problem, _ in jsonl_lines(path):
        where = f"{path} {location}"
        if problem:
            raise BenchDataError(f"{where}: {problem}")
        _check_row(task, row, where)
        rows.append(row)
    return rows


def check_rows(task: Task, rows: list[dict], where: str) -> list[dict]:
    for number, row in enumerate(rows, start=1):
        _check_row(task, row, f"{where} row {number}")
    return rows


@dataclass
class TaskData:
    """What one task scores: the shots (in the protocol's order) and the items."""

    task: Task
    shots: list[dict]
    items: list[dict]
    item_ids: list[str] = field(default_factory=list)  # the row's id, or its position in the split
    notes: list[str] = field(default_factory=list)


def select(task: Task, fewshot_rows: list[dict], scored_rows: list[dict], where: str) -> TaskData:
    """The fork's samplers: `ids` (DocIDSampler: every listed id must exist; shots in the list's order; with
    exclude_fewshot, every listed id leaves the scored items), `positions` (rows at those positions of the split;
    a local split shorter than the last position holds the listed rows themselves, in the list's order) and
    `first_n`. Then the first `shots` of them."""
    notes = []
    if task.sampler == "ids":
        by_id = {row[task.id_column]: row for row in fewshot_rows}
        if missing := [i for i in task.fewshot if i not in by_id]:
            raise BenchDataError(
                f"{task.name}: few-shot id(s) {missing[:8]}{' ...' if len(missing) > 8 else ''} "
                f"({task.id_column}) not in the {task.fewshot_split} split of {where}"
            )
        pool = [by_id[i] for i in task.fewshot]
    elif task.sampler == "positions":
        if len(fewshot_rows) > max(task.fewshot):
            pool = [fewshot_rows[i] for i in task.fewshot]
        elif len(fewshot_rows) >= len(task.fewshot):
            pool = fewshot_rows[: len(task.fewshot)]
            notes.append(
                f"{task.name}: the {task.fewshot_split} split of {where} has {len(fewshot_rows)} rows, fewer than "
                f"position {max(task.fewshot)}: read as the {len(task.fewshot)} listed shots in the list's order"
            )
        else:
            raise BenchDataError(
                f"{task.name}: the {task.fewshot_split} split of {where} has {len(fewshot_rows)} rows; the few-shot "
                f"positions need the whole split (> {max(task.fewshot)} rows) or the {len(task.fewshot)} listed "
                f"rows in order (position {task.fewshot[len(fewshot_rows)]} is missing)"
            )
    else:
        if len(fewshot_rows) < task.shots:
            raise BenchDataError(
                f"{task.name}: the {task.fewshot_split} split of {where} has {len(fewshot_rows)} rows; the first "
                f"{task.shots} are the few-shot examples"
            )
        pool = fewshot_rows[: task.shots]
    items = list(scored_rows)
    ids = [str(row[task.id_column]) if task.id_column else str(k) for k, row in enumerate(items)]
    if task.exclude_fewshot:
        listed = set(task.fewshot)
        kept = [(i, row) for i, row in zip(ids, items) if row[task.id_column] not in listed]
        ids, items = [i for i, _ in kept], [row for _, row in kept]
    if not items:
        raise BenchDataError(f"{task.name}: no item to score in the {task.split} split of {where}")
    return TaskData(task, pool, items, ids, notes)


def load_local(task: Task, data_dir: str | Path) -> TaskData:
    """`<data_dir>/<task>/<split>.jsonl` with the Hub's split names."""
    folder = Path(data_dir) / task.name
    where = paths.portable(folder)  # repo-relative in messages and notes that results keep
    splits = {}
    for split in dict.fromkeys([task.fewshot_split, task.split]):
        path = folder / f"{split}.jsonl"
        if not path.is_file():
            raise BenchDataError(f"{task.name}: split {split!r} missing: no {paths.portable(path)}")
        splits[split] = read_split(task, path)
    return select(task, splits[task.fewshot_split], splits[task.split], where)


# ---------------------------------------------------------------- prompts


def shot_pairs(data: TaskData, doc: dict) -> list[tuple[str, str]]:
    """(prompt, target) of the shots for `doc`: the fork drops a shot equal to the item itself, then keeps `shots`."""
    return [(data.task.template(s), str(data.task.target(s))) for s in data.shots if s != doc][: data.task.shots]


def render_plain(task: Task, shots: list[tuple[str, str]], doc: dict) -> str:
    """description + shots as `prompt + " " + target`, each followed by a blank line, + the item's prompt."""
    return task.description + "".join(f"{q} {a}{STOP}" for q, a in shots) + task.template(doc)


def chat_messages(task: Task, shots: list[tuple[str, str]], doc: dict, chat_type: str = "system_user_assistant"):
    """The fork's `_apply_chat_template`: the instruction as system message (or folded into the first user turn
    when the template has no system role), each shot a user/assistant pair, the item the last user turn."""
    history = []
    role = {"assistant_user": "assistant", "user_assistant": "user"}.get(chat_type, "system")
    history.append({"role": role, "content": task.description.strip()})
    for k, (q, a) in enumerate(shots):
        if k == 0 and chat_type == "user_assistant":
            history[0]["content"] += "\n\n" + q.strip()
        else:
            history.append({"role": "user", "content": q.strip()})
        history.append({"role": "assistant", "content": a.strip()})
    history.append({"role": "user", "content": task.template(doc).strip()})
    return history


def chat_type(tokenizer) -> str | None:
    """The first conversation shape the tokenizer's template accepts (the fork tries these three in order)."""
    if getattr(tokenizer, "chat_template", None) is None:
        return None
    probe = Task("probe", "", None, "", 2, "test", lambda d: "test", lambda d: "test", "label", "acc", 0.0, {})
    for kind in ("system_user_assistant", "assistant_user", "user_assistant"):
        try:
            tokenizer.apply_chat_template(chat_messages(probe, [("test", "test")] * 2, {}, kind), tokenize=False)
            return kind
        except Exception:  # noqa: BLE001 - a template raises whatever its author chose (jinja2 errors, ValueError)
            continue
    return None


# ---------------------------------------------------------------- metrics


def metric_value(task: Task, golds: list, preds: list) -> float:
    """The task's metric in percent, as the leaderboard reports it (the fork's sklearn / scipy calls, in numpy: the
    bootstrap calls this thousands of times; a test holds it equal to sklearn's and scipy's)."""
    import numpy as np

    if not golds:
        return float("nan")
    if task.metric == "acc":
        return 100.0 * float(np.mean([g == p for g, p in zip(golds, preds)]))
    if task.metric == "f1_macro":  # over the gold labels only: an unreadable answer is no class, but it is wrong
        g, p = np.asarray(golds, dtype=object), np.asarray(preds, dtype=object)
        scores = []
        for label in set(golds):
            tp = np.sum((g == label) & (p == label))
            wrong = np.sum((g == label) != (p == label))  # false positives + false negatives
            scores.append(2 * tp / (2 * tp + wrong) if tp + wrong else 0.0)
        return 100.0 * float(np.mean(scores))
    g, p = np.asarray(golds, dtype=float), np.asarray(preds, dtype=float)
    if len(g) < 2 or g.std() == 0 or p.std() == 0:
        return 0.0  # undefined: the fork reports 0
    return 100.0 * abs(float(np.corrcoef(g, p)[0, 1]))


def bootstrap_ci(task: Task, golds: list, preds: list, n_resamples: int = 1000, seed: int = 0) -> list[float]:
    """Percentile bootstrap 95 % CI of the task's metric over items."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = len(golds)
    values = [
        metric_value(task, [golds[i] for i in idx], [preds[i] for i in idx])
        for idx in rng.integers(0, n, size=(n_resamples, n))
    ]
    low, high = np.nanpercentile(values, [2.5, 97.5])
    return [round(float(low), 2), round(float(high), 2)]


def npm(scores: dict[str, float]) -> float:
    """Normalized Preferred Metric: mean over tasks of (score - baseline) / (100 - baseline), in percent."""
    return 100.0 * sum((s - TASKS[t].baseline) / (100.0 - TASKS[t].baseline) for t, s in scores.items()) / len(scores)
