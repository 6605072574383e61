"""The README's base-vs-tuned table, built from the committed `comparison.json` files (a test keeps them equal)."""

from __future__ import annotations

import json
from pathlib import Path

from lib import hub, paths


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def _ci(ci) -> str:
    return "" if not ci else f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def summary_table(results_dir: str | Path = paths.RESULTS / "smoke") -> str:
    """Markdown table: each headline metric of notebooks 06 and 07, base vs tuned — the natural multiple-choice
    result first, next to chance and the rules that answer without reading."""
    results_dir = Path(results_dir)
    mc = json.loads((results_dir / "06_accuracy_analysis" / "comparison.json").read_text(encoding="utf-8"))
    inst = json.loads((results_dir / "07_instruction_following_eval" / "comparison.json").read_text(encoding="utf-8"))
    cues = mc.get("shortcut_baselines") or {}
    best_cue = max((v, k) for k, v in cues.items() if k != "chance" and v is not None) if cues else None
    mechanics = mc.get("mechanics_check") or {}
    rows = [
        (
            f"natural PT questions, `{mc['split']}` split, `{mc['mode']}` accuracy (06)",
            _pct(mc["base_accuracy"]) + _ci(mc["base_ci95"]),
            _pct(mc["tuned_accuracy"]) + _ci(mc["tuned_ci95"]),
            f"McNemar p = {mc['mcnemar_p']:.2g}",
            mc["n"],
        ),
        (
            "same questions, base `options` acc / acc_norm (06)",
            f"{_pct(mc.get('base_options_accuracy'))} / {_pct(mc.get('base_options_acc_norm'))}",
            "",
            "",
            mc["n"],
        ),
        (
            "same questions: chance / best shortcut rule (06)",
            _pct(cues.get("chance", 0.25)),
            "",
            f"best rule: {best_cue[1]} option, {_pct(best_cue[0])}" if best_cue else "",
            mc["n"],
        ),
        (
            "invalid answers, `generate` mode (06)",
            _pct(mc.get("base_generate_invalid_rate")),
            _pct(mc.get("tuned_generate_invalid_rate")),
            "",
            mc.get("generate_n", ""),
        ),
        (
            "SYNTHETIC mechanics check, `letters` (06; solvable by word overlap)",
            _pct(mechanics.get("base_accuracy")),
            _pct(mechanics.get("tuned_accuracy")),
            "",
            mechanics.get("n", ""),
        ),
        ("EOS-stop rate (07)", _pct(inst["base_eos_stop_rate"]), _pct(inst["tuned_eos_stop_rate"]), "", inst["n"]),
        (
            "repeated 4-gram rate (07, lower is better)",
            _pct(inst["base_repeated_4gram_rate"]),
            _pct(inst["tuned_repeated_4gram_rate"]),
            "",
            inst["n"],
        ),
        (
            '"list exactly N" answered with N items (07)',
            _pct(inst["base_list_exact_rate"]),
            _pct(inst["tuned_list_exact_rate"]),
            "",
            inst.get("list_requests", ""),
        ),
        (
            "perplexity of the reference answers (07)",
            f"{inst['base_perplexity']:.1f}",
            f"{inst['tuned_perplexity']:.1f}",
            "",
            inst["n"],
        ),
    ]
    verdict = inst.get("judge")
    if verdict and verdict.get("win_rate_b") is not None:
        rows.append(
            (
                f"LLM judge: tuned answer preferred, both orders (07; {verdict['kind']}: {verdict['judge_model']})",
                "",
                _pct(verdict["win_rate_b"]) + _ci(verdict["win_rate_b_ci"]),
                f"position consistency {_pct(verdict['position_consistency'])}, length-controlled "
                f"{_pct(verdict['length_controlled_win_rate_b'])}",
                verdict["n"],
            )
        )
    lines = ["| metric | base | tuned | test | n |", "|---|---|---|---|---|"]
    rows += ptbench_rows(results_dir)
    lines += [f"| {name} | {base} | {tuned} | {test} | {n} |" for name, base, tuned, test, n in rows]
    lines += translation_lines(results_dir)
    timing = results_dir / "pipeline.json"
    if timing.is_file():
        run = json.loads(timing.read_text(encoding="utf-8"))
        cpu = (run.get("machine") or {}).get("cpu")
        slowest = sorted(run["notebooks"].items(), key=lambda kv: -kv[1])[:3]
        lines += [
            "",
            f"`make pipeline` ({run['profile']} profile, {run.get('cpu_count', '?')} CPU cores"
            f"{f' ({cpu})' if cpu else ''}, no GPU): {run['total_s'] / 60:.1f} min for "
            f"{len(run['notebooks'])} notebooks; slowest "
            + ", ".join(f"{name[:2]} {seconds / 60:.1f} min" for name, seconds in slowest)
            + f" ([`pipeline.json`]({paths.relative(timing)})).",
        ]
    return "\n".join(lines)


def ptbench_rows(results_dir: Path) -> list[tuple]:
    """Notebook 09's rows: per adapter, the leaderboard average and NPM of base vs tuned on the shipped items, the
    tasks where a paired test separates them, and the unreadable answers."""
    path = Path(results_dir) / "09_pt_benchmarks" / "metrics.json"
    if not path.is_file():
        return []
    m = json.loads(path.read_text(encoding="utf-8"))
    base, tasks = m["models"][0], m["tasks"]
    n = sum(per[base]["n"] for per in tasks.values())
    rows = []
    for label in m["models"][1:]:
        separated = [t for t, per in tasks.items() if per[label].get("paired_vs_base", {}).get("p_value", 1) < 0.05]
        invalid = [sum(per[x]["invalid"] for per in tasks.values()) / n for x in (base, label)]
        rows += [
            (
                f"PT leaderboard tasks (09), `{label}` adapter: average / NPM over {len(tasks)} tasks (shipped items)",
                f"{m['average'][base]:.1f} / {m['npm'][base]:.1f}",
                f"{m['average'][label]:.1f} / {m['npm'][label]:.1f}",
                f"paired p < 0.05 on {len(separated)} of {len(tasks)} tasks"
                + (f" ({', '.join(separated)})" if separated else ""),
                n,
            ),
            (f"same items: unreadable answers (09, `{label}`)", _pct(invalid[0]), _pct(invalid[1]), "", n),
        ]
    return rows


def translation_lines(results_dir: Path) -> list[str]:
    """Notebook 01's result, under the table: rows translated, the engine, chrF / BLEU against the references."""
    path = Path(results_dir) / "01_translate_cosmos_qa" / "metrics.json"
    if not path.is_file():
        return []
    m = json.loads(path.read_text(encoding="utf-8"))
    engine = (m.get("engine") or {}).get("package") or f"{m.get('backend')} {m.get('model') or ''}".strip()
    line = (
        f"Translation (01, `{engine}`, offline): {m['done']} of {m['rows']} English samples translated, "
        f"{m['failed']} failed, {m.get('flagged', 0)} flagged by the quality estimate, {m.get('rows_per_s')} rows/s"
    )
    if m.get("chrf") is not None:
        fields = m.get("per_field") or {}
        line += (
            f"; against hand-written pt-BR references ({m['reference_rows']} rows, all six fields): **chrF "
            f"{m['chrf']}, BLEU {m['bleu']}** (story {fields.get('contexto', {}).get('chrf')}, question "
            f"{fields.get('pergunta', {}).get('chrf')})"
        )
    return ["", line + f" ([`metrics.json`]({paths.relative(path)}))."]


def _x(value) -> str:
    return "—" if value is None else f"{value:g}×"


def _eval_measured(b: dict) -> str:
    q = b["questions_per_s"]
    return (
        f"**shared-prompt `options` {_x(b.get('ratio_shared_vs_options'))} pair-by-pair `options`, "
        f"{_x(b.get('ratio_shared_vs_lm_eval_options'))} lm-eval `options`** (same predictions: "
        f"{b.get('same_predictions_shared')}); `letters` {_x(b['ratio_vs_lm_eval'])} lm-eval `letters` (same "
        f"predictions: {b['lm_eval']['same_predictions_as_letters']}), {_x(b['ratio_vs_options'])} pair-by-pair "
        f"`options`, {_x(b['ratio'])} prior (timed on {b['prior_subset']} questions: the prior method's rate depends "
        f"on when the base model happens to stop); questions/s: letters {q['letters']}, shared options "
        f"{q.get('options_shared_prompt')}; `letters` identical at batch 1/8/32: "
        f"{b['letters_identical_across_batch_sizes']}; {b['questions']} questions"
    )


# bench/NAME.py -> (what it compares, its targets, what it measured): the README's benchmark table, from the JSONs
BENCH_ROWS = {
    "translate_throughput": (
        lambda b: (
            f"server backend: 16 workers vs 1, loopback server at {b['server_delay_s'] * 1000:g} ms/reply, "
            f"{b['baseline_workers_1']['records']} records; offline engine (`--backend mt`, 2 workers, "
            f"{b['mt_workers_2']['rows']} rows, nothing cached) vs the prior work's {b['prior_rows_per_s']} rows/s"
        ),
        lambda b: f"≥ {_x(b['target'])}; engine ≥ {_x(b['target_mt_vs_prior'])}",
        lambda b: (
            f"{_x(b['ratio'])}, {b['duplicates']} duplicates; engine {b['rows_per_s_mt']} rows/s = "
            f"{_x(b['ratio_mt_vs_prior'])} ({b['rows_per_s_mt_with_qe']} rows/s with the quality estimate), "
            f"chrF {b['chrf']} vs the references ({b.get('chrf_held_out')} on the held-out records)"
            + (
                f"; quality-estimate ranking vs per-row reference chrF, pooled {b['qe_rows']['pooled']} rows: Spearman "
                f"{b['qe_spearman']['pooled']['score_without_lm']} ({b['qe_spearman']['pooled']['score']} with the LM), "
                f"recall of the worst 20 % {b['qe_recall_worst20']['pooled']['score_without_lm']}"
                if "qe_spearman" in b
                else ""
            )
        ),
    ),
    "train_throughput": (
        lambda b: (
            "length-grouped batches padded to the batch's longest vs everything padded to `max_length` (the prior "
            f"scheme), Canarim sample, {b['model']} QLoRA"
            + (
                "; bf16 CPU autocast vs fp32 on notebook 04's smoke training (same seed), loss-curve gap vs the gap "
                "between two fp32 seeds"
                if "ratio_bf16_vs_fp32" in b
                else ""
            )
        ),
        lambda b: (
            f"≥ {b['target_useful_fraction']:.0%} useful, ≥ {_x(b['target'])} tokens/s"
            + (f"; bf16 ≥ {_x(b['target_bf16_vs_fp32'])}, gap ≤ seeds' gap" if "ratio_bf16_vs_fp32" in b else "")
        ),
        lambda b: (
            f"{b['useful_fraction']:.1%} useful over an epoch (vs {b['prior_pad_to_max']['useful_fraction']:.1%}), "
            f"{_x(b['ratio'])} real tokens/s"
            + (
                f"; bf16 {_x(b['ratio_bf16_vs_fp32'])}, gap {b['loss_gap_bf16']} vs {b['loss_gap_seeds']}"
                if "ratio_bf16_vs_fp32" in b
                else ""
            )
        ),
    ),
    "judge_throughput": (
        lambda b: (
            f"16 workers vs 1, loopback judge at {b['server_delay_s'] * 1000:g} ms/reply, "
            f"{b['baseline_workers_1']['calls']} calls"
        ),
        lambda b: f"≥ {_x(b['target'])}",
        lambda b: f"{_x(b['ratio'])}, same `judge.json`: {b['same_judge_json']}",
    ),
    "eval_throughput": (
        lambda b: (
            "natural validation questions, embedded model in 4-bit, one loaded model in one process: `options` "
            "with the shared prompt encoded once vs each (prompt, option) pair scored whole vs "
            f"lm-evaluation-harness {b['lm_eval']['version']} `options`; `letters` vs lm-eval `letters`, vs "
            "pair-by-pair `options` and vs the prior method (generate 256 tokens, one question at a time)"
        ),
        lambda b: (
            f"shared ≥ {_x(b.get('target_shared_vs_options'))} options, ≥ "
            f"{_x(b.get('target_shared_vs_lm_eval_options'))} lm-eval options; letters ≥ {_x(b['target'])} prior, "
            f"≥ {_x(b['target_vs_options'])} options, ≥ {_x(b['target_vs_lm_eval'])} lm-eval"
        ),
        _eval_measured,
    ),
    "ptbench_throughput": (
        lambda b: (
            f"nine leaderboard tasks, {b['items']} shipped items, embedded model (fp32, one loaded model): each task's "
            "few-shot prefix encoded once + batched items vs lm-evaluation-harness `generate_until` (HF backend, "
            "its default batch of 1) on the same prompts"
        ),
        lambda b: f"≥ {_x(b['target'])}, same answers",
        lambda b: (
            f"{_x(b['ratio_vs_lm_eval'])} ({b['items_per_s_ours']} vs {b['items_per_s_lm_eval']} items/s), same "
            f"answers: {b['same_answers']}"
        ),
    ),
}


def bench_table(results_dir: str | Path = paths.RESULTS / "smoke") -> str:
    """Markdown table of every benchmark JSON under results_dir/bench/ that BENCH_ROWS describes."""
    lines = [
        "| benchmark | ours vs baseline | target | measured (smoke machine: 2 CPU cores) | met |",
        "|---|---|---|---|---|",
    ]
    for name, (what, target, measured) in BENCH_ROWS.items():
        path = Path(results_dir) / "bench" / f"{name}.json"
        if path.is_file():
            b = json.loads(path.read_text(encoding="utf-8"))
            lines.append(
                f"| [`bench/{name}.py`]({paths.relative(path)}) | {what(b)} | {target(b)} | {measured(b)} | "
                f"{'yes' if b.get('met') else 'no'} |"
            )
    return "\n".join(lines)


START, END = "<!-- results-table:start (written by `python -m lib.report`) -->", "<!-- results-table:end -->"
BENCH_START, BENCH_END = "<!-- bench-table:start (written by `python -m lib.report`) -->", "<!-- bench-table:end -->"


def readme_with_table(readme: str, table: str, start: str = START, end: str = END) -> str:
    """`readme` with the text between the start and end markers replaced by `table`."""
    if start not in readme or end not in readme:
        raise ValueError(f"README has no {start} ... {end} block")
    head, rest = readme.split(start, 1)
    return f"{head}{start}\n{table}\n{end}{rest.split(end, 1)[1]}"


def update_readme(profile: str = "smoke", readme: Path = paths.ROOT / "README.md") -> bool:
    """Rewrite the README's results and benchmark tables from results/<profile>/ (`make pipeline` does it after a
    smoke run)."""
    results = paths.RESULTS / profile
    if not all(
        (results / nb / "comparison.json").is_file() for nb in ("06_accuracy_analysis", "07_instruction_following_eval")
    ):
        return False
    text = readme.read_text(encoding="utf-8")
    updated = readme_with_table(
        readme_with_table(text, summary_table(results)), bench_table(results), BENCH_START, BENCH_END
    )
    if updated != text:
        readme.write_text(updated, encoding="utf-8")
    return True


BOOKKEEPING = {"eval_steps", "save_steps", "logging_steps"}  # change when a curve is measured, not what is learned


def sweep(run_dirs: list[str | Path], out_stem: str | Path) -> dict:
    """Learning curves of several `lib.train` runs side by side (held-out letters accuracy and eval loss per step),
    from each run's `final_adapter/training_summary.json`: `<out_stem>.json` (+ the config each run changed from the
    smoke preset) and `<out_stem>.png`."""
    from lib import plots, train

    runs = {}
    for run in map(Path, run_dirs):
        summary = json.loads((run / "final_adapter" / "training_summary.json").read_text(encoding="utf-8"))
        cfg = summary["config"]
        default = train.config_for(cfg["preset"], cfg["hardware"])
        changed = {
            k: v
            for k, v in cfg.items()
            if k in default.__dict__
            and v != getattr(default, k)
            and not isinstance(getattr(default, k), tuple)
            and k not in BOOKKEEPING
        }
        name = ", ".join(f"{k}={v}" for k, v in sorted(changed.items())) or "smoke preset"
        runs[name] = {
            "config_changes": changed,
            "global_step": summary["global_step"],
            "train_examples": summary["truncation"]["train"]["kept"],
            "learning_curve": train.learning_curve(summary["log_history"]),
            "final_train_loss": next((e["loss"] for e in reversed(summary["log_history"]) if "loss" in e), None),
        }
    out_stem = Path(out_stem)
    paths.write_json(runs, out_stem.with_suffix(".json"))
    plots.sweep_curves(
        {name: r["learning_curve"] for name, r in runs.items()},
        out_stem.with_suffix(".png"),
        "held-out letters accuracy by step (smoke, natural train split)",
    )
    return runs


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        description="Rewrite the README results table from results/<profile>/, or "
        "plot a sweep of training runs (--sweep)."
    )
    parser.add_argument("profile", nargs="?", default="smoke")
    parser.add_argument("--sweep", nargs="+", metavar="RUN_DIR", help="lib.train output folders to compare")
    parser.add_argument("--out", help="with --sweep: output path without extension")
    args = parser.parse_args(argv)
    if args.sweep:
        for name, run in sweep(args.sweep, args.out or "sweep").items():
            print(name, [(p["step"], p.get("eval_letters_accuracy")) for p in run["learning_curve"]])
        return
    if args.profile == "smoke":  # the README reports the smoke run
        print("README table updated" if update_readme(args.profile) else "no comparisons in results/smoke/ yet")
    for card in hub.update_model_cards(args.profile):
        print("model card", paths.relative(card))


if __name__ == "__main__":
    main()
