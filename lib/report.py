"""The README's base-vs-tuned table, built from the committed `comparison.json` files (a test keeps them equal)."""
from __future__ import annotations

import json
from pathlib import Path

from lib import paths


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
        (f"natural PT questions, `{mc['split']}` split, `{mc['mode']}` accuracy (06)",
         _pct(mc["base_accuracy"]) + _ci(mc["base_ci95"]), _pct(mc["tuned_accuracy"]) + _ci(mc["tuned_ci95"]),
         f"McNemar p = {mc['mcnemar_p']:.2g}", mc["n"]),
        ("same questions, base `options` acc / acc_norm (06)",
         f"{_pct(mc.get('base_options_accuracy'))} / {_pct(mc.get('base_options_acc_norm'))}", "", "", mc["n"]),
        ("same questions: chance / best shortcut rule (06)", _pct(cues.get("chance", 0.25)),
         "", f"best rule: {best_cue[1]} option, {_pct(best_cue[0])}" if best_cue else "", mc["n"]),
        ("invalid answers, `generate` mode (06)", _pct(mc.get("base_generate_invalid_rate")),
         _pct(mc.get("tuned_generate_invalid_rate")), "", mc.get("generate_n", "")),
        ("SYNTHETIC mechanics check, `letters` (06; solvable by word overlap)", _pct(mechanics.get("base_accuracy")),
         _pct(mechanics.get("tuned_accuracy")), "", mechanics.get("n", "")),
        ("EOS-stop rate (07)", _pct(inst["base_eos_stop_rate"]), _pct(inst["tuned_eos_stop_rate"]), "", inst["n"]),
        ("repeated 4-gram rate (07, lower is better)", _pct(inst["base_repeated_4gram_rate"]),
         _pct(inst["tuned_repeated_4gram_rate"]), "", inst["n"]),
        ('"list exactly N" answered with N items (07)', _pct(inst["base_list_exact_rate"]),
         _pct(inst["tuned_list_exact_rate"]), "", inst.get("list_requests", "")),
        ("perplexity of the reference answers (07)", f"{inst['base_perplexity']:.1f}",
         f"{inst['tuned_perplexity']:.1f}", "", inst["n"]),
    ]
    lines = ["| metric | base | tuned | test | n |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {base} | {tuned} | {test} | {n} |" for name, base, tuned, test, n in rows]
    timing = results_dir / "pipeline.json"
    if timing.is_file():
        run = json.loads(timing.read_text(encoding="utf-8"))
        lines += ["", f"`make pipeline` ({run['profile']} profile, {run.get('cpu_count', '?')} CPU cores, no GPU): "
                      f"{run['total_s'] / 60:.1f} min for {len(run['notebooks'])} notebooks "
                      f"([`pipeline.json`]({paths.relative(timing)}))."]
    return "\n".join(lines)


START, END = "<!-- results-table:start (written by `python -m lib.report`) -->", "<!-- results-table:end -->"


def readme_with_table(readme: str, table: str) -> str:
    """`readme` with the text between the START and END markers replaced by `table`."""
    if START not in readme or END not in readme:
        raise ValueError(f"README has no {START} ... {END} block")
    head, rest = readme.split(START, 1)
    return f"{head}{START}\n{table}\n{END}{rest.split(END, 1)[1]}"


def update_readme(profile: str = "smoke", readme: Path = paths.ROOT / "README.md") -> bool:
    """Rewrite the README's results table from results/<profile>/ (`make pipeline` does it after a smoke run)."""
    results = paths.RESULTS / profile
    if not all((results / nb / "comparison.json").is_file()
               for nb in ("06_accuracy_analysis", "07_instruction_following_eval")):
        return False
    text = readme.read_text(encoding="utf-8")
    updated = readme_with_table(text, summary_table(results))
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
        changed = {k: v for k, v in cfg.items() if k in default.__dict__ and v != getattr(default, k)
                   and not isinstance(getattr(default, k), tuple) and k not in BOOKKEEPING}
        name = ", ".join(f"{k}={v}" for k, v in sorted(changed.items())) or "smoke preset"
        runs[name] = {"config_changes": changed, "global_step": summary["global_step"],
                      "train_examples": summary["truncation"]["train"]["kept"],
                      "learning_curve": train.learning_curve(summary["log_history"]),
                      "final_train_loss": next((e["loss"] for e in reversed(summary["log_history"]) if "loss" in e), None)}
    out_stem = Path(out_stem)
    paths.write_json(runs, out_stem.with_suffix(".json"))
    plots.sweep_curves({name: r["learning_curve"] for name, r in runs.items()}, out_stem.with_suffix(".png"),
                       "held-out letters accuracy by step (smoke, natural train split)")
    return runs


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Rewrite the README results table from results/<profile>/, or "
                                                 "plot a sweep of training runs (--sweep).")
    parser.add_argument("profile", nargs="?", default="smoke")
    parser.add_argument("--sweep", nargs="+", metavar="RUN_DIR", help="lib.train output folders to compare")
    parser.add_argument("--out", help="with --sweep: output path without extension")
    args = parser.parse_args(argv)
    if args.sweep:
        for name, run in sweep(args.sweep, args.out or "sweep").items():
            print(name, [(p["step"], p.get("eval_letters_accuracy")) for p in run["learning_curve"]])
        return
    print("README table updated" if update_readme(args.profile) else f"no comparisons in results/{args.profile}/ yet")


if __name__ == "__main__":
    main()
