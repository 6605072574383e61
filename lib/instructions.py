"""Instruction following without hand labels (notebook 07): does a model stop with EOS, does it loop, does it give
the number of items a "list exactly N" request asks for, how close is it to the reference answer (ROUGE-L, chrF,
BLEU), and how likely does it find the reference (perplexity of the completion).
"""

from __future__ import annotations

import math
import re

import numpy as np
import torch

from lib import prompts
from lib.evaluate import continuation_logprobs
from lib.inference import generate

# ---------------------------------------------------------------- instruction following (07)

_NUMBER_WORDS = {
    "dois": 2,
    "duas": 2,
    "três": 3,
    "tres": 3,
    "quatro": 4,
    "cinco": 5,
    "seis": 6,
    "sete": 7,
    "oito": 8,
    "nove": 9,
    "dez": 10,
}
_LIST_REQUEST = re.compile(
    r"\b(?:liste|cite|dê|de|enumere|mencione|indique|escreva|sugira)\s+(?:exatamente\s+)?"
    r"(\d+|dois|duas|três|tres|quatro|cinco|seis|sete|oito|nove|dez)\b",
    re.IGNORECASE,
)
_LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+\S", re.MULTILINE)


def requested_items(instruction: str) -> int | None:
    """N for requests like "Liste exatamente três frutas" / "Cite 4 capitais"; None otherwise."""
    match = _LIST_REQUEST.search(instruction)
    if not match:
        return None
    word = match.group(1).lower()
    return int(word) if word.isdigit() else _NUMBER_WORDS[word]


def count_list_items(text: str) -> int:
    return len(_LIST_ITEM.findall(text))


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def repetition(text: str) -> dict:
    """Share of repeated 4-grams (1 - unique/total) and distinct-1/2, over words."""
    words = _words(text)

    def grams(k):
        return [tuple(words[i : i + k]) for i in range(len(words) - k + 1)]

    four, one, two = grams(4), grams(1), grams(2)
    return {
        "repeated_4gram_rate": 1 - len(set(four)) / len(four) if four else 0.0,
        "distinct_1": len(set(one)) / len(one) if one else 0.0,
        "distinct_2": len(set(two)) / len(two) if two else 0.0,
    }


class _UnicodeWords:
    """rouge-score's default tokenizer drops every non-ASCII letter (ç, ã, é...): split on Unicode words instead."""

    @staticmethod
    def tokenize(text):
        return _words(text)


def text_metrics(predictions: list[str], references: list[str]) -> dict:
    """Corpus ROUGE-L F1 (mean), chrF and BLEU (sacrebleu), on a 0-100 scale."""
    import sacrebleu
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_UnicodeWords())
    rouge = [scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, references)]
    return {
        "rouge_l": round(100 * float(np.mean(rouge)), 2) if rouge else None,
        "chrf": round(sacrebleu.corpus_chrf(predictions, [references]).score, 2),
        "bleu": round(sacrebleu.corpus_bleu(predictions, [references]).score, 2),
    }


@torch.no_grad()
def completion_perplexity(
    model, tokenizer, pairs: list[tuple[str, str]], batch_size: int = 8, plain_text: bool = False
) -> float:
    """exp(mean NLL) over the completion tokens only (prompt tokens do not count)."""
    scores = continuation_logprobs(model, tokenizer, pairs, batch_size, plain_text)
    total, count = -sum(s for s, _ in scores), sum(n for _, n in scores)
    return round(math.exp(total / count), 3) if count else float("nan")


def evaluate_instructions(
    model, tokenizer, rows: list[dict], max_new_tokens: int = 128, batch_size: int = 8
) -> tuple[dict, list[dict]]:
    """Generate for each Canarim row with the Alpaca-PT prompt; return (metrics, per-row outputs)."""
    formatted = [prompts.format_alpaca_pt(r, tokenizer) for r in rows]
    # Alpaca-PT prompts are plain text: tokenized with the BOS that training gave them
    generations = generate(
        model, tokenizer, [f["prompt"] for f in formatted], max_new_tokens, batch_size, plain_text=True
    )
    per_row = []
    for row, gen in zip(rows, generations):
        wanted = requested_items(row["instruction"])
        items = count_list_items(gen["text"])
        per_row.append(
            {
                "instruction": row["instruction"],
                "input": row["input"],
                "reference": row["output"],
                "output": gen["text"],
                "stopped_by_eos": gen["stopped_by_eos"],
                "new_tokens": gen["new_tokens"],
                **repetition(gen["text"]),
                "length_ratio": len(_words(gen["text"])) / max(1, len(_words(row["output"]))),
                "requested_items": wanted,
                "items": items if wanted else None,
                "list_ok": (items == wanted and gen["stopped_by_eos"]) if wanted else None,
            }
        )
    list_rows = [r for r in per_row if r["requested_items"]]
    metrics = {
        "n": len(rows),
        **text_metrics([r["output"] for r in per_row], [r["reference"] for r in per_row]),
        "perplexity": completion_perplexity(
            model, tokenizer, [(f["prompt"], f["completion"]) for f in formatted], batch_size, plain_text=True
        ),
        "eos_stop_rate": round(float(np.mean([r["stopped_by_eos"] for r in per_row])), 4) if per_row else None,
        **{
            k: round(float(np.mean([r[k] for r in per_row])), 4) if per_row else None
            for k in ("repeated_4gram_rate", "distinct_1", "distinct_2", "length_ratio")
        },
        "list_requests": len(list_rows),
        "list_exact_rate": round(float(np.mean([r["list_ok"] for r in list_rows])), 4) if list_rows else None,
        "max_new_tokens": max_new_tokens,
    }
    return metrics, per_row
