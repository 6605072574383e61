"""Schemas, loaders and row validation for Cosmos QA (EN and PT) and Canarim-Instruct.

Every source (hub id, local JSONL/CSV/Parquet file, or a folder with one file per split) goes through the same
validation: valid rows are kept, every bad row is reported with its location, id, field and reason, and the
rejects can be written to a file. Nothing is dropped silently.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import datasets

LETTERS = ("A", "B", "C", "D")
NONE_OF_THE_ABOVE = "Nenhuma das opções acima."  # Cosmos QA's "None of the above choices ." in the PT dataset
MAX_TEXT_CHARS = 20_000  # far above any real Cosmos/Canarim field; beyond it a row is a paste accident
LOCAL_EXTENSIONS = (".jsonl", ".json", ".csv", ".parquet")
# Files the repo's own runs keep beside the splits they write (lib.translate: caches, failure ledger, flagged rows,
# metrics): a folder of splits that holds them is still a folder of splits; load() names what it skipped.
BOOKKEEPING = ("cache", "ledger", "flagged", "metrics", "rejects")


@dataclass(frozen=True)
class Schema:
    name: str
    text_fields: tuple[str, ...]  # required, non-empty strings
    optional_text_fields: tuple[str, ...] = ()  # strings that may be empty (null counts as empty)
    label_field: str | None = None
    label_kind: str | None = None  # "index" (0-3) or "letter" (A-D)
    id_field: str | None = None

    column_order: tuple[str, ...] = ()  # output column order; defaults to id, texts, label

    @property
    def columns(self) -> list[str]:
        if self.column_order:
            return list(self.column_order)
        front = [self.id_field] if self.id_field else []
        back = [self.label_field] if self.label_field else []
        return front + list(self.text_fields + self.optional_text_fields) + back

    def features(self) -> datasets.Features:
        label = datasets.Value("int64") if self.label_kind == "index" else datasets.Value("string")
        return datasets.Features(
            {c: label if c == self.label_field else datasets.Value("string") for c in self.columns}
        )


COSMOS_EN = Schema(
    "cosmos_qa_en",
    ("context", "question", "answer0", "answer1", "answer2", "answer3"),
    label_field="label",
    label_kind="index",
    id_field="id",
)
COSMOS_PT = Schema(
    "cosmos_qa_pt",
    ("contexto", "pergunta", "A", "B", "C", "D"),
    label_field="Label",
    label_kind="letter",
    id_field="id",
)
CANARIM = Schema(
    "canarim",
    ("instruction", "output"),
    optional_text_fields=("input",),
    column_order=("instruction", "input", "output"),
)
SCHEMAS = {s.name: s for s in (COSMOS_EN, COSMOS_PT, CANARIM)}


# ---------------------------------------------------------------- EN <-> PT labels


def label_to_letter(label: int) -> str:
    """Cosmos QA EN label (0-3) -> PT letter (A-D)."""
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < len(LETTERS):
        raise ValueError(f"label must be an integer 0-3, got {label!r}")
    return LETTERS[label]


def letter_to_label(letter: str) -> int:
    """PT letter (A-D) -> Cosmos QA EN label (0-3)."""
    if letter not in LETTERS:
        raise ValueError(f"letter must be one of {', '.join(LETTERS)}, got {letter!r}")
    return LETTERS.index(letter)


def is_none_of_the_above(option: str) -> bool:
    """The "none of the above" option, whatever its spacing, case or final punctuation."""
    return " ".join(str(option).split()).rstrip(" .").casefold() == NONE_OF_THE_ABOVE.rstrip(".").casefold()


# ---------------------------------------------------------------- shortcut baselines


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", str(text).lower()))


SHORTCUTS = {  # rules that answer without reading; a set they solve well does not measure reading
    "longest": lambda r: max(LETTERS, key=lambda k: len(r[k])),
    "shortest": lambda r: min(LETTERS, key=lambda k: len(r[k])),
    "max_overlap": lambda r: max(LETTERS, key=lambda k: len(_words(r[k]) & _words(r["contexto"]))),
    "min_overlap": lambda r: min(LETTERS, key=lambda k: len(_words(r[k]) & _words(r["contexto"]))),
}


def shortcut_baselines(rows) -> dict[str, float | None]:
    """Accuracy of each surface-cue rule (pick the longest / shortest option, the one sharing the most / fewest
    `\\w+` words with the story; ties go to the earlier letter) on labelled PT-schema rows, next to chance."""
    rows = [r for r in rows if r.get("Label") in LETTERS]
    out = {
        name: (round(sum(rule(r) == r["Label"] for r in rows) / len(rows), 4) if rows else None)
        for name, rule in SHORTCUTS.items()
    }
    out["chance"] = 1 / len(LETTERS)
    return out


# ---------------------------------------------------------------- validation


@dataclass
class Reject:
    split: str
    location: str  # "line 7" (JSONL) or "row 7" (CSV/Parquet/hub, 1-based data rows)
    id: str | None
    errors: list[tuple[str, str]]  # (field, reason)
    record: object  # the raw row (or raw line text) as read

    def __str__(self) -> str:
        where = f"{self.split} {self.location}" + (f" (id {self.id!r})" if self.id is not None else "")
        return where + ": " + "; ".join(f"{f}: {r}" for f, r in self.errors)

    def to_json(self) -> dict:
        return {
            "split": self.split,
            "location": self.location,
            "id": self.id,
            "errors": [{"field": f, "reason": r} for f, r in self.errors],
            "record": self.record,
        }


@dataclass
class ValidationReport:
    schema: str
    rejects: list[Reject] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> {read, kept, rejected, beyond_limit}

    @property
    def n_rejected(self) -> int:
        return len(self.rejects)

    def summary(self) -> str:
        lines = [
            f"{split}: {c['read']} rows read, {c['kept']} kept, {c['rejected']} rejected"
            + (f", {c['beyond_limit']} valid rows beyond `limit`" if c.get("beyond_limit") else "")
            for split, c in self.counts.items()
        ]
        lines += [f"WARNING {w}" for w in self.warnings]
        lines += [f"REJECTED {r}" for r in self.rejects]
        return "\n".join(lines)

    def write_rejects(self, path: str | Path) -> Path:
        """Rejected rows with their reasons, one JSON object per line (an empty file when none)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            for reject in self.rejects:
                f.write(json.dumps(reject.to_json(), ensure_ascii=False, default=repr) + "\n")
        return path


def _text_error(value, optional: bool) -> str | None:
    if value is None:
        return None if optional else "missing (null)"
    if not isinstance(value, str):
        return f"wrong type: expected text, got {type(value).__name__} {value!r:.40}"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "invalid Unicode (lone surrogate)"
    if not optional and not value.strip():
        return "empty text"
    if len(value) > MAX_TEXT_CHARS:
        return f"absurdly long text ({len(value)} characters > {MAX_TEXT_CHARS})"
    return None


def _label(value, kind: str, from_csv: bool) -> tuple[object, str | None]:
    """(clean label, error). CSV has no types, so digit strings count as integers there."""
    if kind == "index":
        if from_csv and isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            return None, f"wrong kind: expected an integer 0-3, got {type(value).__name__} {value!r:.20}"
        if not 0 <= value <= 3:
            return None, f"out of range: expected 0-3, got {value}"
        return value, None
    if not isinstance(value, str):
        return None, f"wrong kind: expected a letter A-D, got {type(value).__name__} {value!r:.20}"
    if value not in LETTERS:
        return None, f"out of range: expected one of A, B, C, D, got {value!r:.20}"
    return value, None


def _is_unlabeled(value) -> bool:
    return value is None or value == "" or value == -1


def validate_row(raw, schema: Schema, labels_required: bool = True, from_csv: bool = False):
    """Return (clean row or None, [(field, reason)], extra columns). Pure: no I/O, no state."""
    if not isinstance(raw, dict):
        return None, [("(row)", f"not a JSON object ({type(raw).__name__})")], []
    if not raw:
        return None, [("(row)", "empty object")], []
    errors: list[tuple[str, str]] = []
    clean: dict = {}
    if schema.id_field:
        rid = raw.get(schema.id_field)
        if isinstance(rid, int) and not isinstance(rid, bool):
            rid = str(rid)
        if schema.id_field not in raw:
            errors.append((schema.id_field, "missing field"))
        elif (problem := _text_error(rid, optional=False)) is not None:
            errors.append((schema.id_field, problem))
        clean[schema.id_field] = rid
    for name in schema.text_fields + schema.optional_text_fields:
        optional = name in schema.optional_text_fields
        if name not in raw and not optional:
            errors.append((name, "missing field"))
            continue
        value = raw.get(name)
        if (problem := _text_error(value, optional)) is not None:
            errors.append((name, problem))
        clean[name] = "" if value is None and optional else value
    if schema.label_field:
        value = raw.get(schema.label_field)
        if schema.label_field not in raw and labels_required:
            errors.append((schema.label_field, "missing field"))
        elif not labels_required and _is_unlabeled(value):
            clean[schema.label_field] = None
        else:
            clean[schema.label_field], problem = _label(value, schema.label_kind, from_csv)
            if problem:
                errors.append((schema.label_field, problem))
    extra = [k for k in raw if k not in schema.columns]
    return (None if errors else {c: clean.get(c) for c in schema.columns}), errors, extra


# ---------------------------------------------------------------- reading sources


def jsonl_lines(path: str | Path):
    """Yield (location, parsed row or None, problem, raw text); a bad line never stops the file."""
    data = Path(path).read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for number, line in enumerate(data.split(b"\n"), start=1):  # not splitlines(): U+2028 is valid inside JSON
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as error:
            yield f"line {number}", None, f"not valid UTF-8 ({error.reason} at byte {error.start})", repr(line[:200])
            continue
        try:
            yield f"line {number}", json.loads(text), None, text
        except json.JSONDecodeError as error:
            yield f"line {number}", None, f"not valid JSON ({error.msg} at column {error.colno})", text[:2000]


def _read_table(path: Path):
    import pandas as pd

    if path.suffix == ".csv":
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)  # CSV is untyped: keep every cell as text
    else:
        frame = pd.read_parquet(path)
    # to_json turns numpy scalars into plain JSON types and NaN into null.
    rows = json.loads(frame.to_json(orient="records", force_ascii=False))
    for number, row in enumerate(rows, start=1):
        yield f"row {number}", row, None, row


def _folder_files(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """A folder's data files: split name -> file, and the names of the run bookkeeping files beside them."""
    data_files = [p for p in sorted(folder.iterdir()) if p.suffix in LOCAL_EXTENSIONS]
    return {p.stem: p for p in data_files if p.stem not in BOOKKEEPING}, [
        p.name for p in data_files if p.stem in BOOKKEEPING
    ]


def _local_split_files(path: Path, default_split: str) -> dict[str, Path]:
    if path.is_file():
        return {default_split: path}
    files = _folder_files(path)[0]
    if not files:
        raise FileNotFoundError(f"{path} holds no {'/'.join(LOCAL_EXTENSIONS)} file (one file per split)")
    return files


def _source_rows(source: str | Path, default_split: str) -> dict[str, tuple[object, bool]]:
    """split -> (iterator of (location, row, problem, raw), is_csv)."""
    path = Path(source).expanduser()
    if path.exists():
        out = {}
        for split, file in _local_split_files(path, default_split).items():
            if file.suffix in (".jsonl", ".json"):
                out[split] = (jsonl_lines(file), False)
            elif file.suffix in (".csv", ".parquet"):
                out[split] = (_read_table(file), file.suffix == ".csv")
            else:
                raise ValueError(f"{file}: unsupported file type (use {', '.join(LOCAL_EXTENSIONS)})")
        return out
    if str(source).startswith((".", "/", "~")) or Path(str(source)).suffix in LOCAL_EXTENSIONS:
        raise FileNotFoundError(f"data source {str(source)!r} does not exist")
    hub = datasets.load_dataset(str(source))  # a Hub id; HF_TOKEN is read from the environment by datasets
    return {
        split: (((f"row {i}", row, None, row) for i, row in enumerate(ds, start=1)), False) for split, ds in hub.items()
    }


def load(
    source: str | Path,
    schema: str | Schema,
    splits: list[str] | None = None,
    default_split: str = "train",
    labels_required: bool | None = None,
    limit: int | None = None,
) -> tuple[datasets.DatasetDict, ValidationReport]:
    """Load and validate `source` into a DatasetDict with the schema's columns.

    `labels_required=None` means: required except in a split named "test" (Cosmos QA hides test labels).
    `limit` keeps the first N valid rows per split (after validation, so a bad row never shifts the sample).
    """
    schema = SCHEMAS[schema] if isinstance(schema, str) else schema
    report = ValidationReport(schema.name)
    seen_ids: dict[str, str] = {}
    extra_columns: Counter = Counter()
    result = {}
    available = _source_rows(source, default_split)
    if Path(source).expanduser().is_dir():
        skipped = _folder_files(Path(source).expanduser())[1]
        if skipped:
            report.warnings.append(f"{source}: skipped {', '.join(skipped)} (run bookkeeping, not splits)")
    if splits is not None and (missing := [s for s in splits if s not in available]):
        if len(available) == 1 and len(splits) == 1:  # one file: it serves whatever split is asked
            ((only, rows_of_only),) = available.items()
            available = {splits[0]: rows_of_only}
            report.warnings.append(f"{source} has a single split ({only!r}): its rows serve as {splits[0]!r}")
        else:
            raise ValueError(f"split(s) {missing} not found in {source} (has: {sorted(available)})")
    for split, (rows, is_csv) in available.items():
        if splits is not None and split not in splits:
            continue
        required = (split != "test") if labels_required is None else labels_required
        kept, read, rejected, beyond_limit = [], 0, 0, 0
        for location, raw, problem, raw_text in rows:
            read += 1
            if problem is None:
                clean, errors, extra = validate_row(raw, schema, required, from_csv=is_csv)
                extra_columns.update(extra)
            else:
                clean, errors = None, [("(line)", problem)]
            rid = raw.get(schema.id_field) if schema.id_field and isinstance(raw, dict) else None
            if clean is not None and schema.id_field:
                clean_id = clean[schema.id_field]
                if clean_id in seen_ids:
                    clean, errors = None, [(schema.id_field, f"duplicate id (first seen at {seen_ids[clean_id]})")]
                else:
                    seen_ids[clean_id] = f"{split} {location}"
            if clean is None:
                rejected += 1
                report.rejects.append(
                    Reject(split, location, rid if isinstance(rid, (str, int)) else None, errors, raw_text)
                )
            elif limit is None or len(kept) < limit:
                kept.append(clean)
            else:
                beyond_limit += 1
        report.counts[split] = {"read": read, "kept": len(kept), "rejected": rejected, "beyond_limit": beyond_limit}
        result[split] = to_dataset(kept, schema)
    for column, n in extra_columns.items():
        report.warnings.append(f"unknown extra column {column!r} in {n} row(s): ignored, rows kept")
    return datasets.DatasetDict(result), report


def to_dataset(rows: list[dict], schema: Schema) -> datasets.Dataset:
    """Rows -> Dataset with the schema's features (an empty split keeps its columns)."""
    columns = {c: [row[c] for row in rows] for c in schema.columns}
    return datasets.Dataset.from_dict(columns, features=schema.features())


def write_jsonl(rows, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a JSONL file this repo wrote (predictions, outputs); data sources go through `load`."""
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def holdout_size(n_rows: int, requested: int | float | None) -> tuple[int, str | None]:
    """(rows to hold out, note). `requested` is a count, a fraction, or None (10 %). A count that would take half
    the source or more (a preset sized for the Hub dataset, run on a small file) is clamped to 10 % of the rows."""
    cap = max(1, n_rows // 10)
    if requested is None:
        return cap, None
    size = round(requested * n_rows) if isinstance(requested, float) and requested < 1 else int(requested)
    if size * 2 >= n_rows:
        return cap, (
            f"the source has {n_rows} rows: holding out {cap} for validation (10 %) instead of the {size} asked for"
        )
    return max(1, size), None


def holdout_split(ds: datasets.Dataset, validation_size: int | float | None, seed: int) -> datasets.DatasetDict:
    """Seeded train/validation split of one split (Canarim ships only `train`); see `holdout_size`."""
    size, note = holdout_size(len(ds), validation_size)
    if note:
        print(f"[data] note: {note}", flush=True)
    parts = ds.train_test_split(test_size=size, seed=seed, shuffle=True)
    return datasets.DatasetDict({"train": parts["train"], "validation": parts["test"]})


def train_validation(
    source, schema: str | Schema, validation_rows: int | float | None, seed: int, validation_from: str = "validation"
) -> tuple[datasets.DatasetDict, ValidationReport]:
    """Train and validation splits of any source, one rule for every trainer.

    The source's own `validation` split is used when it has one and `validation_from == "validation"`; otherwise
    (a single file, or `validation_from="train"` to keep the source's validation split unseen until the final
    evaluation) a seeded part of `train` is held out (`holdout_split`). A source without a `train` split is used
    whole as training data when it has a single split.
    """
    raw, report = load(source, schema)
    if "train" not in raw:
        if len(raw) != 1:
            raise ValueError(f"{source} has no 'train' split (has: {sorted(raw)})")
        raw = datasets.DatasetDict({"train": next(iter(raw.values()))})
    if validation_from == "validation" and "validation" in raw:
        return datasets.DatasetDict({"train": raw["train"], "validation": raw["validation"]}), report
    if validation_from not in ("validation", "train"):
        raise ValueError(f"validation_from must be 'validation' or 'train', got {validation_from!r}")
    return holdout_split(raw["train"], validation_rows, seed), report


def save(dataset: datasets.DatasetDict, out_dir: str | Path) -> Path:
    """`save_to_disk` (fast reload with `datasets.load_from_disk`) plus one readable JSONL per split."""
    out_dir = Path(out_dir)
    dataset.save_to_disk(str(out_dir / "arrow"))
    for split, ds in dataset.items():
        write_jsonl(ds, out_dir / f"{split}.jsonl")
    return out_dir
