"""Open answers judged by an LLM, the way the field judges them, with the judge's biases measured.

- **Pairwise** (Vicuna / AlpacaEval / MT-Bench): for each instruction, answer A vs answer B, asked **in both orders**;
  a win counts only when both orders agree, anything else is a tie. `position_consistency` (verdicts that survive the
  swap) and `first_position_preference` (how often the judge picks whatever it reads first) expose position bias;
  `length_controlled_win_rate_b` (AlpacaEval 2) is B's win rate at equal answer length, from a logistic fit of the
  per-order outcome on the length difference and the position, because judges prefer longer answers.
- **Pointwise** (MT-Bench single-answer grading): a 1-10 score per answer with a one-sentence reason, optionally
  against the reference answer.

Any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp server) through `lib.api` — the translator's client,
retries with backoff, concurrent workers, fsynced cache and failure ledger; every cache key hashes the judge model
and the exact messages sent, and verdicts no request asks for any more are pruned. Replies must be strict JSON: pairwise `{"winner": "A" | "B" | "tie", "reason": "…"}`
(`A` is always the answer shown first), pointwise `{"score": 1-10, "reason": "…"}`; extra keys are ignored, anything
else is an invalid verdict (retried, then ledgered with the reason).

CLI: `python -m lib.judge --a outputs_base.jsonl --b outputs_tuned.jsonl --base-url URL --model NAME --output-dir DIR
[--workers N] [--limit N] [--dry-run]` (files: notebook 07's `outputs_*.jsonl`, paired by position and instruction).
Writes `DIR/judge.json` and `DIR/verdicts.jsonl`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from pathlib import Path

import numpy as np

from lib import api, data, paths

PROMPT_VERSION = (
    "pt-judge-v1"  # named in judge.json; cache keys hash the messages themselves, so any prompt change counts
)
FIELDS = ("instruction", "input", "reference", "output")

PAIRWISE_SYSTEM = """Você é um avaliador imparcial de respostas escritas em português do Brasil.
Você recebe uma instrução (às vezes com uma entrada) e duas respostas, A e B, de assistentes diferentes.
Decida qual resposta atende melhor à instrução: correção, utilidade, clareza, respeito ao que foi pedido (por
exemplo, o número de itens) e bom português. Não deixe que o tamanho das respostas nem a ordem em que aparecem
influenciem a decisão; se forem equivalentes, declare empate.
Responda SOMENTE com um objeto JSON: {"winner": "A", "B" ou "tie", "reason": "<uma frase>"}."""

POINTWISE_SYSTEM = """Você é um avaliador imparcial de respostas escritas em português do Brasil.
Você recebe uma instrução (às vezes com uma entrada) e a resposta de um assistente{reference}.
Dê uma nota de 1 a 10 à resposta: correção, utilidade, clareza, respeito ao que foi pedido e bom português.
Responda SOMENTE com um objeto JSON: {{"score": <inteiro de 1 a 10>, "reason": "<uma frase>"}}."""

SCHEMAS = {  # OpenAI structured outputs, where the server supports them
    "pair": {
        "name": "pairwise_verdict",
        "strict": True,
        "schema": {
            "type": "object",
            "additionalProperties": False,
            "required": ["winner", "reason"],
            "properties": {"winner": {"type": "string", "enum": ["A", "B", "tie"]}, "reason": {"type": "string"}},
        },
    },
    "score": {
        "name": "pointwise_verdict",
        "strict": True,
        "schema": {
            "type": "object",
            "additionalProperties": False,
            "required": ["score", "reason"],
            "properties": {"score": {"type": "integer"}, "reason": {"type": "string"}},
        },
    },
}


# ---------------------------------------------------------------- the answers to judge


def load_pairs(a_path: str | Path, b_path: str | Path, limit: int | None = None) -> list[dict]:
    """Rows of two notebook-07 output files, paired by position; the same instruction (and input) on both sides."""
    sides = {}
    for side, path in (("a", a_path), ("b", b_path)):
        rows = []
        for location, row, problem, _ in data.jsonl_lines(path):  # the project's JSONL reader (BOM, UTF-8, U+2028)
            if problem or not isinstance(row, dict):
                raise ValueError(f"{path} {location}: {problem or 'expected an object'}")
            for key in FIELDS:
                if not isinstance(row.get(key, "" if key in ("input", "reference") else None), str):
                    raise ValueError(f"{path} {location}: field {key!r} missing or not text")
            rows.append((location, row))
        sides[side] = rows
    if len(sides["a"]) != len(sides["b"]):
        short, long_ = sorted(("a", "b"), key=lambda s: len(sides[s]))
        location = sides[long_][len(sides[short])][0]
        raise ValueError(
            f"{b_path if long_ == 'b' else a_path} {location}: no answer to pair it with in the other "
            f"file ({len(sides['a'])} vs {len(sides['b'])} answers)"
        )
    pairs = []
    for (where_a, a), (where_b, b) in zip(sides["a"], sides["b"]):
        if a["instruction"] != b["instruction"] or a.get("input", "") != b.get("input", ""):
            raise ValueError(
                f"{a_path} {where_a} / {b_path} {where_b}: the instructions differ — "
                "the files must answer the same instructions in the same order"
            )
        pairs.append(
            {
                "instruction": a["instruction"],
                "input": a.get("input", ""),
                "reference": a.get("reference", ""),
                "a": a["output"],
                "b": b["output"],
            }
        )
    return pairs[:limit] if limit is not None else pairs


def _key(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:20]


def requests(pairs: list[dict], judge_model: str, pointwise: bool = True, with_reference: bool = True) -> list[dict]:
    """Every judge call: per pair, both orders (`ab`: A first; `ba`: B first) and, with `pointwise`, one score per
    answer. Ids hash the judge model and the exact messages sent: a changed prompt (template, system prompt, texts) is
    never a cache hit, and `judge` prunes the verdicts no request asks for any more."""
    out = []
    for index, pair in enumerate(pairs):
        for order, (first, second) in (("ab", ("a", "b")), ("ba", ("b", "a"))):
            out.append(
                {
                    "kind": "pair",
                    "index": index,
                    "order": order,
                    "first": pair[first],
                    "second": pair[second],
                    **_text(pair),
                }
            )
        if pointwise:
            reference = pair["reference"] if with_reference else ""
            for side in ("a", "b"):
                out.append(
                    {
                        "kind": "score",
                        "index": index,
                        "side": side,
                        "answer": pair[side],
                        "reference": reference,
                        **_text(pair),
                    }
                )
    for item in out:
        item["id"] = f"{item['kind']}-" + _key(PROMPT_VERSION, judge_model, json.dumps(messages_for(item)))
    return out


def _text(pair: dict) -> dict:
    return {"instruction": pair["instruction"], "input": pair["input"]}


def messages_for(item: dict) -> list[dict]:
    task = f"### Instrução:\n{item['instruction']}\n\n" + (
        f"### Entrada:\n{item['input']}\n\n" if item["input"].strip() else ""
    )
    if item["kind"] == "pair":
        return [
            {"role": "system", "content": PAIRWISE_SYSTEM},
            {"role": "user", "content": f"{task}### Resposta A:\n{item['first']}\n\n### Resposta B:\n{item['second']}"},
        ]
    reference = f"### Resposta de referência:\n{item['reference']}\n\n" if item["reference"].strip() else ""
    system = POINTWISE_SYSTEM.format(reference=" e uma resposta de referência para comparação" if reference else "")
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": f"{task}{reference}### Resposta do assistente:\n{item['answer']}"},
    ]


def parse_verdict(reply: str, item: dict) -> dict:
    """The verdict of a reply, or `ReplyError` (an invalid verdict) naming what is wrong. Extra keys are ignored."""
    obj = api.json_object(reply)
    reason = obj.get("reason", "")
    if not isinstance(reason, str):
        raise api.ReplyError(f"invalid verdict: reason is {type(reason).__name__}, not text")
    if item["kind"] == "pair":
        winner = obj.get("winner")
        if winner not in ("A", "B", "tie"):
            raise api.ReplyError(f"invalid verdict: winner {winner!r} (expected 'A', 'B' or 'tie')")
        return {"winner": winner, "reason": reason}
    score = obj.get("score")
    if isinstance(score, bool) or not isinstance(score, (int, float)) or score != int(score) or not 1 <= score <= 10:
        raise api.ReplyError(f"invalid verdict: score {score!r} (expected an integer from 1 to 10)")
    return {"score": int(score), "reason": reason}


# ---------------------------------------------------------------- the numbers


def length_controlled_win_rate(outcomes: list[tuple[float, float, int]], l2: float = 0.1) -> float | None:
    """AlpacaEval-2-style win rate of B at equal length: a logistic fit of each order's outcome (1 B won, 0.5 tie,
    0 A won) on tanh(length difference / its std) and the position (+1 B shown first, -1 A first), then the predicted
    win rate with both terms at zero. `outcomes`: (outcome, len(b) - len(a) in characters, position)."""
    from scipy.optimize import minimize

    if not outcomes:
        return None
    y = np.array([o for o, _, _ in outcomes], dtype=float)
    diff = np.array([d for _, d, _ in outcomes], dtype=float)
    scale = diff.std() or 1.0
    x = np.column_stack([np.ones_like(y), np.tanh(diff / scale), np.array([p for _, _, p in outcomes], dtype=float)])

    def loss(w):  # fractional labels: ties count half a win each way. A weak L2 on every weight keeps separable data
        # finite and pulls a handful of verdicts toward 0.5; with hundreds of pairs it changes nothing
        z = x @ w
        return float(np.sum(np.logaddexp(0, z) - y * z) + l2 * np.sum(w**2))

    weights = minimize(loss, np.zeros(3), method="L-BFGS-B").x
    return round(1 / (1 + math.exp(-weights[0])), 4)


def summarize(pairs: list[dict], items: list[dict], results: dict[str, dict], judge_model: str) -> tuple[dict, list]:
    """judge.json and the per-instruction verdicts from the cached results (missing ones count as invalid)."""
    from lib import evaluate

    by_index: dict[int, dict] = {}
    invalid = 0
    for item in items:
        record = results.get(item["id"])
        if record is None:
            invalid += 1
            continue
        slot = by_index.setdefault(item["index"], {})
        slot[item["order"] if item["kind"] == "pair" else f"score_{item['side']}"] = record["verdict"]
    rows, outcomes, values, firsts, consistent = [], [], [], [], []
    for index, pair in enumerate(pairs):
        got = by_index.get(index, {})
        row = {
            "index": index,
            "instruction": pair["instruction"],
            "len_a": len(pair["a"]),
            "len_b": len(pair["b"]),
            **{k: got.get(k) for k in ("ab", "ba", "score_a", "score_b")},
        }
        ab, ba = got.get("ab"), got.get("ba")
        # in answer terms: in order ab, A is answer a; in order ba, A is answer b
        per_order = {}
        if ab:
            per_order["ab"] = {"A": "a", "B": "b", "tie": "tie"}[ab["winner"]]
        if ba:
            per_order["ba"] = {"A": "b", "B": "a", "tie": "tie"}[ba["winner"]]
        for order, verdict in (("ab", ab), ("ba", ba)):
            if verdict:
                firsts.append(verdict["winner"] == "A")
                outcome = {"b": 1.0, "a": 0.0, "tie": 0.5}[per_order[order]]
                outcomes.append((outcome, len(pair["b"]) - len(pair["a"]), 1 if order == "ba" else -1))
        if len(per_order) == 2:
            same = per_order["ab"] == per_order["ba"]
            consistent.append(same)
            row["winner"] = per_order["ab"] if same else "tie"
            values.append({"b": 1.0, "a": 0.0, "tie": 0.5}[row["winner"]])
        rows.append(row)
    scores = {side: [r[f"score_{side}"]["score"] for r in rows if r.get(f"score_{side}")] for side in ("a", "b")}
    combined = [r.get("winner") for r in rows if r.get("winner")]
    summary = {
        "n": len(pairs),
        "judged": len(values),
        "judge_model": judge_model,
        "prompt_version": PROMPT_VERSION,
        "win_rate_b": round(float(np.mean(values)), 4) if values else None,
        "win_rate_b_ci": [round(x, 4) for x in evaluate.bootstrap_ci(values)] if len(values) > 1 else None,
        "wins_a": combined.count("a"),
        "wins_b": combined.count("b"),
        "ties": combined.count("tie"),
        "position_consistency": round(float(np.mean(consistent)), 4) if consistent else None,
        "first_position_preference": round(float(np.mean(firsts)), 4) if firsts else None,
        "length_controlled_win_rate_b": length_controlled_win_rate(outcomes),
        "mean_score_a": round(float(np.mean(scores["a"])), 3) if scores["a"] else None,
        "mean_score_b": round(float(np.mean(scores["b"])), 3) if scores["b"] else None,
        "score_distribution": {side: {str(s): scores[side].count(s) for s in range(1, 11)} for side in scores},
        "invalid_verdicts": invalid,
        "calls": len(items),
    }
    return summary, rows


# ---------------------------------------------------------------- running it


def make_backend(model: str, base_url: str | None = None, structured: bool = False, batch_size: int = 4):
    """A judge on a server (`base_url`, or OpenAI with `OPENAI_API_KEY`), or a `lib.models` preset run locally
    (`LocalJudge`: a mechanics check; a small base model is a poor and position-biased judge)."""
    from lib import models

    if base_url is None and model in models.PRESETS:
        return LocalJudge(model, batch_size=batch_size)
    return _SchemaBackend(model, base_url) if structured else api.OpenAIBackend(model, base_url=base_url)


class LocalJudge:
    """A local model as judge, for CPU runs. A small base model cannot write the JSON protocol, so its verdict is the
    continuation it finds most likely after the reply's opening — `A`, `B` or `tie` after `{"winner": "`, `1`…`10`
    after `{"score": ` — written back as the protocol's JSON (the reason says how it was chosen)."""

    PREFIX = {"pair": '{"winner": "', "score": '{"score": '}
    # with what closes them, so that "1" cannot win over "10" just by being a prefix of it
    CHOICES = {"pair": ['A"', 'B"', 'tie"'], "score": [f"{n}," for n in range(1, 11)]}

    def __init__(self, model: str = "embedded", batch_size: int = 4):
        from lib import inference

        self.net, self.tokenizer = inference.load_for_eval(model, quantize_4bit=True)
        self.batch_size = batch_size

    def complete_batch(self, batch: list[list[dict]]) -> list[str]:
        from lib import evaluate

        contexts, kinds = [], []
        for messages in batch:
            kind = "pair" if "### Resposta A:" in messages[-1]["content"] else "score"
            prompt = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            contexts.append(prompt + self.PREFIX[kind])
            kinds.append(kind)
        scored = evaluate.shared_prefix_logprobs(
            self.net,
            self.tokenizer,  # the long prompt encoded once
            [(c, self.CHOICES[k]) for c, k in zip(contexts, kinds)],
        )
        replies = []
        for kind, group in zip(kinds, scored):
            logprobs = [total for total, _ in group]
            best = self.CHOICES[kind][int(np.argmax(logprobs))].rstrip('",')
            reason = "the local model's most likely verdict (log-likelihood), not written text"
            replies.append(
                json.dumps(
                    {"winner": best, "reason": reason} if kind == "pair" else {"score": int(best), "reason": reason}
                )
            )
        return replies


class _SchemaBackend(api.OpenAIBackend):
    """Strict JSON-schema replies, per kind of request (servers that support OpenAI structured outputs)."""

    def complete(self, messages: list[dict]) -> str:
        kind = "pair" if "### Resposta A:" in messages[-1]["content"] else "score"
        self.response_format = {"type": "json_schema", "json_schema": SCHEMAS[kind]}
        return super().complete(messages)


def judge(
    pairs: list[dict],
    backend,
    output_dir: str | Path,
    judge_model: str,
    workers: int = 8,
    max_retries: int = 3,
    pointwise: bool = True,
    with_reference: bool = True,
    progress: bool = True,
    backoff_base: float = 1.0,
    retry_failed: bool = False,
) -> dict:
    """Judge every pair (both orders) and score every answer; resumable; writes judge.json and verdicts.jsonl."""
    output_dir = Path(output_dir)
    items = requests(pairs, judge_model, pointwise, with_reference)
    jobs = api.Jobs(
        backend,
        output_dir,
        messages_for,
        parse_verdict,
        result_key="verdict",
        workers=workers,
        max_retries=max_retries,
        backoff_base=backoff_base,
        progress=progress,
        desc="verdicts",
    )
    pruned = jobs.prune(item["id"] for item in items)  # verdicts of prompts or answers that have changed since
    stats = jobs.run(items, retry_failed=retry_failed)
    summary, rows = summarize(pairs, items, jobs.results(), judge_model)
    summary["this_run"] = {
        "requested": stats.done + stats.failed,
        "already_cached": stats.done_before,
        "stale_pruned": pruned,
        "seconds": round(stats.seconds, 2),
    }
    failures = jobs.failures()
    summary["invalid_reasons"] = sorted({r["last_reason"] for r in failures.values()})[:10]
    data.write_jsonl(rows, output_dir / "verdicts.jsonl")
    paths.write_json({k: v for k, v in summary.items() if k != "this_run"}, output_dir / "judge.json")
    return summary


def dry_run(pairs: list[dict], judge_model: str, pointwise: bool = True, with_reference: bool = True) -> dict:
    """How many calls a run makes and about how many prompt tokens they send (4 characters a token)."""
    items = requests(pairs, judge_model, pointwise, with_reference)
    chars = sum(len(m["content"]) for item in items for m in messages_for(item))
    return {
        "pairs": len(pairs),
        "calls": len(items),
        "pairwise_calls": sum(i["kind"] == "pair" for i in items),
        "pointwise_calls": sum(i["kind"] == "score" for i in items),
        "prompt_tokens_estimate": round(chars / 4),
        "judge_model": judge_model,
        "prompt_version": PROMPT_VERSION,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description="Judge two sets of answers with an LLM (pairwise, both orders, and "
        "pointwise), on any OpenAI-compatible server."
    )
    parser.add_argument("--a", required=True, help="answers A: notebook 07's outputs_base.jsonl (or any such file)")
    parser.add_argument("--b", required=True, help="answers B, same instructions in the same order")
    parser.add_argument("--base-url", help="the server, e.g. http://127.0.0.1:8000/v1; none: OpenAI (OPENAI_API_KEY)")
    parser.add_argument("--model", required=True, help="the judge model (served name, or a lib.models preset)")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--limit", type=int, help="first N pairs")
    parser.add_argument("--max-retries", type=int, default=3)
    parser.add_argument("--backoff-base", type=float, default=1.0)
    parser.add_argument("--no-pointwise", action="store_true", help="pairwise verdicts only")
    parser.add_argument("--no-reference", action="store_true", help="score answers without the reference answer")
    parser.add_argument("--structured", action="store_true", help="send strict JSON schemas (response_format)")
    parser.add_argument("--retry-failed", action="store_true", help="ask again only what the ledger holds")
    parser.add_argument("--dry-run", action="store_true", help="the number of calls and prompt tokens; no request")
    args = parser.parse_args(argv)
    pairs = load_pairs(paths.resolve_source(args.a), paths.resolve_source(args.b), args.limit)
    options = dict(pointwise=not args.no_pointwise, with_reference=not args.no_reference)
    if args.dry_run:
        plan = dry_run(pairs, args.model, **options)
        print(json.dumps(plan, indent=2))
        return plan
    backend = make_backend(args.model, args.base_url, structured=args.structured)
    summary = judge(
        pairs,
        backend,
        args.output_dir,
        args.model,
        workers=args.workers,
        max_retries=args.max_retries,
        backoff_base=args.backoff_base,
        retry_failed=args.retry_failed,
        **options,
    )
    print(
        json.dumps(
            {
                k: summary[k]
                for k in (
                    "n",
                    "win_rate_b",
                    "win_rate_b_ci",
                    "ties",
                    "position_consistency",
                    "first_position_preference",
                    "length_controlled_win_rate_b",
                    "mean_score_a",
                    "mean_score_b",
                    "invalid_verdicts",
                )
            },
            indent=2,
        )
    )
    return summary


if __name__ == "__main__":
    main()
