"""How good a translation run is, offline: counts, attempts and PT/EN length ratios for any backend
(`quality_report`); the quality estimate of every translated row through `lib.api.Jobs` (`QualityEstimator`, signals
from `lib.mt.quality`, cached in `qe/cache.jsonl`) and its summary (`qe_summary`); sacrebleu chrF and BLEU against
reference translations (`reference_scores`; a source the reference does not cover is counted, not scored) and per
row (`reference_row_chrf`, what `lib.qe.judge` ranks the estimate against).
"""

from __future__ import annotations

import re
from pathlib import Path

import datasets

from lib import api, data, mt, paths, qe

SOURCE_KEYS, TARGET_KEYS = mt.SOURCE_KEYS, mt.TARGET_KEYS
FIELD_PAIRS = dict(zip(SOURCE_KEYS, TARGET_KEYS))


def source_rows(dataset: datasets.DatasetDict) -> list[dict]:
    return [row for split in dataset.values() for row in split]


def normalised(text: str) -> str:
    return " ".join(text.lower().split())


def quality_report(
    dataset: datasets.DatasetDict,
    translator: api.Jobs,
    rejected_rows: int = 0,
    low: float = mt.LENGTH_BOUNDS[0],
    high: float = mt.LENGTH_BOUNDS[1],
) -> dict:
    """Counts, attempts histogram, PT/EN length ratios with outliers, copies and options made identical."""
    translations, failures = translator.results(), translator.failures()
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
                outliers.append(
                    {"id": row["id"], "field": dst, "ratio": round(ratio, 2), "en": row[src], "pt": pt[dst]}
                )
            if normalised(pt[dst]) == normalised(row[src]) and len(row[src]) >= 20:
                copies.append({"id": row["id"], "field": dst, "text": pt[dst]})
        options = [normalised(pt[k]) for k in "ABCD"]
        if len(set(options)) < 4:
            identical_options.append({"id": row["id"], "options": [pt[k] for k in "ABCD"]})
    histogram: dict[int, int] = {}
    for record in list(translations.values()) + list(failures.values()):
        histogram[record["attempts"]] = histogram.get(record["attempts"], 0) + 1
    ids = {row["id"] for row in rows}
    return {
        "rows": len(rows),
        "done": sum(i in translations for i in ids),
        "failed": sum(i in failures for i in ids),
        "pending": sum(i not in translations and i not in failures for i in ids),
        "rejected_rows": rejected_rows,
        "attempts_histogram": dict(sorted(histogram.items())),
        "length_ratio_mean": {k: round(sum(v) / len(v), 3) for k, v in ratios.items() if v},
        "length_ratios": ratios,
        "length_ratio_bounds": [low, high],
        "length_outliers": outliers,
        "untranslated_copies": copies,
        "identical_options": identical_options,
        "failures": [
            {"id": f["id"], "attempts": f["attempts"], "last_reason": f["last_reason"]}
            for f in failures.values()
            if f["id"] in ids
        ],
    }


class QualityEstimator:
    """`lib.mt.quality` for every translated row, run through `lib.api.Jobs` (threads, `qe/cache.jsonl`: a rerun
    estimates nothing twice). The cache holds the signals; the threshold is applied when flagging. `lm`: also the
    embedded LM's mean log-probability of each row (`lib.qe.Surprisal`, cached in `qe_lm/cache.jsonl`)."""

    def __init__(
        self, state_dir: str | Path, workers: int = 2, round_trip: bool = True, progress: bool = True, lm: bool = False
    ):
        self.engine, self.round_trip, self.lm = mt.engine(), round_trip, lm
        self.state_dir, self.progress = Path(state_dir), progress
        self.jobs = api.Jobs(
            self,
            Path(state_dir) / "qe",
            messages_for=lambda item: item,
            parse=lambda estimate, item: estimate,
            result_key="qe",
            workers=workers,
            max_retries=0,
            progress=progress,
            desc="quality",
        )

    def complete(self, item: dict) -> dict:  # the Jobs "backend": one row in, its estimate out
        return mt.quality(item["source"], item["translation"], self.engine, self.round_trip)

    def run(self, rows: list[dict], translations: dict[str, dict]) -> dict[str, dict]:
        items = [
            {"id": r["id"], "source": r, "translation": translations[r["id"]]["translation"]}
            for r in rows
            if r["id"] in translations
        ]
        self.jobs.run(items)
        estimates = {i: record["qe"] for i, record in self.jobs.results().items()}
        by_id = {item["id"]: item for item in items}
        for i, estimate in estimates.items():  # an estimate cached before the grammar signal existed
            if "grammar" not in estimate and i in by_id:
                estimate["grammar"] = mt.grammar_slips(by_id[i]["source"], by_id[i]["translation"], self.engine)
        if self.lm and items:
            lm = api.Jobs(
                qe.Surprisal(),
                self.state_dir / "qe_lm",
                messages_for=lambda item: item,
                parse=lambda signal, item: signal,
                result_key="lm",
                workers=1,
                max_retries=0,
                progress=self.progress,
                desc="LM surprisal",
            )
            lm.run(items)
            for i, record in lm.results().items():
                if i in estimates:
                    estimates[i] = {**estimates[i], **record["lm"]}
        return estimates


def qe_summary(estimates: dict[str, dict], flagged: list[dict], threshold: float, round_trip: bool) -> dict:
    """What `metrics.json` says of the quality estimate: rows, flagged, reasons by kind, round-trip chrF."""
    chrfs = sorted(e["round_trip_chrf"] for e in estimates.values() if e.get("round_trip_chrf") is not None)
    kinds: dict[str, int] = {}
    for row in flagged:
        for reason in row["reasons"]:
            kind = re.sub(r"^(contexto|pergunta|[ABCD]): ", "", reason).split(":")[0]
            kind = re.sub(r"[\d.]+.*$", "", kind).strip()
            kinds[kind] = kinds.get(kind, 0) + 1
    return {
        "rows": len(estimates),
        "flagged": len(flagged),
        "threshold": threshold,
        "round_trip": round_trip,
        "round_trip_chrf_mean": round(sum(chrfs) / len(chrfs), 1) if chrfs else None,
        "round_trip_chrf_min": chrfs[0] if chrfs else None,
        "reasons": dict(sorted(kinds.items())),
    }


def reference_scores(portuguese: datasets.DatasetDict, reference: str | Path) -> dict:
    """sacrebleu chrF and BLEU of the translation against reference translations (PT schema, matched by id):
    every field of every matched row as one segment, then per field."""
    from sacrebleu.metrics import BLEU, CHRF

    refs, report = data.load(reference, "cosmos_qa_pt")
    by_id = {r["id"]: r for split in refs.values() for r in split}
    translated = [r for split in portuguese.values() for r in split]
    rows = [r for r in translated if r["id"] in by_id]
    counts = {
        "reference": paths.portable(reference),
        "reference_rows": len(rows),
        "reference_unmatched": len(translated) - len(rows),
        "reference_rejected": report.n_rejected,
    }
    if not rows:  # a source the reference does not cover: nothing scored, and the counts say so
        return {"chrf": None, "bleu": None, **counts, "per_field": {}}

    def score(keys) -> dict:
        hyp = [r[k] for r in rows for k in keys]
        ref = [by_id[r["id"]][k] for r in rows for k in keys]
        return {
            "chrf": round(CHRF().corpus_score(hyp, [ref]).score, 1),
            "bleu": round(BLEU().corpus_score(hyp, [ref]).score, 1),
        }

    return {**score(TARGET_KEYS), **counts, "per_field": {k: score([k]) for k in TARGET_KEYS}}


def reference_row_chrf(portuguese: datasets.DatasetDict, reference: str | Path) -> dict[str, float]:
    """id -> sacrebleu sentence chrF of the row (six fields, one per line) against its reference; matched ids only."""
    from sacrebleu.metrics import CHRF

    refs = {r["id"]: r for split in data.load(reference, "cosmos_qa_pt")[0].values() for r in split}
    chrf = CHRF()
    return {
        r["id"]: round(
            chrf.sentence_score(
                "\n".join(r[k] for k in TARGET_KEYS), ["\n".join(refs[r["id"]][k] for k in TARGET_KEYS)]
            ).score,
            2,
        )
        for split in portuguese.values()
        for r in split
        if r["id"] in refs
    }


def dry_run(
    source: str,
    output_dir: str | Path,
    splits: list[str] | None = None,
    limit: int | None = None,
    persist_dir: str | Path | None = None,
) -> dict:
    """What a run would do: rows per split of a local source (a Hub id is only fetched by a real run), and how many
    records the cache and failure ledger (in `persist_dir` when given, else the output folder) already hold."""
    output_dir = Path(output_dir)
    state_dir = Path(persist_dir or output_dir)

    def records(name: str) -> int:
        path = state_dir / name
        return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip()) if path.exists() else 0

    plan = {
        "source": source,
        "output_dir": paths.relative(output_dir),
        "cache_dir": paths.relative(state_dir),
        "cached": records("cache.jsonl"),
        "failed_in_ledger": records("ledger.jsonl"),
        "quality_estimated": records("qe/cache.jsonl"),
        "post_edited": records("post_edit/cache.jsonl"),
    }
    local = Path(paths.resolve_source(source))
    if local.exists():
        rows, report = data.load(local, "cosmos_qa_en", splits=splits, limit=limit)
        plan.update({"rows": {k: len(v) for k, v in rows.items()}, "rejected_rows": report.n_rejected})
    else:
        plan["rows"] = "Hub dataset: fetched by the real run"
    return plan
