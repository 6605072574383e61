"""Translate Cosmos QA (EN) to Brazilian Portuguese with an LLM: resumable, validated, concurrent.

Protocol (fixed, so any OpenAI-compatible server can be swapped in): the last user message is the source record
as JSON with keys `context, question, answer0..answer3`; the reply must be one JSON object with exactly the string
keys `contexto, pergunta, A, B, C, D`, all non-empty. The label never goes to the model; it is copied.

Reliability: every completed record is appended to `cache.jsonl` (flushed and fsynced) keyed by id, so a crash
loses at most the records in flight and a rerun skips what is done; records that still fail after `max_retries`
go to `ledger.jsonl` with their last reason and raw reply, and `retry_failed=True` re-tries only those.

CLI: `python -m lib.translate --source data/samples/cosmos_qa_en.jsonl --base-url http://127.0.0.1:8000/v1 \
--model my-model --workers 16 --output-dir data/processed/cosmos_qa_ptbr`
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import datasets

from lib import api, data
# The client, retries, cache and ledger live in lib.api (shared with lib.judge); these names stay importable here.
from lib.api import FatalBackendError, JsonlLog, ReplyError, RunStats, TransientError  # noqa: F401

SOURCE_KEYS = ("context", "question", "answer0", "answer1", "answer2", "answer3")
TARGET_KEYS = ("contexto", "pergunta", "A", "B", "C", "D")
FIELD_PAIRS = dict(zip(SOURCE_KEYS, TARGET_KEYS))
NONE_EN, NONE_PT = "None of the above choices .", data.NONE_OF_THE_ABOVE

SYSTEM_PROMPT = f"""Você é um tradutor profissional de inglês para português do Brasil.
Você recebe um objeto JSON com as chaves "context", "question", "answer0", "answer1", "answer2" e "answer3":
um texto, uma pergunta de compreensão sobre ele e quatro alternativas.
Responda SOMENTE com um objeto JSON com exatamente as chaves "contexto", "pergunta", "A", "B", "C" e "D",
contendo, nesta ordem, a tradução de context, question, answer0, answer1, answer2 e answer3.
Regras:
- Preserve o sentido exato; a alternativa correta deve continuar correta e as erradas, erradas.
- Escreva em português do Brasil natural; adapte expressões idiomáticas em vez de traduzi-las palavra por palavra.
- Resolva palavras ambíguas pelo contexto; expanda ou adapte abreviações quando necessário.
- Mantenha nomes de pessoas, marcas e lugares como estão.
- Traduza "{NONE_EN}" sempre como "{NONE_PT}".
- Não acrescente comentários, explicações nem campos extras."""

REPLY_SCHEMA = {  # OpenAI structured outputs (`response_format` json_schema, strict)
    "name": "cosmos_qa_ptbr",
    "strict": True,
    "schema": {"type": "object", "additionalProperties": False, "required": list(TARGET_KEYS),
               "properties": {k: {"type": "string"} for k in TARGET_KEYS}},
}


# ---------------------------------------------------------------- protocol

def messages_for(row: dict) -> list[dict]:
    payload = {k: row[k] for k in SOURCE_KEYS}
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": json.dumps(payload, ensure_ascii=False)}]


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def parse_reply(reply: str, source: dict) -> dict:
    """Validate a reply (JSON only, never eval) and return the six translated fields; raise ReplyError."""
    obj = api.json_object(reply)
    letters = [k for k in obj if re.fullmatch(r"[A-Z]", str(k))]
    if len(letters) != 4:
        raise ReplyError(f"option count wrong: {len(letters)} lettered options ({', '.join(sorted(letters))})")
    if missing := [k for k in TARGET_KEYS if k not in obj]:
        raise ReplyError(f"missing key(s): {', '.join(missing)}")
    if extra := [k for k in obj if k not in TARGET_KEYS]:
        raise ReplyError(f"extra key(s): {', '.join(map(str, extra))}")
    for key in TARGET_KEYS:
        if not isinstance(obj[key], str):
            raise ReplyError(f"field {key}: expected text, got {type(obj[key]).__name__}")
        if not obj[key].strip():
            raise ReplyError(f"field {key}: empty")
    for src, dst in (("context", "contexto"), ("question", "pergunta")):
        if _normalise(obj[dst]) == _normalise(source[src]):
            raise ReplyError(f"untranslated copy: {dst} equals the English {src}")
    if all(_normalise(obj[d]) == _normalise(source[s]) for s, d in list(FIELD_PAIRS.items())[2:]):
        raise ReplyError("untranslated copy: all four options equal the English ones")
    return {k: obj[k] for k in TARGET_KEYS}


# ---------------------------------------------------------------- backends

class OpenAIBackend(api.OpenAIBackend):
    """Any OpenAI-compatible chat-completions server; `structured`: the reply's strict JSON schema is sent too."""

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None,
                 structured: bool = True, timeout: float = 120.0):
        super().__init__(model, base_url, api_key, timeout=timeout, response_format={
            "type": "json_schema", "json_schema": REPLY_SCHEMA} if structured else None)


def translation_budget(batch: list[list[dict]], tokenizer) -> int:
    """A translation is about as long as its source: 1.5x the longest user turn plus the JSON keys."""
    return int(1.5 * max(len(tokenizer(m[-1]["content"])["input_ids"]) for m in batch)) + 48


class LocalBackend(api.LocalBackend):
    """A causal LM from `lib.models` (the embedded model on CPU, any Hub id on a GPU), batched greedy decoding."""

    def __init__(self, model: str = "embedded", batch_size: int = 4, max_new_tokens: int | None = None):
        super().__init__(model, batch_size=batch_size, max_new_tokens=max_new_tokens, budget=translation_budget)


# ---------------------------------------------------------------- the run

class Translator(api.Jobs):
    """`lib.api.Jobs` with the translation protocol: cache records are `{"id", "translation", "attempts"}`."""

    def __init__(self, backend, output_dir: str | Path, workers: int = 4, max_retries: int = 3,
                 backoff_base: float = 1.0, backoff_max: float = 60.0, progress: bool = True):
        super().__init__(backend, output_dir, messages_for, parse_reply, result_key="translation", workers=workers,
                         max_retries=max_retries, backoff_base=backoff_base, backoff_max=backoff_max,
                         progress=progress, desc="translate")

    def translations(self) -> dict[str, dict]:
        """id -> {"translation", "attempts"}; the first record of an id wins (later copies are ignored)."""
        return self.results()


# ---------------------------------------------------------------- dataset assembly

def source_rows(dataset: datasets.DatasetDict) -> list[dict]:
    return [row for split in dataset.values() for row in split]


def to_portuguese(dataset: datasets.DatasetDict, translations: dict[str, dict]) -> datasets.DatasetDict:
    """PT-schema splits in source order, from the cached translations; untranslated ids are left out (ledger)."""
    out = {}
    for split, ds in dataset.items():
        rows = []
        for row in ds:
            if row["id"] in translations:
                label = None if row["label"] is None else data.label_to_letter(row["label"])
                rows.append({"id": row["id"], **translations[row["id"]]["translation"], "Label": label})
        out[split] = data.to_dataset(rows, data.COSMOS_PT)
    return datasets.DatasetDict(out)


def quality_report(dataset: datasets.DatasetDict, translator: Translator, rejected_rows: int = 0,
                   low: float = 0.6, high: float = 1.8) -> dict:
    """Counts, attempts histogram, PT/EN length ratios with outliers, copies and options made identical."""
    translations, failures = translator.translations(), translator.failures()
    rows = source_rows(dataset)
    ratios: dict[str, list[float]] = {dst: [] for dst in TARGET_KEYS}
    outliers, copies, identical_options = [], [], []
    for row in rows:
        if row["id"] not in translations:
            continue
        pt = translations[row["id"]]["translation"]
        for src, dst in FIELD_PAIRS.items():
            ratio = len(pt[dst]) / max(1, len(row[src]))
            ratios[dst].append(ratio)
            if not low <= ratio <= high and len(row[src]) >= 20:
                outliers.append({"id": row["id"], "field": dst, "ratio": round(ratio, 2), "en": row[src], "pt": pt[dst]})
            if _normalise(pt[dst]) == _normalise(row[src]) and len(row[src]) >= 20:
                copies.append({"id": row["id"], "field": dst, "text": pt[dst]})
        options = [_normalise(pt[k]) for k in "ABCD"]
        if len(set(options)) < 4:
            identical_options.append({"id": row["id"], "options": [pt[k] for k in "ABCD"]})
    histogram: dict[int, int] = {}
    for record in list(translations.values()) + list(failures.values()):
        histogram[record["attempts"]] = histogram.get(record["attempts"], 0) + 1
    ids = {row["id"] for row in rows}
    return {
        "rows": len(rows), "done": sum(i in translations for i in ids), "failed": sum(i in failures for i in ids),
        "pending": sum(i not in translations and i not in failures for i in ids), "rejected_rows": rejected_rows,
        "attempts_histogram": dict(sorted(histogram.items())),
        "length_ratio_mean": {k: round(sum(v) / len(v), 3) for k, v in ratios.items() if v},
        "length_ratios": ratios, "length_ratio_bounds": [low, high], "length_outliers": outliers,
        "untranslated_copies": copies, "identical_options": identical_options,
        "failures": [{"id": f["id"], "attempts": f["attempts"], "last_reason": f["last_reason"]}
                     for f in failures.values() if f["id"] in ids],
    }


def side_by_side(dataset: datasets.DatasetDict, translations: dict[str, dict], n: int = 3) -> list[dict]:
    out = []
    for row in source_rows(dataset):
        if row["id"] in translations and len(out) < n:
            pt = translations[row["id"]]["translation"]
            out += [{"id": row["id"], "field": dst, "en": row[src], "pt": pt[dst]} for src, dst in FIELD_PAIRS.items()]
    return out


def make_backend(backend: str, model: str, base_url: str | None = None, structured: bool = True,
                 batch_size: int = 4, max_new_tokens: int | None = None):
    if backend == "openai":
        return OpenAIBackend(model, base_url=base_url, structured=structured)
    if backend == "local":
        return LocalBackend(model, batch_size=batch_size, max_new_tokens=max_new_tokens)
    raise ValueError(f"backend must be 'openai' or 'local', got {backend!r}")


def translate_dataset(source: str, output_dir: str | Path, backend, splits: list[str] | None = None,
                      limit: int | None = None, workers: int = 4, max_retries: int = 3,
                      retry_failed: bool = False, progress: bool = True, persist_dir: str | Path | None = None,
                      **translator_kwargs):
    """Load + validate the EN source, translate what is not done yet, save the PT DatasetDict.

    `persist_dir` (e.g. on Google Drive) holds the cache and the failure ledger instead of `output_dir`: a rerun on a
    fresh runtime with the same `persist_dir` requests nothing it already has, and rebuilds the dataset from it.
    Returns (PT DatasetDict, source DatasetDict, validation report, Translator, RunStats).
    """
    source_ds, report = data.load(source, "cosmos_qa_en", splits=splits, limit=limit)
    translator = Translator(backend, persist_dir or output_dir, workers=workers, max_retries=max_retries,
                            progress=progress, **translator_kwargs)
    stats = translator.run(source_rows(source_ds), retry_failed=retry_failed)
    portuguese = to_portuguese(source_ds, translator.translations())
    data.save(portuguese, output_dir)
    return portuguese, source_ds, report, translator, stats


def dry_run(source: str, output_dir: str | Path, splits: list[str] | None = None, limit: int | None = None,
            persist_dir: str | Path | None = None) -> dict:
    """What a run would do: rows per split of a local source (a Hub id is only fetched by a real run), and how many
    records the cache and failure ledger (in `persist_dir` when given, else the output folder) already hold."""
    output_dir = Path(output_dir)
    state_dir = Path(persist_dir or output_dir)

    def records(name: str) -> int:
        path = state_dir / name
        return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip()) if path.exists() else 0

    plan = {"source": source, "output_dir": str(output_dir), "cache_dir": str(state_dir), "cached": records("cache.jsonl"),
            "failed_in_ledger": records("ledger.jsonl")}
    from lib import paths

    local = Path(paths.resolve_source(source))
    if local.exists():
        rows, report = data.load(local, "cosmos_qa_en", splits=splits, limit=limit)
        plan.update({"rows": {k: len(v) for k, v in rows.items()}, "rejected_rows": report.n_rejected})
    else:
        plan["rows"] = "Hub dataset: fetched by the real run"
    return plan


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Translate Cosmos QA to pt-BR (resumable).")
    parser.add_argument("--source", required=True, help="hub id (cosmos_qa) or local file/folder")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--backend", default="openai", choices=["openai", "local"])
    parser.add_argument("--model", required=True)
    parser.add_argument("--base-url")
    parser.add_argument("--splits", nargs="*")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--max-retries", type=int, default=3)
    parser.add_argument("--backoff-base", type=float, default=1.0)
    parser.add_argument("--unstructured", action="store_true", help="plain JSON instructions, no response_format")
    parser.add_argument("--retry-failed", action="store_true", help="re-try only the ledger")
    parser.add_argument("--persist-dir", help="keep the cache and failure ledger here (e.g. Google Drive): a rerun on "
                                              "a fresh runtime requests nothing already translated")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan (source rows, records already cached or failed); translate nothing")
    args = parser.parse_args(argv)
    if args.dry_run:
        print(json.dumps(dry_run(args.source, args.output_dir, args.splits, args.limit, args.persist_dir), indent=2,
                         ensure_ascii=False) + f"\nbackend {args.backend}, model {args.model}, {args.workers} workers")
        return
    backend = make_backend(args.backend, args.model, args.base_url, structured=not args.unstructured)
    from lib import paths

    portuguese, _, report, translator, stats = translate_dataset(
        paths.resolve_source(args.source), args.output_dir, backend, splits=args.splits, limit=args.limit, workers=args.workers,
        max_retries=args.max_retries, retry_failed=args.retry_failed, backoff_base=args.backoff_base,
        persist_dir=args.persist_dir)
    print(report.summary())
    print(f"done {stats.done} (before: {stats.done_before}), failed {stats.failed}, "
          f"{stats.rows_per_second:.2f} rows/s; dataset: {dict(portuguese.num_rows)}")


if __name__ == "__main__":
    main()
