"""How bad a translated row probably is, as one number to rank rows by, and how well that ranking finds the rows that
are bad against careful references.

Signals (higher = better; each a function of one row's cached estimate from `lib.mt.quality`):
- `round_trip`: chrF of the row sent back to English with the bundled pt->en model, against the source;
- `round_trip_min_field`: the same per field, the lowest;
- `length_deviation`: minus the largest |log(PT/EN length / 1.1)| over the fields;
- `grammar`: minus the count of grammar slips the engine is known for (`lib.mt.grammar_slips`: options made commands,
  enclitics after -am/-em/-r);
- `lm`: mean log-probability per token of the Portuguese under the embedded LM (Gemma 3 270M; `Surprisal`; optional,
  about a second per row on 2 CPU cores);
- `score`: the estimate rows are ranked by: `round_trip + LM_WEIGHT * lm + GRAMMAR_WEIGHT * grammar` (absent terms
  left out; `score_without_lm`: the same without the LM, what a run without `qe_lm` ranks by).

`judge` measures each signal against per-row reference chrF (Spearman rho, recall of the worst 20 %), `selection`
picks the rows a post-editing budget sends, `worst` lists the rows the estimate ranks worst.
"""

from __future__ import annotations

import math
import threading

from lib import mt

LM_WEIGHT = 40.0  # chrF points per nat of mean log-probability; chosen on the 44 shipped samples only
GRAMMAR_WEIGHT = 20.0  # chrF points per grammar slip: each slip ranks a row below every slip-free row of its LM score
WORST_SHARE = 0.2
SIGNALS = ("round_trip", "round_trip_min_field", "length_deviation", "grammar", "lm", "score_without_lm", "score")


# ---------------------------------------------------------------- signals of one estimate


def signals(estimate: dict) -> dict[str, float | None]:
    """Every signal of one row's estimate (None where it was not measured)."""
    fields = estimate.get("round_trip_chrf_fields") or {}
    ratios = [r for r in (estimate.get("length_ratio") or {}).values() if r > 0]
    grammar = estimate.get("grammar")
    values = {
        "round_trip": estimate.get("round_trip_chrf"),
        "round_trip_min_field": min(fields.values()) if fields else None,
        "length_deviation": -max(abs(math.log(r / 1.1)) for r in ratios) if ratios else None,
        "grammar": None if grammar is None else -float(len(grammar)),
        "lm": estimate.get("lm_logprob"),
    }
    return {
        **values,
        "score_without_lm": score(estimate, {**values, "lm": None}),
        "score": score(estimate, values),
    }


def score(estimate: dict, values: dict | None = None) -> float:
    """The ranking estimate (higher = better): round-trip chrF + LM_WEIGHT x mean log-prob + GRAMMAR_WEIGHT x
    (minus the slips), each term only where measured."""
    values = values or signals(estimate)
    total = values["round_trip"] or 0.0
    if values["lm"] is not None:
        total += LM_WEIGHT * values["lm"]
    if values["grammar"] is not None:
        total += GRAMMAR_WEIGHT * values["grammar"]
    return round(total, 3)


def ranked(estimates: dict[str, dict], order: list[str] | None = None) -> list[str]:
    """Ids worst first by `score`; ties keep `order` (default: the estimates' order)."""
    order = order or list(estimates)
    position = {i: n for n, i in enumerate(order)}
    return sorted((i for i in order if i in estimates), key=lambda i: (score(estimates[i]), position[i]))


# ---------------------------------------------------------------- judged against references


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's rho (average ranks for ties); None when either side is constant or has under 3 values."""
    from scipy.stats import spearmanr

    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return round(float(spearmanr(x, y).statistic), 3)


def recall_worst(signal: list[float], gold: list[float], share: float = WORST_SHARE) -> float:
    """Of the round(share x n) rows worst by `gold`, the fraction among the round(share x n) the signal ranks worst
    (ties broken by position, the same for both); chance is about `share`."""
    k = max(1, round(share * len(gold)))
    worst_gold = sorted(range(len(gold)), key=lambda i: (gold[i], i))[:k]
    worst_signal = sorted(range(len(signal)), key=lambda i: (signal[i], i))[:k]
    return round(len(set(worst_gold) & set(worst_signal)) / k, 3)


def judge(estimates: dict[str, dict], reference_chrf: dict[str, float]) -> dict:
    """Each signal against the per-row reference chrF of the same rows: `qe_spearman`, `qe_recall_worst20`, `rows`."""
    ids = [i for i in reference_chrf if i in estimates]
    gold = [reference_chrf[i] for i in ids]
    values = {i: signals(estimates[i]) for i in ids}
    rho, recall = {}, {}
    for name in SIGNALS:
        if ids and all(values[i][name] is not None for i in ids):
            series = [values[i][name] for i in ids]
            rho[name], recall[name] = spearman(series, gold), recall_worst(series, gold)
    return {"rows": len(ids), "qe_spearman": rho, "qe_recall_worst20": recall}


# ---------------------------------------------------------------- post-editing by budget


def selection(order: list[str], estimates: dict[str, dict], hard: dict[str, list[str]], share: float) -> list[dict]:
    """The rows a post-edit budget sends, in source order: the ceil(share x n) the estimate ranks worst plus every
    row with a hard flag (`hard`: id -> reasons); `share` 1 sends every row. Each with `why` it is sent, its `rank`
    and `reasons` (why + the grammar slips found: what the post-editor is told)."""
    if not 0 <= share <= 1:
        raise ValueError(f"post_edit_share must be between 0 and 1, got {share}")
    if 0 < share < 1 and not estimates:
        raise ValueError("a post_edit_share between 0 and 1 ranks rows by the quality estimate: run it (qe=True)")
    worst = ranked(estimates, order) if estimates else list(order)
    rank = {i: n + 1 for n, i in enumerate(worst)}
    budget = set(order) if share >= 1 else set(worst[: math.ceil(share * len(worst) - 1e-9)])
    chosen = []
    for i in order:
        why = list(hard.get(i, []))
        if i in budget:
            why.append(
                "every row (post_edit_share 1)"
                if share >= 1
                else f"ranked {rank[i]} of {len(worst)} by the quality estimate (worst {share:.0%})"
            )
        if why:
            slips = list((estimates.get(i) or {}).get("grammar") or [])
            chosen.append({"id": i, "why": why, "hard_flag": i in hard, "rank": rank.get(i), "reasons": why + slips})
    return chosen


def token_estimate(text: str) -> int:
    """Tokens a chat model bills for `text`, estimated as characters / 3.5 (no tokenizer of the remote model here)."""
    return math.ceil(len(text) / 3.5)


def announce(plan: list[dict], share: float, n: int, show: int = 20) -> None:
    """Print what a post-edit budget will send, before it is sent: how many rows and why, the tokens (estimated),
    and the first `show` rows."""
    hard = sum(p["hard_flag"] for p in plan)
    print(
        f"post-edit: {len(plan)} of {n} rows (post_edit_share {share:g}: {len(plan) - hard} by rank only, {hard} with "
        f"a hard flag), about {sum(p['tokens'] for p in plan):,} tokens in and out (characters / 3.5)"
    )
    for p in plan[:show]:
        print(f"  {p['id']}: ~{p['tokens']} tokens; {'; '.join(p['why'])[:160]}")
    if len(plan) > show:
        print(f"  ... and {len(plan) - show} more (post_edit/plan.jsonl)")


def worst(rows: list[dict], translations: dict[str, dict], estimates: dict[str, dict], n: int = 5) -> list[dict]:
    """The n rows the estimate ranks worst: English, Portuguese (every field, one line each) and the signals."""
    by_id = {r["id"]: r for r in rows}
    out = []
    for i in ranked(estimates, [r["id"] for r in rows])[:n]:
        if i not in translations:
            continue
        row, pt = by_id[i], translations[i]["translation"]
        values = signals(estimates[i])
        out.append(
            {
                "id": i,
                "score": values["score"],
                "round_trip": values["round_trip"],
                "lm": values["lm"],
                "slips": "; ".join(estimates[i].get("grammar") or []),
                "hard_flags": "; ".join(estimates[i].get("reasons") or []),
                "en": "\n".join(f"{s}: {row[s]}" for s in mt.SOURCE_KEYS),
                "pt": "\n".join(f"{t}: {pt[t]}" for t in mt.TARGET_KEYS),
            }
        )
    return out


# ---------------------------------------------------------------- the LM signal


class Surprisal:
    """Mean log-probability per token of a text under the embedded LM (Gemma 3 270M base; higher = more fluent),
    loaded once; `logprob` is serialised by a lock (the model runs its own threads)."""

    def __init__(self, model: str = "embedded"):
        from lib import models

        self.tokenizer, self.model = models.load_tokenizer(model), models.load_model(model)
        self.model.eval()
        self.lock = threading.Lock()

    def logprob(self, text: str) -> float:
        import torch

        ids = [self.tokenizer.bos_token_id, *self.tokenizer(text, add_special_tokens=False)["input_ids"]]
        with self.lock, torch.no_grad():
            tensor = torch.tensor([ids], device=self.model.device)
            logits = self.model(tensor).logits[0, :-1].float()
            logprobs = torch.log_softmax(logits, -1).gather(1, tensor[0, 1:, None])[:, 0]
        return round(float(logprobs.mean()), 4)

    def complete(self, item: dict) -> dict:  # a `lib.api.Jobs` backend: one row in, its LM signal out
        return {"lm_logprob": self.logprob("\n".join(item["translation"][k] for k in mt.TARGET_KEYS))}
