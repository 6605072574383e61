"""Data for the Cosmos QA PT lm-eval tasks: rows loaded and validated by `lib.data.load`, prompts by `lib.prompts`.

lm-evaluation-harness calls `load` (the YAMLs' `custom_dataset`) with the task's `metadata` (`data`, `split`) merged
with `--metadata` from the command line (and the `--model_args`, ignored here). The user message and the system
prompt come from `lib.prompts`, the same functions notebook 06 scores with, so the two can never drift apart; the chat
template itself is applied by lm-eval (`--apply_chat_template`) through the model's tokenizer, exactly as
`lib.prompts.render_cosmos` applies it.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # configs/lm_eval/utils.py -> the repository root
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lib import paths, prompts  # noqa: E402
from lib import data as lib_data  # noqa: E402

DEFAULT_DATA = "heloisy/cosmos_qa_ptbr"


def docs(rows):
    """Cosmos QA PT rows (datasets.Dataset) -> the columns the task YAMLs name."""
    letters = list(lib_data.LETTERS)
    return rows.map(lambda row: {"system": prompts.COSMOS_SYSTEM_PROMPT,
                                 "user": prompts.cosmos_user_message(row),
                                 "options": [row[k] for k in letters],
                                 "label_index": letters.index(row["Label"])})


def load(data: str = DEFAULT_DATA, split: str = "validation", limit: int | None = None, **_ignored):
    """`data`: a Hub id or any local file / folder `lib.data.load` accepts (a single file is read as `split`).

    `limit` keeps the first N valid rows (lm-eval's own `--limit` does the same on the loaded split)."""
    if not data:
        raise ValueError("metadata 'data' is empty: pass --metadata '{\"data\": \"<hub id | file | folder>\"}'")
    loaded, report = lib_data.load(paths.resolve_source(str(data)), "cosmos_qa_pt", splits=[split],
                                   default_split=split, labels_required=True,
                                   limit=None if limit is None else int(limit))
    if report.n_rejected:
        print(f"[cosmos_qa_ptbr] {report.n_rejected} row(s) rejected by lib.data validation:\n{report.summary()}")
    return {split: docs(loaded[split])}
