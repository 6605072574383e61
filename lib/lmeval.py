"""lm-evaluation-harness interop: notebook 06's Cosmos QA PT scoring as lm-eval tasks, cross-checked against ours.

`configs/lm_eval/` defines two tasks that render exactly the prompt `lib.prompts.render_cosmos` renders (system prompt,
user message and the model's chat template; lm-eval must run with `--apply_chat_template`):
- `cosmos_qa_ptbr_letters`: after the assistant prefix `Alternativa`, the log-likelihood of " A" .. " D" — our
  `letters` mode (argmax of the softmax over the four letter logits is the argmax of their log-likelihoods);
- `cosmos_qa_ptbr_options`: the log-likelihood of each option's text — our `options` mode (`acc`; lm-eval's `acc_bytes`
  is our `acc_norm`, per UTF-8 byte; lm-eval's own `acc_norm` divides by characters).

`crosscheck` runs lm-eval (`simple_evaluate`, HF backend) and our scorer on the same questions with ONE loaded model
(lm-eval's `HFLM` accepts a model instance, PEFT adapter included), so precision and quantization cannot differ, and
writes `crosscheck.json` plus lm-eval's own results and per-sample files:

    .venv/bin/python -m lib.lmeval --model embedded --adapter results/smoke/05_qlora_cosmos_qa/adapter/final_adapter \
        --data data/samples/cosmos_qa_ptbr --split validation --mode letters --limit 32 --output-dir runs/lm_eval

The same tasks with the lm-eval CLI alone (an adapter through `peft=`), from the repository root:

    lm_eval --model hf --model_args pretrained=data/models/embedded,peft=ADAPTER_DIR,dtype=float32 --device cpu \
        --tasks cosmos_qa_ptbr_letters,cosmos_qa_ptbr_options --include_path configs/lm_eval --apply_chat_template \
        --metadata '{"data": "data/samples/cosmos_qa_ptbr", "split": "validation"}' --output_path runs/lm_eval

`--apply_chat_template` is required (without it lm-eval renders plain text, not our prompt). The CLI cannot load the
4-bit base with transformers 5 (`load_in_4bit=True` in `--model_args` is rejected by `from_pretrained`), so it scores
the adapter on the fp32 base; `python -m lib.lmeval` scores it on the 4-bit base it was trained on, as notebook 06 does.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from lib import data as lib_data
from lib import evaluate, inference, paths, prompts

CONFIGS = paths.ROOT / "configs" / "lm_eval"
TASKS = {"letters": "cosmos_qa_ptbr_letters", "options": "cosmos_qa_ptbr_options"}
DEFAULT_DATA = "heloisy/cosmos_qa_ptbr"
LETTERS = list(lib_data.LETTERS)


# ---------------------------------------------------------------- lm-eval side


def harness(model, tokenizer, batch_size: int = 4):
    """lm-eval's HF backend around an already loaded model (base or PeftModel): the very weights our scorer uses."""
    from lm_eval.models.huggingface import HFLM

    logging.getLogger("lm_eval").setLevel(logging.ERROR)  # its warnings about instance models are expected here
    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=str(inference.device(model)))


def build_task(mode: str, data: str = DEFAULT_DATA, split: str = "validation"):
    """The lm-eval Task object of `mode` on `data` [`split`], from the YAML in configs/lm_eval (TaskManager)."""
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._yaml_loader import load_yaml

    if mode not in TASKS:
        raise ValueError(f"mode must be one of {sorted(TASKS)}, got {mode!r}")
    name = TASKS[mode]
    manager = TaskManager(
        include_path=str(CONFIGS), include_defaults=False, metadata={"data": str(data), "split": split}
    )
    config = load_yaml(CONFIGS / f"{name}.yaml", resolve_func=True)
    config["test_split"] = split  # the YAML says "validation"; the split is a parameter here
    return manager.load(config)["tasks"][name]


def run_lm_eval(
    lm, task, limit: int | None = None, output_dir: str | Path | None = None, model_name: str = "model"
) -> tuple[dict, float]:
    """`simple_evaluate` on one task, chat template applied, samples logged: (results, seconds).

    With `output_dir`, lm-eval's own results file (`lm_eval_results_<date>.json`) and per-sample file are written
    there by its EvaluationTracker, as the `lm_eval` CLI writes them."""
    import copy

    from lm_eval import simple_evaluate
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager

    tracker = None
    if output_dir is not None:
        out = Path(output_dir)
        for old in [*out.glob("lm_eval_results_*.json"), *out.glob(f"samples_{task.task_name}_*.jsonl")]:
            old.unlink()  # one run per folder: files are date-stamped by lm-eval
        tracker = EvaluationTracker(output_path=str(out / "lm_eval_results.json"))
    start = time.perf_counter()
    results = simple_evaluate(
        model=lm,
        tasks=[task],
        limit=limit,
        apply_chat_template=True,
        log_samples=True,
        bootstrap_iters=0,
        evaluation_tracker=tracker,
        verbosity="ERROR",
        model_args={"pretrained": model_name},
        # the task is built already; a default TaskManager would index every bundled task
        task_manager=TaskManager(include_path=str(CONFIGS), include_defaults=False),
    )
    seconds = time.perf_counter() - start
    if tracker is not None:
        samples = copy.deepcopy(results["samples"])  # the tracker sanitizes samples in place
        tracker.save_results_aggregated(results={k: v for k, v in results.items() if k != "samples"}, samples=samples)
        for name, task_samples in samples.items():
            tracker.save_results_samples(task_name=name, samples=task_samples)
    return results, seconds


def lm_eval_predictions(samples: list[dict]) -> list[dict]:
    """Per question, in document order: lm-eval's log-likelihoods of the four choices and its argmax letters."""
    out = []
    for sample in sorted(samples, key=lambda s: s["doc_id"]):
        lls = np.array([float(r[0]) for r in sample["filtered_resps"]])
        choices = [cont for _, cont in sample["arguments"]]
        chars = np.array([len(c) for c in choices], dtype=float)
        utf8 = np.array([len(c.encode("utf-8")) for c in choices], dtype=float)
        out.append(
            {
                "id": sample["doc"]["id"],
                "gold": LETTERS[sample["target"]],
                "logprobs": lls.tolist(),
                "pred": LETTERS[int(np.argmax(lls))],
                "pred_norm": LETTERS[int(np.argmax(lls / chars))],
                "pred_bytes": LETTERS[int(np.argmax(lls / utf8))],
                "arguments": sample["arguments"],
            }
        )
    return out


def requests(lm, task, limit: int | None = None) -> list[dict]:
    """lm-eval's requests for `task` as `simple_evaluate` builds them (chat template applied), without running the
    model: per question, in document order, `{"id", "arguments": [(context, continuation) x 4]}`."""
    task.build_all_requests(
        limit=limit,
        apply_chat_template=True,
        fewshot_as_multiturn=True,
        chat_template=lm.apply_chat_template,
        tokenizer_name=lm.tokenizer_name,
    )
    by_doc: dict[int, dict] = {}
    for instance in sorted(task.instances, key=lambda i: (i.doc_id, i.idx)):
        entry = by_doc.setdefault(instance.doc_id, {"id": instance.doc["id"], "arguments": []})
        entry["arguments"].append(instance.arguments)
    return [by_doc[k] for k in sorted(by_doc)]


# ---------------------------------------------------------------- are the two scoring the same thing?


def compare_inputs(lm, tokenizer, rows: list[dict], lm_preds: list[dict], mode: str) -> dict:
    """What lm-eval fed the model vs what our scorer feeds it, per question and choice: the rendered text
    (context + continuation) and its token ids, and which tokens each side scores."""
    text_mismatch, ids_mismatch, scored_mismatch, extra_scored = [], [], [], set()
    for row, pred in zip(rows, lm_preds):
        prompt = prompts.render_cosmos(row, tokenizer)["prompt"]
        if mode == "letters":
            prefix, letter_ids = evaluate.letter_tokens(tokenizer, prompt)
        for letter, (context, continuation) in zip(LETTERS, pred["arguments"]):
            ours = prompt + (prompts.ANSWER_PREFIX + letter if mode == "letters" else row[letter])
            if context + continuation != ours:
                text_mismatch.append(f"{row['id']}/{letter}")
                continue
            context_ids, continuation_ids = lm._encode_pair(context, continuation)
            our_ids = inference.encode(tokenizer, ours)
            if context_ids + continuation_ids != our_ids:
                ids_mismatch.append(f"{row['id']}/{letter}")
                continue
            if mode == "letters":
                if continuation_ids != [letter_ids[LETTERS.index(letter)]] or context_ids != prefix:
                    scored_mismatch.append(f"{row['id']}/{letter}")
            else:  # ours scores the tokens after the prompt's own tokens (evaluate.continuation_logprobs)
                prompt_ids = inference.encode(tokenizer, prompt)
                begin = next((k for k, (a, b) in enumerate(zip(prompt_ids, our_ids)) if a != b), len(prompt_ids))
                ours_scored, theirs_scored = our_ids[begin:], continuation_ids
                if theirs_scored[len(theirs_scored) - len(ours_scored) :] != ours_scored:
                    scored_mismatch.append(f"{row['id']}/{letter}")
                elif len(theirs_scored) > len(ours_scored):
                    extra_scored.add(tokenizer.decode(theirs_scored[: len(theirs_scored) - len(ours_scored)]))
    return {
        "prompts_identical": not text_mismatch,
        "token_ids_identical": not ids_mismatch,
        "scored_tokens_identical": not scored_mismatch and not extra_scored,
        "text_mismatches": text_mismatch[:10],
        "token_id_mismatches": ids_mismatch[:10],
        "scored_token_mismatches": scored_mismatch[:10],
        # lm-eval moves the context's trailing whitespace into the continuation (`_encode_pair`), so in
        # `options` mode it also scores the chat template's newline after the model turn: the same term for all
        # four options (acc unchanged), but it shifts length-normalised scores.
        "lm_eval_also_scores": sorted(extra_scored),
    }


def logprob_gap(ours: list[dict], theirs: list[dict], mode: str) -> float:
    """Largest |difference| between the two sides' scores of the same choice, on a common footing.

    `letters`: ours is a softmax over the four letter logits, lm-eval's a log-likelihood over the whole vocabulary;
    renormalising lm-eval's over the four letters gives ours. `options`: lm-eval's log-likelihood also counts the
    newline that ends the chat template (see `compare_inputs`), the same term for the four options; it is removed as
    the per-question mean difference."""
    gaps = []
    for o, t in zip(ours, theirs):
        lls = np.array(t["logprobs"])
        if mode == "letters":
            mine = np.log([o["probs"][k] for k in LETTERS])
            diff = (lls - np.logaddexp.reduce(lls)) - mine
        else:
            diff = lls - np.array([o["logprobs"][k] for k in LETTERS])
            diff = diff - diff.mean()
        gaps.append(float(np.max(np.abs(diff))))
    return round(max(gaps), 6) if gaps else 0.0


# ---------------------------------------------------------------- the cross-check


def crosscheck(
    net,
    tokenizer,
    data: str = DEFAULT_DATA,
    split: str = "validation",
    mode: str = "letters",
    limit: int | None = None,
    output_dir: str | Path | None = None,
    batch_size: int = 16,
    lm_eval_batch_size: int = 4,
    model: str = "model",
    adapter: str | None = None,
) -> dict:
    """lm-eval and `lib.evaluate` on the same questions with the same loaded model; writes crosscheck.json."""
    source = paths.resolve_source(str(data))
    loaded, _ = lib_data.load(source, "cosmos_qa_pt", splits=[split], default_split=split, labels_required=True)
    rows = list(loaded[split])[:limit]
    task = build_task(mode, source, split)
    lm = harness(net, tokenizer, lm_eval_batch_size)
    out = None if output_dir is None else paths.output_dir(output_dir)
    results, lm_seconds = run_lm_eval(lm, task, limit, out, model_name=model)
    theirs = lm_eval_predictions(results["samples"][TASKS[mode]])
    start = time.perf_counter()
    ours = evaluate.evaluate_mc(net, tokenizer, rows, mode, batch_size)
    project_seconds = time.perf_counter() - start
    if [p["id"] for p in theirs] != [r["id"] for r in rows]:
        raise RuntimeError("lm-eval and lib.evaluate did not score the same questions in the same order")
    metrics = results["results"][TASKS[mode]]
    n = len(rows)

    def mean(values):
        return round(float(np.mean(values)), 4) if values else None

    report = {
        "n": n,
        "mode": mode,
        "task": TASKS[mode],
        "model": model,
        "adapter": adapter,
        "data": str(data),
        "split": split,
        "limit": limit,
        "load_in_4bit": bool(getattr(net, "is_loaded_in_4bit", False)),
        "lm_eval_accuracy": metrics.get("acc,none"),
        "project_accuracy": mean([p["correct"] for p in ours]),
        "lm_eval_acc_norm": metrics.get("acc_norm,none"),  # lm-eval: per character
        "project_acc_norm": mean([p["pred_norm"] == p["gold"] for p in ours]) if mode == "options" else None,
        "lm_eval_acc_bytes": metrics.get("acc_bytes,none"),  # lm-eval: per UTF-8 byte, our acc_norm's definition
        "lm_eval_seconds": round(lm_seconds, 2),
        "project_seconds": round(project_seconds, 2),
        "questions_per_s": {"lm_eval": round(n / lm_seconds, 3), "project": round(n / project_seconds, 3)},
        "prediction_disagreements": [o["id"] for o, t in zip(ours, theirs) if o["pred"] != t["pred"]],
        "lm_eval_version": _version("lm_eval"),
        **compare_inputs(lm, tokenizer, rows, theirs, mode),
    }
    report["max_abs_logprob_diff"] = logprob_gap(ours, theirs, mode)
    if mode == "options":
        report["acc_norm_disagreements"] = [o["id"] for o, t in zip(ours, theirs) if o["pred_norm"] != t["pred_bytes"]]
    if out is not None:
        files = sorted(out.glob("lm_eval_results_*.json"))
        report["lm_eval_results_file"] = paths.portable(files[-1]) if files else None
        paths.write_json(report, out / "crosscheck.json")
    return report


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description="Cross-check lib.evaluate against lm-evaluation-harness on "
        "Cosmos QA PT (one loaded model serves both)."
    )
    parser.add_argument("--model", default="embedded", help="preset, Hub id or local folder")
    parser.add_argument("--adapter", default=None, help="PEFT adapter folder (e.g. .../final_adapter)")
    parser.add_argument("--data", default=DEFAULT_DATA, help="Hub id, or a local file / folder lib.data accepts")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--mode", choices=sorted(TASKS), default="letters")
    parser.add_argument("--limit", type=int, default=None, help="first N questions")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--batch-size", type=int, default=16, help="our scorer's batch size")
    parser.add_argument(
        "--lm-eval-batch-size",
        type=int,
        default=4,
        help="lm-eval's batch size (it keeps the full-vocabulary logits of every position)",
    )
    parser.add_argument(
        "--no-4bit",
        dest="load_in_4bit",
        action="store_false",
        help="score the unquantized model (default: the 4-bit NF4 base QLoRA trains on, as in 06)",
    )
    args = parser.parse_args(argv)
    net, tokenizer = inference.load_for_eval(args.model, args.adapter, quantize_4bit=args.load_in_4bit)
    output_dir = Path(args.output_dir).resolve()  # relative to where the command runs, like lib.train
    report = crosscheck(
        net,
        tokenizer,
        args.data,
        args.split,
        args.mode,
        args.limit,
        output_dir,
        args.batch_size,
        args.lm_eval_batch_size,
        args.model,
        args.adapter,
    )
    print(json.dumps({k: v for k, v in report.items() if not k.endswith("mismatches")}, indent=1, ensure_ascii=False))
    return report


if __name__ == "__main__":
    main()
