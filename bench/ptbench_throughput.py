"""Benchmark: items/s of `lib.ptbench`'s generation (each task's instruction + few-shot prefix encoded once, items
batched after it) vs lm-evaluation-harness's own `generate_until` (HF backend, around the same loaded model, in the
same process) on the same prompts and items of the nine leaderboard tasks; both stop at the protocol's blank line
(and EOS) with the same maximum of new tokens, and the answers are read by the same rules. Prints the ratio (target
>= 5) and whether every extracted answer is the same. Items: every shipped item of each task (data/samples/pt_benchmarks),
what notebook 09 scores, or the first `--items-per-task`. Writes results/<profile>/bench/ptbench_throughput.json.
Run: .venv/bin/python bench/ptbench_throughput.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lib import inference, lmeval, paths, ptbench, ptbench_tasks  # noqa: E402


def ours(net, tokenizer, prompts: dict, caps: dict, batch_size: int) -> dict:
    out = {}
    for task, texts in prompts.items():
        seqs = [tokenizer(t)["input_ids"] for t in texts]
        n = inference.shared_prefix(seqs)
        got = inference.generate_after_prefix(
            net, tokenizer, seqs[0][:n], [s[n:] for s in seqs], caps[task], (ptbench_tasks.STOP,), batch_size
        )
        out[task] = [g["text"] for g in got]
    return out


def lm_eval_side(net, tokenizer, prompts: dict, caps: dict, batch_size: int) -> dict:
    from lm_eval.api.instance import Instance

    lm = lmeval.harness(net, tokenizer, batch_size=batch_size)
    out = {}
    for task, texts in prompts.items():
        kwargs = {"until": [ptbench_tasks.STOP], "max_gen_toks": caps[task], "do_sample": False}
        requests = [Instance("generate_until", {}, (t, dict(kwargs)), idx) for idx, t in enumerate(texts)]
        out[task] = lm.generate_until(requests, disable_tqdm=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--items-per-task", type=int, default=None, help="default: every shipped item (15-23)")
    parser.add_argument("--batch-size", type=int, default=16, help="ours")
    parser.add_argument("--lm-eval-batch-size", type=int, default=1, help="lm-eval's default")
    parser.add_argument("--max-new-tokens", type=int, default=ptbench.DEFAULT_MAX_NEW_TOKENS)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    # fp32: a padded row computes exactly what it computes alone, so both sides must give the same tokens
    net, tokenizer = inference.load_for_eval(args.model, quantize_4bit=False)
    prompts, caps, datas = {}, {}, {}
    for name in ptbench_tasks.TASKS:
        datas[name] = ptbench.load_task(name, ptbench.SAMPLES, args.items_per_task)
        prompts[name] = [ptbench.render(datas[name], doc) for doc in datas[name].items]
        caps[name] = min(args.max_new_tokens, datas[name].task.max_new_tokens or args.max_new_tokens)
    n_items = sum(len(p) for p in prompts.values())
    start = time.perf_counter()
    mine = ours(net, tokenizer, prompts, caps, args.batch_size)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    theirs = lm_eval_side(net, tokenizer, prompts, caps, args.lm_eval_batch_size)
    t_lm_eval = time.perf_counter() - start
    differ = [
        {"task": t, "item": k, "ours": a, "lm_eval": b}
        for t in prompts
        for k, (a, b) in enumerate(zip(mine[t], theirs[t]))
        if datas[t].task.read(a) != datas[t].task.read(b)
    ]
    prompt_tokens = sum(len(tokenizer(p)["input_ids"]) for texts in prompts.values() for p in texts)
    result = {
        "benchmark": "ptbench_throughput",
        "what": "nine leaderboard tasks, shipped items, embedded model (fp32, one loaded model, same process): "
        "shared few-shot prefix + batched items (ours) vs lm-eval 0.4.13 generate_until (HF backend, default batch)",
        "model": args.model,
        "items": n_items,
        "items_per_task": args.items_per_task,
        "prompt_tokens": prompt_tokens,
        "max_new_tokens": caps,
        "batch_size_ours": args.batch_size,
        "batch_size_lm_eval": args.lm_eval_batch_size,
        "seconds_ours": round(t_ours, 2),
        "seconds_lm_eval": round(t_lm_eval, 2),
        "items_per_s_ours": round(n_items / t_ours, 3),
        "items_per_s_lm_eval": round(n_items / t_lm_eval, 3),
        "ratio_vs_lm_eval": round(t_lm_eval / t_ours, 2),
        "ratio": round(t_lm_eval / t_ours, 2),
        "target": 5.0,
        "same_answers": not differ,
        "met": t_lm_eval / t_ours >= 5.0 and not differ,
        "differing_answers": differ,
        "machine": paths.machine(),
    }
    out = Path(args.output) if args.output else paths.RESULTS / args.profile / "bench" / "ptbench_throughput.json"
    paths.write_json(result, out)
    print(
        f"{n_items} items: ours {result['items_per_s_ours']} items/s, lm-eval {result['items_per_s_lm_eval']} "
        f"items/s -> {result['ratio_vs_lm_eval']}x (target 5x); same answers: {result['same_answers']}"
    )
    print(f"written to {paths.relative(out)}")


if __name__ == "__main__":
    main()
