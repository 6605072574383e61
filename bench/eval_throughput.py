"""Benchmark: multiple-choice questions/s of `letters` vs the prior method vs `options`, on the embedded model.

The prior method generated up to 256 tokens per question, one question at a time. Measured in one run on the same
questions (the slow prior method on the first `--prior-subset` of them: questions/s is a rate); prints the ratios
(targets: letters >= 50x prior, >= 2x options) and checks that `letters` accuracy is identical across batch sizes
1, 8 and 32. Writes results/<profile>/bench/eval_throughput.json.  Run: .venv/bin/python bench/eval_throughput.py
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lib import evaluate, paths, synthetic  # noqa: E402


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--prior-subset", type=int, default=8, help="questions for the slow prior method")
    parser.add_argument("--model", default="embedded")
    args = parser.parse_args()
    rows = list(synthetic.generate()["validation"].select(range(args.questions)))
    net, tokenizer = evaluate.load_for_eval(args.model, quantize_4bit=True)
    letters, t_letters = timed(lambda: evaluate.evaluate_mc(net, tokenizer, rows, "letters", batch_size=16))
    options, t_options = timed(lambda: evaluate.evaluate_mc(net, tokenizer, rows, "options", batch_size=16))
    subset = rows[:args.prior_subset]
    _, t_prior = timed(lambda: evaluate.evaluate_mc(net, tokenizer, subset, "generate", batch_size=1,
                                                    max_new_tokens=256))
    rate = {"letters": len(rows) / t_letters, "options": len(rows) / t_options, "prior_generate_256": len(subset) / t_prior}
    invariance = {b: [p["pred"] for p in evaluate.evaluate_mc(net, tokenizer, rows, "letters", batch_size=b)]
                  for b in (1, 8, 32)}
    accuracy = {b: sum(p == r["Label"] for p, r in zip(preds, rows)) / len(rows) for b, preds in invariance.items()}
    identical = len({tuple(p) for p in invariance.values()}) == 1
    ratio_prior, ratio_options = rate["letters"] / rate["prior_generate_256"], rate["letters"] / rate["options"]
    result = {"name": "eval_throughput", "ratio": round(ratio_prior, 1), "target": 50.0,
              "ratio_vs_options": round(ratio_options, 2), "target_vs_options": 2.0,
              "met": ratio_prior >= 50 and ratio_options >= 2 and identical,
              "questions_per_s": {k: round(v, 3) for k, v in rate.items()}, "questions": len(rows),
              "prior_subset": len(subset), "model": args.model, "load_in_4bit": True,
              "letters_accuracy_by_batch_size": accuracy, "letters_identical_across_batch_sizes": identical,
              "accuracy": {"letters": sum(p["correct"] for p in letters) / len(rows),
                           "options": sum(p["correct"] for p in options) / len(rows)}}
    out = paths.write_json(result, paths.RESULTS / args.profile / "bench" / "eval_throughput.json")
    print(f"questions/s letters {rate['letters']:.2f} | options {rate['options']:.2f} | prior (256 tokens, one by one) "
          f"{rate['prior_generate_256']:.3f} -> letters is {ratio_prior:.0f}x prior (target 50x), {ratio_options:.1f}x "
          f"options (target 2x); letters accuracy by batch size {accuracy} identical={identical} -> "
          f"{out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
