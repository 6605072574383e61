"""Benchmark: multiple-choice questions/s of `letters` vs the prior method vs `options` vs lm-eval, embedded model;
and `options` with the shared prompt encoded once vs scored pair by pair vs lm-eval's `options` (same predictions).

The prior method generated up to 256 tokens per question, one question at a time. The peer baseline is
lm-evaluation-harness scoring the same questions with our `cosmos_qa_ptbr_letters` task (configs/lm_eval: the same
prompt, the same " A".." D" tokens) through its HF backend wrapped around the same loaded model, in the same process.
Measured in one run on the same questions (the slow prior method on the first `--prior-subset` of them: questions/s
is a rate); prints the ratios (targets: letters >= 50x prior, >= 2x options, >= 2x lm-eval with equal accuracy) and
checks that `letters` accuracy is identical across batch sizes 1, 8 and 32. Questions: the first `--questions` of the
natural validation split (data/samples/cosmos_qa_ptbr), what notebook 06 scores. `--prior-subset 0` skips the prior
method. Writes results/<profile>/bench/eval_throughput.json.  Run: .venv/bin/python bench/eval_throughput.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lib import data as lib_data  # noqa: E402
from lib import evaluate, inference, lmeval, paths, prompts  # noqa: E402


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
    parser.add_argument(
        "--lm-eval-batch-size",
        type=int,
        default=4,
        help="lm-eval keeps full-vocabulary logits of every position: ~0.3 GB per question on Gemma",
    )
    parser.add_argument("--output", default=None, help="result file (default: results/<profile>/bench/...)")
    args = parser.parse_args()
    # the natural PT validation questions notebook 06 scores (stories of 50-120 words, options of similar length)
    questions, _ = lib_data.load(
        paths.SAMPLES / "cosmos_qa_ptbr", "cosmos_qa_pt", splits=["validation"], limit=args.questions
    )
    rows = list(questions["validation"])
    net, tokenizer = inference.load_for_eval(args.model, quantize_4bit=True)
    letters, t_letters = timed(lambda: evaluate.evaluate_mc(net, tokenizer, rows, "letters", batch_size=16))
    # `options` with the shared prompt encoded once (ours) vs every (prompt, option) pair scored whole (until now)
    options, t_options_shared = timed(lambda: evaluate.evaluate_mc(net, tokenizer, rows, "options", batch_size=16))
    pairs = [(prompts.render_cosmos(r, tokenizer)["prompt"], r[k]) for r in rows for k in lib_data.LETTERS]
    whole, t_options = timed(lambda: evaluate.continuation_logprobs(net, tokenizer, pairs, batch_size=16))
    pairwise_preds = [lib_data.LETTERS[max(range(4), key=lambda k: whole[4 * i + k][0])] for i in range(len(rows))]
    with tempfile.TemporaryDirectory() as tmp:  # lm-eval reads the same questions through our task's loader
        source = lib_data.write_jsonl(rows, Path(tmp) / "validation.jsonl")
        lm = lmeval.harness(net, tokenizer, args.lm_eval_batch_size)
        results, t_lm_eval = lmeval.run_lm_eval(lm, lmeval.build_task("letters", str(source), "validation"))
        results_options, t_lm_eval_options = lmeval.run_lm_eval(
            lm, lmeval.build_task("options", str(source), "validation")
        )
    lm_eval_preds = lmeval.lm_eval_predictions(results["samples"][lmeval.TASKS["letters"]])
    lm_eval_option_preds = lmeval.lm_eval_predictions(results_options["samples"][lmeval.TASKS["options"]])
    shared_preds = [p["pred"] for p in options]
    same_predictions_shared = shared_preds == pairwise_preds == [p["pred"] for p in lm_eval_option_preds]
    subset = rows[: args.prior_subset]
    t_prior = None
    if subset:
        _, t_prior = timed(
            lambda: evaluate.evaluate_mc(net, tokenizer, subset, "generate", batch_size=1, max_new_tokens=256)
        )
    rate = {
        "letters": len(rows) / t_letters,
        "options": len(rows) / t_options,
        "lm_eval_letters": len(rows) / t_lm_eval,
        "options_shared_prompt": len(rows) / t_options_shared,
        "lm_eval_options": len(rows) / t_lm_eval_options,
        "prior_generate_256": len(subset) / t_prior if t_prior else None,
    }
    invariance = {
        b: [p["pred"] for p in evaluate.evaluate_mc(net, tokenizer, rows, "letters", batch_size=b)] for b in (1, 8, 32)
    }
    accuracy = {b: sum(p == r["Label"] for p, r in zip(preds, rows)) / len(rows) for b, preds in invariance.items()}
    identical = len({tuple(p) for p in invariance.values()}) == 1
    ratio_prior = rate["letters"] / rate["prior_generate_256"] if t_prior else None
    ratio_options, ratio_lm_eval = rate["letters"] / rate["options"], rate["letters"] / rate["lm_eval_letters"]
    ratio_shared = rate["options_shared_prompt"] / rate["options"]
    ratio_shared_lm_eval = rate["options_shared_prompt"] / rate["lm_eval_options"]
    letters_accuracy = sum(p["correct"] for p in letters) / len(rows)
    lm_eval_accuracy = results["results"][lmeval.TASKS["letters"]]["acc,none"]
    same_predictions = [p["pred"] for p in letters] == [p["pred"] for p in lm_eval_preds]
    result = {
        "name": "eval_throughput",
        "ratio": round(ratio_prior, 1) if ratio_prior else None,
        "target": 50.0,
        "ratio_vs_options": round(ratio_options, 2),
        "target_vs_options": 2.0,
        "ratio_vs_lm_eval": round(ratio_lm_eval, 2),
        "target_vs_lm_eval": 2.0,
        "ratio_shared_vs_options": round(ratio_shared, 2),
        "target_shared_vs_options": 3.0,
        "ratio_shared_vs_lm_eval_options": round(ratio_shared_lm_eval, 2),
        "target_shared_vs_lm_eval_options": 4.0,
        "same_predictions_shared": same_predictions_shared,
        "same_predictions": same_predictions_shared and identical,
        "met": (
            (ratio_prior is None or ratio_prior >= 50)
            and ratio_options >= 2
            and identical
            and ratio_lm_eval >= 2
            and abs(lm_eval_accuracy - letters_accuracy) < 1e-9
            and ratio_shared >= 3
            and ratio_shared_lm_eval >= 4
            and same_predictions_shared
        ),
        "questions_per_s": {k: round(v, 3) if v else None for k, v in rate.items()},
        "questions": len(rows),
        "prior_subset": len(subset),
        "model": args.model,
        "load_in_4bit": True,
        "lm_eval": {
            "version": lmeval._version("lm_eval"),
            "task": lmeval.TASKS["letters"],
            "batch_size": args.lm_eval_batch_size,
            "seconds": round(t_lm_eval, 2),
            "same_predictions_as_letters": same_predictions,
        },
        "letters_accuracy_by_batch_size": accuracy,
        "letters_identical_across_batch_sizes": identical,
        "accuracy": {
            "letters": letters_accuracy,
            "options": sum(p["correct"] for p in options) / len(rows),
            "lm_eval_letters": lm_eval_accuracy,
        },
    }
    out = paths.write_json(result, args.output or paths.RESULTS / args.profile / "bench" / "eval_throughput.json")
    prior = (
        f"prior (256 tokens, one by one) {rate['prior_generate_256']:.3f} -> letters is {ratio_prior:.0f}x prior "
        f"(target 50x), "
        if ratio_prior
        else "prior skipped -> letters is "
    )
    print(
        f"questions/s letters {rate['letters']:.2f} | options {rate['options']:.2f} | lm-eval letters "
        f"{rate['lm_eval_letters']:.2f} | {prior}{ratio_options:.1f}x options (target 2x), {ratio_lm_eval:.1f}x "
        f"lm-eval (target 2x; accuracy {letters_accuracy:.4f} vs {lm_eval_accuracy:.4f}, same predictions "
        f"{same_predictions}); letters accuracy by batch size {accuracy} identical={identical}"
    )
    print(
        f"options, shared prompt {rate['options_shared_prompt']:.2f} q/s: {ratio_shared:.1f}x options scored pair by "
        f"pair (target 3x), {ratio_shared_lm_eval:.1f}x lm-eval options (target 4x); same predictions "
        f"{same_predictions_shared} -> {paths.relative(out)}"
    )


if __name__ == "__main__":
    main()
