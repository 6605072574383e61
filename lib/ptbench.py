"""Standard Portuguese benchmarks for any model or adapter (notebook 09): the Open PT LLM Leaderboard's nine tasks by
its protocol (`lib.ptbench_tasks`), plus upstream lm-eval Portuguese tasks by name, in one table.

    python -m lib.ptbench --model embedded --adapter results/smoke/05_qlora_cosmos_qa/adapter/final_adapter \\
        --data-dir data/samples/pt_benchmarks --output-dir runs/ptbench
    python -m lib.ptbench --base-url http://127.0.0.1:8000/v1 --served-model my-model --tasks assin2_rte

Each `--adapter` is scored next to the base model without it (one loaded base; the adapter switched off for the
base). Every item of a task shares the instruction and the few-shot examples: their KV cache is computed once per
model and the items follow in batches (`lib.inference.generate_after_prefix`). Every answer is appended to
`cache.jsonl` under a key of model, adapter (by content), task, prompt and generation length, so a killed run resumes
without scoring an item twice.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from lib import api, paths
from lib.ptbench_tasks import STOP, TASKS, BenchDataError, TaskData

# Upstream lm-eval (0.4.13) Portuguese tasks scored through its own harness: these by bare name, any other with the
# prefix `lm_eval:` (e.g. `lm_eval:assin2_rte`, upstream's log-likelihood task of that name).
UPSTREAM = ("belebele_por_Latn", "global_mmlu_pt", "arc_pt", "hellaswag_pt", "truthfulqa_pt_mc1", "truthfulqa_pt_mc2")
DEFAULT_MAX_NEW_TOKENS = 32  # the leaderboard's older runs; its task caps (OAB: 32) apply too
SAMPLES = paths.SAMPLES / "pt_benchmarks"


class UnknownTaskError(ValueError):
    pass


def resolve_tasks(spec: str | list[str]) -> list[str]:
    """`all` = the nine leaderboard tasks; otherwise names separated by commas, each known or `lm_eval:NAME`."""
    names = spec if isinstance(spec, list) else [n.strip() for n in str(spec).split(",") if n.strip()]
    out = []
    for name in names:
        if name == "all":
            out += list(TASKS)
        elif name in TASKS or name in UPSTREAM or (name.startswith("lm_eval:") and len(name) > 8):
            out.append(name)
        else:
            raise UnknownTaskError(
                f"unknown task {name!r}. Leaderboard tasks: {', '.join(TASKS)}; upstream lm-eval tasks: "
                f"{', '.join(UPSTREAM)}, or any lm-eval task as lm_eval:NAME; or 'all'"
            )
    if not out:
        raise UnknownTaskError("no task given")
    return list(dict.fromkeys(out))


# ---------------------------------------------------------------- data


def load_task(task_name: str, data_dir: str | Path | None, limit: int | None = None) -> TaskData:
    """A task's shots and items from `<data_dir>/<task>/<split>.jsonl`, or from the Hub when `data_dir` is None;
    `limit` keeps the first N items."""
    from lib import ptbench_tasks

    task = TASKS[task_name]
    if data_dir is not None:  # a repo-relative folder works from any working directory
        data = ptbench_tasks.load_local(task, paths.resolve_source(str(data_dir)))
    else:
        import datasets

        rows = {
            split: ptbench_tasks.check_rows(
                task, list(datasets.load_dataset(task.hub, task.config, split=split)), f"{task.hub} {split}"
            )
            for split in dict.fromkeys([task.fewshot_split, task.split])
        }
        data = ptbench_tasks.select(task, rows[task.fewshot_split], rows[task.split], task.hub)
    if limit is not None:
        data.items, data.item_ids = data.items[:limit], data.item_ids[:limit]
    return data


def check_hub_reachable(task_names: list[str], data_dir) -> None:
    """A Hub dataset while offline: one clear error before any model loads."""
    hub = [t for t in task_names if t not in TASKS or data_dir is None]
    if not hub:
        return
    from lib.models import hub_unreachable_reason

    if reason := hub_unreachable_reason():
        raise BenchDataError(
            f"task(s) {', '.join(hub)} read Hub datasets and the Hub cannot be reached ({reason}). Offline, score "
            f"the leaderboard tasks on local data: --data-dir {paths.relative(SAMPLES)} (the shipped items) or any "
            "folder of <task>/<split>.jsonl files"
        )


# ---------------------------------------------------------------- models and adapters


@dataclass
class Scored:
    """One column of the results: the base model, or the base with one adapter on."""

    label: str
    adapter: str | None = None
    fingerprint: str = ""  # the adapter's content, so a retrained adapter is never answered from the cache


def parse_adapter(spec: str) -> tuple[str, str]:
    """`LABEL=DIR` or `DIR` (label: the nearest folder name that is not `final_adapter` or `adapter`, e.g.
    `04_qlora_canarim` for results/smoke/04_qlora_canarim/adapter/final_adapter)."""
    label, sep, folder = spec.partition("=")
    if not sep or not label or "/" in label:
        folder = spec
        named = [p for p in Path(spec).parts if p not in ("final_adapter", "adapter", "/")]
        label = named[-1] if named else "adapter"
    return label, paths.resolve_source(folder)


def check_adapter(folder: str, model: str) -> str:
    """The adapter's content fingerprint; a clear error when it is not a PEFT adapter of `model`."""
    from lib import models

    config_path = Path(folder) / "adapter_config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"adapter {folder!r}: no adapter_config.json there (pass the folder training saved)")
    base = json.loads(config_path.read_text(encoding="utf-8")).get("base_model_name_or_path") or ""
    preset = models.PRESETS.get(model)
    accepted = {model, models.portable_name(model), Path(model).name, *((preset.name, preset.hub_id) if preset else ())}
    if base not in accepted and Path(base).name not in accepted:
        raise ValueError(
            f"adapter {folder!r} was trained on {base!r}, not on --model {model!r}: its LoRA weights only mean "
            f"something on that base. Score it with --model {base}"
        )
    digest = hashlib.sha256()
    for file in sorted(Path(folder).glob("adapter_model.*")) + [config_path]:
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def load_scored(model: str, adapters: list[tuple[str, str, str]], quantize_4bit: bool):
    """(model, tokenizer, columns): one loaded base; every adapter (label, folder, fingerprint from `check_adapter`)
    loaded beside the others under its label."""
    from lib import inference

    net, tokenizer = inference.load_for_eval(model, adapters[0][1] if adapters else None, quantize_4bit)
    columns = [Scored(models_label(model))]
    for k, (label, folder, fingerprint) in enumerate(adapters):
        if k:  # PeftModel.from_pretrained named the first one "default"
            net.load_adapter(folder, adapter_name=label)
        columns.append(Scored(label, folder, fingerprint))
    return net.eval(), tokenizer, columns


def models_label(model: str) -> str:
    return Path(model).name if Path(model).expanduser().is_dir() else model


def own_chat_template(model: str) -> bool:
    """The leaderboard applied a model's chat template when its tokenizer shipped one; the template `lib.models`
    attaches to a base model that ships none (the embedded Gemma base: TRL's) is not the model's own."""
    from lib import models

    preset = models.PRESETS.get(model)
    return not (preset is not None and preset.chat_template)


def _use(net, column: Scored, first_adapter: str | None):
    """A context with `column`'s adapter on (or every adapter off for the base)."""
    import contextlib

    if column.adapter is None:
        return net.disable_adapter() if hasattr(net, "disable_adapter") else contextlib.nullcontext()
    net.set_adapter("default" if column.adapter == first_adapter else column.label)
    return contextlib.nullcontext()


# ---------------------------------------------------------------- prompts and cache keys


def render(data: TaskData, doc: dict, tokenizer=None, chat: str | None = None) -> str | list[dict]:
    """The item's prompt as the leaderboard sent it: plain text, or (with a chat type) the conversation rendered by
    the tokenizer's template; `tokenizer=None` and a chat type returns the messages (for a chat server)."""
    from lib import ptbench_tasks

    shots = ptbench_tasks.shot_pairs(data, doc)
    if chat is None:
        return ptbench_tasks.render_plain(data.task, shots, doc)
    messages = ptbench_tasks.chat_messages(data.task, shots, doc, chat)
    if tokenizer is None:
        return messages
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prompt_hash(prompt) -> str:
    text = prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def cache_key(model_id: str, column: Scored, task: str, phash: str, max_new_tokens: int) -> str:
    raw = json.dumps([model_id, column.adapter and column.fingerprint, task, phash, max_new_tokens])
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


# ---------------------------------------------------------------- generation


def generate_local(
    net,
    tokenizer,
    task: str,
    prompts: list[str],
    keys: list[str],
    cache,
    max_new_tokens,
    batch_size,
    plain: bool,
    groups: list[list[int]],
) -> None:
    """Answer the items whose key is not in `cache` (a `lib.api.JsonlLog`); each group (items with the same shots)
    has its common token prefix encoded once. Every answer is appended (fsynced) as soon as it is finished."""
    from lib import inference

    done = {r["id"] for r in cache.read()}
    for group in groups:
        todo = [k for k in group if keys[k] not in done]
        if not todo:
            continue
        seqs = [tokenizer(prompts[k], add_special_tokens=plain)["input_ids"] for k in todo]
        n = inference.shared_prefix(seqs)

        def record(j, result, todo=todo, seqs=seqs):
            cache.append({"id": keys[todo[j]], "task": task, "prompt_tokens": len(seqs[j]), **result})

        inference.generate_after_prefix(
            net, tokenizer, seqs[0][:n], [s[n:] for s in seqs], max_new_tokens, (STOP,), batch_size, on_done=record
        )


class _Served:
    """A model behind an OpenAI-compatible server, through `lib.api` (retries, backoff, cache, ledger)."""

    def __init__(self, base_url: str, served_model: str):
        self.backend = api.OpenAIBackend(served_model, base_url=base_url)

    def complete(self, request: dict) -> str:
        params = {"max_tokens": request["max_tokens"], "stop": [STOP]}
        if "messages" in request:
            return self.backend.complete(request["messages"], **params)
        return self.backend.complete_text(request["prompt"], **params)


def generate_served(server: _Served, requests: dict[str, dict], output_dir: Path, workers: int) -> dict[str, dict]:
    """key -> {"text"} for every request; one that still fails after the retries is answered "" (scored invalid)
    with `failed` set, and is not sent again by a rerun (its reason is in `requests/ledger.jsonl`)."""
    jobs = api.Jobs(
        server, output_dir / "requests", lambda item: requests[item["id"]], lambda reply, item: {"text": reply},
        workers=workers, desc="items", progress=False,
    )  # fmt: skip
    jobs.run([{"id": key} for key in requests])
    done, failed = jobs.results(), jobs.failures()
    return {
        key: done[key]["result"] if key in done else {"text": "", "failed": failed.get(key, {}).get("last_reason", "")}
        for key in requests
    }


# ---------------------------------------------------------------- scoring


def score_task(data: TaskData, label: str, answers: list[dict], phashes: list[str]) -> tuple[dict, list[dict]]:
    """The task's metric (percent), its 95 % CI, n and invalid answers for one column, and per-item predictions."""
    from lib import ptbench_tasks

    task, rows, golds, preds = data.task, [], [], []
    for doc, item_id, answer, phash in zip(data.items, data.item_ids, answers, phashes):
        pred, readable = task.read(answer.get("text", ""))
        gold = task.gold(doc)
        golds.append(gold)
        preds.append(pred)
        rows.append({
            "task": task.name, "model": label, "id": item_id, "prompt_hash": phash, "generation": answer.get("text"),
            "answer": pred, "readable": readable, "gold": gold,
            "correct": bool(pred == gold) if task.rule != "number" else None,
            **({"request_failed": answer["failed"]} if answer.get("failed") is not None else {}),
        })  # fmt: skip
    result = {
        "metric": task.metric,
        "value": round(ptbench_tasks.metric_value(task, golds, preds), 2),
        "ci95": ptbench_tasks.bootstrap_ci(task, golds, preds),
        "n": len(rows),
        "invalid": sum(not r["readable"] for r in rows),
        "invalid_rate": round(sum(not r["readable"] for r in rows) / len(rows), 4),
        "baseline": task.baseline,
    }
    return result, rows


def paired_test(task_name: str, base: list[dict], tuned: list[dict]) -> dict:
    """Base vs adapter on the same items: exact McNemar on right/wrong; STS: Wilcoxon signed-rank on |error|."""
    from lib import evaluate

    if TASKS[task_name].rule != "number":
        return {
            "test": "mcnemar_exact",
            **evaluate.mcnemar_exact([r["correct"] for r in base], [r["correct"] for r in tuned]),
        }
    import numpy as np
    from scipy.stats import wilcoxon

    diff = np.abs([r["answer"] - r["gold"] for r in base]) - np.abs([r["answer"] - r["gold"] for r in tuned])
    p = 1.0 if not np.any(diff) else float(wilcoxon(diff).pvalue)
    return {"test": "wilcoxon_abs_error", "mean_abs_error_change": round(float(-diff.mean()), 4), "p_value": p}


def summarize(tasks: dict[str, dict[str, dict]], labels: list[str]) -> tuple[dict, dict]:
    """(average, npm) per column over the leaderboard tasks scored (all nine for numbers comparable with it)."""
    from lib.ptbench_tasks import npm

    scores = {label: {t: v[label]["value"] for t, v in tasks.items() if t in TASKS} for label in labels}
    average = {label: round(sum(s.values()) / len(s), 2) for label, s in scores.items() if s}
    return average, {label: round(npm(s), 2) for label, s in scores.items() if s}


def upstream_scores(net, tokenizer, name: str, limit: int | None, chat: bool, batch_size: int) -> dict:
    """An upstream lm-eval task through its own harness on the loaded model (data from the Hub)."""
    from lm_eval import simple_evaluate

    from lib import lmeval

    task = name.removeprefix("lm_eval:")
    out = simple_evaluate(
        model=lmeval.harness(net, tokenizer, batch_size), tasks=[task], limit=limit, apply_chat_template=chat,
        bootstrap_iters=0, verbosity="ERROR",
    )  # fmt: skip
    results, n = out["results"][task], out.get("n-samples", {}).get(task, {}).get("effective")
    key = next(k for k in ("acc,none", "acc_norm,none", "exact_match,none", "f1,none") if k in results)
    return {"metric": key.split(",")[0], "value": round(100.0 * results[key], 2), "ci95": None, "n": n, "invalid": 0}


# ---------------------------------------------------------------- the run


def run(
    model: str | None = None,
    adapters: list[str] = (),
    tasks: str | list[str] = "all",
    limit: int | None = None,
    data_dir: str | Path | None = None,
    output_dir: str | Path = "runs/ptbench",
    base_url: str | None = None,
    served_model: str | None = None,
    chat: bool | None = None,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    batch_size: int = 16,
    quantize_4bit: bool | None = None,
    workers: int = 4,
    profile: str | None = None,
) -> dict:
    """Score `model` (+ each adapter, and the base without them) or a served model on `tasks`; writes
    `metrics.json`, `predictions.jsonl` and `pt_benchmarks.png` to `output_dir` and returns the metrics.

    `chat`: None = the leaderboard's rule (the model's own chat template when its tokenizer has one; a server: plain
    completions); `quantize_4bit`: None = 4-bit when an adapter is scored (the QLoRA base it was trained on)."""
    from lib import ptbench_tasks

    names = resolve_tasks(tasks)
    if base_url is None and model is None:
        raise ValueError("pass --model (a preset, Hub id or folder) or --base-url with --served-model")
    if base_url is not None and (not served_model or adapters):
        raise ValueError("--base-url needs --served-model and scores the served model only (no --adapter)")
    if base_url is not None and (upstream := [t for t in names if t not in TASKS]):
        raise ValueError(f"{', '.join(upstream)}: upstream lm-eval tasks need a local --model (log-likelihoods)")
    # a wrong base is an error before anything loads; the fingerprint keys the adapter's cached answers
    parsed = [(label, folder, check_adapter(folder, model)) for label, folder in map(parse_adapter, adapters)]
    if len({label for label, _, _ in parsed} | {models_label(model or served_model)}) != len(parsed) + 1:
        raise ValueError(f"adapter labels must differ from each other and from the model: {[p[0] for p in parsed]}")
    check_hub_reachable(names, data_dir)
    datas = {t: load_task(t, data_dir, limit) for t in names if t in TASKS}
    out = paths.output_dir(output_dir)
    caps = {t: min(max_new_tokens, d.task.max_new_tokens or max_new_tokens) for t, d in datas.items()}
    answers: dict[tuple[str, str], list[dict]] = {}
    hashes: dict[tuple[str, str], list[str]] = {}
    results: dict[str, dict] = {t: {} for t in names}
    if base_url is not None:
        chat_kind = "system_user_assistant" if chat else None
        columns = [Scored(served_model)]
        requests, keys = {}, {}
        for t, data in datas.items():
            prompts = [render(data, doc, None, chat_kind) for doc in data.items]
            hashes[t, served_model] = [prompt_hash(p) for p in prompts]
            keys[t] = [
                cache_key(f"{base_url}|{served_model}", columns[0], t, h, caps[t]) for h in hashes[t, served_model]
            ]
            for key, prompt in zip(keys[t], prompts):
                requests[key] = {"max_tokens": caps[t], **({"messages": prompt} if chat_kind else {"prompt": prompt})}
        got = generate_served(_Served(base_url, served_model), requests, out, workers)
        answers.update({(t, served_model): [got[k] for k in keys[t]] for t in datas})
    else:
        quantize = bool(parsed) if quantize_4bit is None else quantize_4bit
        net, tokenizer, columns = load_scored(model, parsed, quantize)
        own_template = chat is True or (chat is None and own_chat_template(model))
        chat_kind = ptbench_tasks.chat_type(tokenizer) if own_template else None
        if chat and chat_kind is None:
            raise ValueError(f"--chat: the tokenizer of {model!r} has no usable chat template")
        cache = api.JsonlLog(out / "cache.jsonl")
        first_adapter = parsed[0][1] if parsed else None
        for column in columns:
            with _use(net, column, first_adapter):
                for t, data in datas.items():
                    prompts = [render(data, doc, tokenizer, chat_kind) for doc in data.items]
                    hashes[t, column.label] = [prompt_hash(p) for p in prompts]
                    keys = [cache_key(model, column, t, h, caps[t]) for h in hashes[t, column.label]]
                    groups: dict[tuple, list[int]] = {}
                    for k, doc in enumerate(data.items):
                        groups.setdefault(tuple(q for q, _ in ptbench_tasks.shot_pairs(data, doc)), []).append(k)
                    generate_local(
                        net, tokenizer, t, prompts, keys, cache, caps[t], batch_size, chat_kind is None,
                        list(groups.values()),
                    )  # fmt: skip
                    done = {r["id"]: r for r in cache.read()}
                    answers[t, column.label] = [done[k] for k in keys]
                for t in names:
                    if t not in TASKS:
                        results[t][column.label] = upstream_scores(net, tokenizer, t, limit, chat_kind is not None, 4)
    labels = [c.label for c in columns]
    predictions = []
    for t, data in datas.items():
        per_label = {}
        for label in labels:
            results[t][label], per_label[label] = score_task(data, label, answers[t, label], hashes[t, label])
            predictions += per_label[label]
        for label in labels[1:]:
            results[t][label]["paired_vs_base"] = paired_test(t, per_label[labels[0]], per_label[label])
    average, npm = summarize(results, labels)
    notes = [n for d in datas.values() for n in d.notes]
    metrics = {
        "notebook": "09_pt_benchmarks",
        "profile": profile,
        "data": str(data_dir) if data_dir is not None else "Hugging Face Hub (each task's dataset)",
        "split": {t: TASKS[t].split for t in datas},
        "model": model or f"{served_model} @ {base_url}",
        "adapter": [paths.portable(c.adapter) for c in columns if c.adapter] or None,  # in the columns' order
        "adapter_fingerprints": {c.label: c.fingerprint for c in columns if c.adapter},
        "seed": None,
        "protocol": "Open PT LLM Leaderboard, eval version 1.1.0 (lib.ptbench_tasks)",
        "models": labels,
        "chat_template": chat_kind,
        "quantize_4bit": None if base_url else quantize,
        "max_new_tokens": caps,
        "tasks": results,
        "average": average,
        "npm": npm,
        "all_nine": all(t in datas for t in TASKS),
        "published_not_measured_here": ptbench_tasks.PUBLISHED_SCORES,
        "notes": notes,
    }
    paths.write_metrics(metrics, out / "metrics.json")
    from lib import data as lib_data
    from lib import plots

    lib_data.write_jsonl(predictions, out / "predictions.jsonl")
    plots.pt_benchmarks(metrics, out / "pt_benchmarks.png")
    return metrics


def table(metrics: dict) -> str:
    """Tasks x models as a Markdown table (value [95 % CI], invalid answers), the published rows apart."""
    labels = metrics["models"]
    lines = ["| task | metric | " + " | ".join(labels) + " | n |", "|---|---|" + "---|" * len(labels) + "---|"]
    for t, per in metrics["tasks"].items():
        first = per[labels[0]]
        cells = []
        for label in labels:
            r = per[label]
            ci = f" [{r['ci95'][0]:.1f}, {r['ci95'][1]:.1f}]" if r.get("ci95") else ""
            cells.append(f"{r['value']:.2f}{ci}" + (f", {r['invalid']} invalid" if r.get("invalid") else ""))
        lines.append(f"| {t} | {first['metric']} | " + " | ".join(cells) + f" | {first['n']} |")
    for key in ("average", "npm"):
        if metrics[key]:
            lines.append(
                f"| **{key}** |  | "
                + " | ".join(f"{metrics[key].get(lb, float('nan')):.2f}" for lb in labels)
                + " |  |"
            )
    return "\n".join(lines)


def compare_published(metrics: dict, hub_id: str, label: str | None = None, within: float = 2.0) -> dict:
    """One column's scores next to the leaderboard's published ones for `hub_id`: per task measured, published,
    difference and whether it is within `within` points."""
    from lib.ptbench_tasks import PUBLISHED_SCORES

    if hub_id not in PUBLISHED_SCORES:
        raise ValueError(f"no published scores for {hub_id!r}; known: {', '.join(PUBLISHED_SCORES)}")
    label = label or metrics["models"][0]
    rows = {}
    for task, per in metrics["tasks"].items():
        if task in PUBLISHED_SCORES[hub_id]:
            measured, published = per[label]["value"], PUBLISHED_SCORES[hub_id][task]
            diff = round(measured - published, 2)
            rows[task] = {"measured": measured, "published": published, "difference": diff,
                          f"within_{within:g}_points": abs(diff) <= within, "n": per[label]["n"]}  # fmt: skip
    return {"model": hub_id, "column": label, "tasks": rows, "published": "eval version 1.1.0, not measured here"}


def plan(args) -> dict:
    """What a run would score, without loading anything (`--dry-run`)."""
    names = resolve_tasks(args.tasks)
    adapters = {}
    for spec in args.adapter:  # checked here where they exist; a run checks them all before loading anything
        label, folder = parse_adapter(spec)
        adapters[label] = "not found yet" if not Path(folder).is_dir() else check_adapter(folder, args.model)
    where = {
        t: (f"{args.data_dir}/{t}" if args.data_dir else f"{TASKS[t].hub} ({TASKS[t].config or 'default'})")
        if t in TASKS
        else "lm-eval (Hub)"
        for t in names
    }
    return {
        "model": args.model or f"{args.served_model} @ {args.base_url}",
        "adapters": adapters,
        "tasks": where,
        "limit": args.limit,
        "max_new_tokens": args.max_new_tokens,
        "output_dir": args.output_dir,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m lib.ptbench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="preset (embedded, zephyr-7b-beta, ...), Hub id or local folder")
    parser.add_argument("--adapter", action="append", default=[], help="PEFT adapter folder (LABEL=DIR to name it)")
    parser.add_argument("--tasks", default="all", help="all, or names separated by commas")
    parser.add_argument("--limit", type=int, help="score the first N items of each task")
    parser.add_argument("--data-dir", help="folder of <task>/<split>.jsonl (default: the Hub datasets)")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--base-url", help="an OpenAI-compatible server (its /v1 address)")
    parser.add_argument("--served-model", help="the model name the server knows")
    parser.add_argument("--chat", action=argparse.BooleanOptionalAction, default=None,
                        help="chat template / chat endpoint (default: the leaderboard's rule)")  # fmt: skip
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--quantize-4bit", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--workers", type=int, default=4, help="concurrent requests to a server")
    parser.add_argument("--compare-published", metavar="HUB_ID", help="write published_comparison.json for the base")
    parser.add_argument("--dry-run", action="store_true", help="print what would be scored; load nothing")
    args = parser.parse_args(argv)
    try:
        if args.dry_run:
            print(json.dumps(plan(args), indent=2, ensure_ascii=False))
            return {}
        metrics = run(
            args.model, args.adapter, args.tasks, args.limit, args.data_dir, args.output_dir, args.base_url,
            args.served_model, args.chat, args.max_new_tokens, args.batch_size, args.quantize_4bit, args.workers,
        )  # fmt: skip
    except (UnknownTaskError, BenchDataError, ValueError, FileNotFoundError) as error:
        parser.exit(2, f"error: {error}\n")
    print(table(metrics))
    if args.compare_published:
        comparison = compare_published(metrics, args.compare_published)
        paths.write_json(comparison, Path(args.output_dir) / "published_comparison.json")
        for task, row in comparison["tasks"].items():
            print(f"{task}: measured {row['measured']} vs published {row['published']} ({row['difference']:+.2f})")
    print(f"\nwritten to {paths.relative(args.output_dir)}: metrics.json, predictions.jsonl, pt_benchmarks.png")
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
