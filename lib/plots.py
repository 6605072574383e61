"""Figures saved as PNG under results/; notebooks display the saved file, so what you see is what is committed."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless-safe (papermill, CI); notebooks show the saved PNG
import matplotlib.pyplot as plt  # noqa: E402


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def token_length_histograms(
    lengths_by_split: dict[str, list[int]], max_length: int, path: str | Path, title: str
) -> Path:
    """One histogram per split with the `max_length` cut-off marked."""
    splits = list(lengths_by_split)
    fig, axes = plt.subplots(1, len(splits), figsize=(4.5 * len(splits), 3.4), squeeze=False)
    for ax, split in zip(axes[0], splits):
        lengths = lengths_by_split[split]
        ax.hist(lengths, bins=30, color="#4C72B0")
        ax.axvline(max_length, color="#C44E52", linestyle="--", label=f"max_length = {max_length}")
        over = sum(n > max_length for n in lengths)
        ax.set_title(f"{split} (n={len(lengths)}, {over} over)")
        ax.set_xlabel("tokens per example")
        ax.set_ylabel("examples")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def translation_quality(
    report: dict, path: str | Path, estimates: dict[str, dict] | None = None, threshold: float | None = None
) -> Path:
    """Attempts per record, the PT/EN length ratio per field with the outlier bounds, and (with the quality
    estimates) the round-trip chrF of every row against the flagging threshold."""
    panels = 3 if estimates else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.6))
    left, right = axes[0], axes[1]
    histogram = report["attempts_histogram"]
    left.bar([str(k) for k in histogram], list(histogram.values()), color="#4C72B0")
    left.set_title(f"attempts per record ({report['done']} done, {report['failed']} failed)")
    left.set_xlabel("attempts")
    left.set_ylabel("records")
    ratios = {k: v for k, v in report["length_ratios"].items() if v}
    if ratios:
        right.boxplot(list(ratios.values()), tick_labels=list(ratios))
        for bound in report["length_ratio_bounds"]:
            right.axhline(bound, color="#C44E52", linestyle="--", linewidth=1)
    else:
        right.text(0.5, 0.5, "no translated record", ha="center", va="center", transform=right.transAxes)
    right.set_title("length ratio PT / EN per field")
    if estimates:
        ax = axes[2]
        chrfs = [e["round_trip_chrf"] for e in estimates.values() if e.get("round_trip_chrf") is not None]
        ax.hist(chrfs, bins=20, range=(0, 100), color="#55A868")
        if threshold is not None:
            ax.axvline(threshold, color="#C44E52", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
            ax.legend(fontsize=8)
        flagged = report.get("flagged", 0)
        ax.set_title(f"round-trip chrF per row ({flagged} of {len(estimates)} flagged)")
        ax.set_xlabel("chrF (EN → PT → EN vs EN)")
        ax.set_ylabel("rows")
    return _save(fig, path)


def mc_report(metrics: dict, path: str | Path, title: str) -> Path:
    """Confusion matrix (gold x predicted, with `invalid`), accuracy by gold letter, letter bias."""
    gold = list(metrics["confusion"])
    predicted = list(next(iter(metrics["confusion"].values())))
    matrix = [[metrics["confusion"][g][p] for p in predicted] for g in gold]
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(13, 3.8))
    a.imshow(matrix, cmap="Blues")
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            a.text(j, i, value, ha="center", va="center", fontsize=8)
    a.set_xticks(range(len(predicted)), predicted)
    a.set_yticks(range(len(gold)), gold)
    a.set_xlabel("predicted")
    a.set_ylabel("gold")
    a.set_title("confusion")
    by_gold = metrics["accuracy_by_gold"]
    b.bar(list(by_gold), [v or 0 for v in by_gold.values()], color="#4C72B0")
    b.axhline(0.25, color="grey", linestyle=":", label="chance")
    b.set_ylim(0, 1)
    b.set_title("accuracy by gold letter")
    b.legend(fontsize=8)
    letters = list(metrics["pred_distribution"])
    width = 0.4
    c.bar(
        [i - width / 2 for i in range(len(letters))],
        list(metrics["pred_distribution"].values()),
        width,
        label="predicted",
        color="#DD8452",
    )
    c.bar(
        [i + width / 2 for i in range(len(gold))],
        list(metrics["gold_distribution"].values()),
        width,
        label="gold",
        color="#55A868",
    )
    c.set_xticks(range(len(letters)), letters)
    c.set_title("letter bias")
    c.legend(fontsize=8)
    fig.suptitle(
        f"{title} — accuracy {metrics['accuracy']:.1%} (95% CI {metrics['ci95'][0]:.1%}–{metrics['ci95'][1]:.1%})"
    )
    return _save(fig, path)


_BASELINE_STYLES = {
    "longest": ("#DD8452", "--"),
    "shortest": ("#937860", "--"),
    "max_overlap": ("#DA8BC3", "-."),
    "min_overlap": ("#8C8C8C", "-."),
}


def accuracy_comparison(
    runs: dict[str, dict], path: str | Path, title: str, baselines: dict[str, float] | None = None
) -> Path:
    """Accuracy with 95% CI error bars, one bar per run (e.g. base vs tuned), next to chance and the shortcut
    baselines (rules that answer without reading); with baselines, a second panel shows each run's predicted
    letters against the gold distribution (a model that always answers "D" scores chance on balanced data)."""
    panels = 2 if baselines else 1
    fig, axes = plt.subplots(1, panels, figsize=(2.6 + 1.6 * len(runs) + 4.2 * (panels - 1), 3.8), squeeze=False)
    ax = axes[0][0]
    names = list(runs)
    acc = [runs[n]["accuracy"] for n in names]
    low = [a - runs[n]["ci95"][0] for a, n in zip(acc, names)]
    high = [runs[n]["ci95"][1] - a for a, n in zip(acc, names)]
    ax.bar(names, acc, yerr=[low, high], capsize=6, color=["#8172B3", "#55A868", "#C44E52", "#4C72B0"][: len(names)])
    ax.axhline(0.25, color="grey", linestyle=":", label="chance (4 options)")
    for name, value in (baselines or {}).items():
        if name in _BASELINE_STYLES and value is not None:
            color, style = _BASELINE_STYLES[name]
            ax.axhline(value, color=color, linestyle=style, linewidth=1, label=f"{name} option: {value:.0%}")
    for i, (a, up) in enumerate(zip(acc, high)):  # above the error bar, not on it
        ax.text(i, a + up + 0.03, f"{a:.1%}", ha="center", va="bottom", fontsize=9)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7, loc="upper right")
    # the run's description as a wrapped figure title: an axis title this long is cut off at the figure's edge
    fig.suptitle("\n".join(textwrap.wrap(title, 110)), fontsize=9)
    if panels == 2:
        ax = axes[0][1]
        letters = [k for k in next(iter(runs.values()))["pred_distribution"]]
        width = 0.8 / (len(runs) + 1)
        for k, name in enumerate(names):
            ax.bar(
                [i + k * width for i in range(len(letters))],
                [runs[name]["pred_distribution"][x] for x in letters],
                width,
                label=f"{name}: predicted",
            )
        gold = next(iter(runs.values()))["gold_distribution"]
        ax.bar(
            [i + len(names) * width for i in range(len(letters))],
            [gold.get(x, 0) for x in letters],
            width,
            label="gold",
            color="#55A868",
            alpha=0.5,
        )
        ax.set_xticks([i + width * len(names) / 2 for i in range(len(letters))], letters)
        ax.set_title("predicted letters vs gold", fontsize=9)
        ax.legend(fontsize=7)
    return _save(fig, path)


def shortcut_baselines(table: dict[str, dict[str, float]], path: str | Path, title: str) -> Path:
    """Accuracy of each shortcut rule per multiple-choice set, against chance: bars far above the line mean the set
    can be answered without reading it."""
    rules = [r for r in _BASELINE_STYLES if any(r in v for v in table.values())]
    fig, ax = plt.subplots(figsize=(2.5 + 1.4 * len(table), 3.6))
    width = 0.8 / len(rules)
    for k, rule in enumerate(rules):
        ax.bar(
            [i + k * width for i in range(len(table))],
            [v.get(rule) or 0 for v in table.values()],
            width,
            label=rule,
            color=_BASELINE_STYLES[rule][0],
        )
    ax.axhline(0.25, color="grey", linestyle=":", label="chance")
    ax.set_xticks([i + width * (len(rules) - 1) / 2 for i in range(len(table))], list(table), fontsize=7, rotation=15)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy of the rule")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=3, loc="upper left")
    return _save(fig, path)


def sweep_curves(curves: dict[str, list[dict]], path: str | Path, title: str) -> Path:
    """Held-out letters accuracy against the step for several training runs, with chance."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for name, curve in curves.items():
        points = [(p["step"], p["eval_letters_accuracy"]) for p in curve if "eval_letters_accuracy" in p]
        if points:
            ax.plot(*zip(*points), "o-", label=name, markersize=3)
    ax.axhline(0.25, color="grey", linestyle=":", label="chance")
    ax.set_ylim(0, 0.7)
    ax.set_xlabel("step")
    ax.set_ylabel("held-out letters accuracy")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)


def learning_curve(
    log_history: list[dict], path: str | Path, title: str, reference: dict[str, float] | None = None
) -> Path:
    """Held-out `letters` accuracy and eval loss against the optimizer step (step 0 = the base model), with chance
    and any `reference` lines (e.g. the held-out part's shortcut baselines)."""
    acc = [(e["step"], e["eval_letters_accuracy"]) for e in log_history if "eval_letters_accuracy" in e]
    loss = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    if acc:
        ax.plot(*zip(*acc), "o-", color="#55A868", label="held-out letters accuracy")
    ax.axhline(0.25, color="grey", linestyle=":", label="chance")
    for name, value in (reference or {}).items():
        if name in _BASELINE_STYLES and value is not None:
            color, style = _BASELINE_STYLES[name]
            ax.axhline(value, color=color, linestyle=style, linewidth=1, label=f"{name} option: {value:.0%}")
    ax.set_ylim(0, 1)
    ax.set_xlabel("step")
    ax.set_ylabel("accuracy")
    ax.set_title(title, fontsize=9)
    handles, labels = ax.get_legend_handles_labels()
    if loss:
        twin = ax.twinx()
        twin.plot(*zip(*loss), "s--", color="#C44E52", label="eval loss")
        twin.set_ylabel("eval loss (answer tokens)")
        more = twin.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    # one legend under the axes: inside them it hid the first points of the curves
    ax.legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
    return _save(fig, path)


def instruction_report(runs: dict[str, dict], path: str | Path, title: str) -> Path:
    """Side-by-side bars of the instruction-following metrics (rates on 0-1, text scores on 0-100)."""
    rate_keys = ["eos_stop_rate", "repeated_4gram_rate", "distinct_2", "list_exact_rate"]
    score_keys = ["rouge_l", "chrf", "bleu"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6))
    width = 0.8 / max(1, len(runs))
    for k, (name, m) in enumerate(runs.items()):
        a.bar([i + k * width for i in range(len(rate_keys))], [m.get(x) or 0 for x in rate_keys], width, label=name)
        b.bar([i + k * width for i in range(len(score_keys))], [m.get(x) or 0 for x in score_keys], width, label=name)
    a.set_xticks([i + width * (len(runs) - 1) / 2 for i in range(len(rate_keys))], rate_keys, fontsize=8)
    b.set_xticks([i + width * (len(runs) - 1) / 2 for i in range(len(score_keys))], score_keys)
    a.set_ylim(0, 1.05)
    a.set_title("rates")
    b.set_title("text overlap with the reference (0-100)")
    a.legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def loss_curves(log_history: list[dict], path: str | Path, title: str) -> Path:
    """Training loss per logged step and evaluation loss, from `trainer.state.log_history`."""
    train_points = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    eval_points = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    if train_points:
        ax.plot(*zip(*train_points), label="train loss", color="#4C72B0")
    if eval_points:
        ax.plot(*zip(*eval_points), "o-", label="eval loss", color="#C44E52")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (completion tokens)")
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)


def chat_turns(transcript: list[dict], max_new_tokens: int, path: str | Path, title: str) -> Path:
    """Tokens per reply, green when it ended on EOS, red when `max_new_tokens` cut it off."""
    from matplotlib.patches import Patch

    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(transcript) + 2), 3.4))
    colors = ["#55A868" if t["stopped_on_eos"] else "#C44E52" for t in transcript]
    ax.bar([str(t["turn"]) for t in transcript], [t["tokens"] for t in transcript], color=colors)
    ax.axhline(max_new_tokens, color="grey", linestyle="--", linewidth=1)
    ax.set_ylim(0, max_new_tokens * 1.3)  # room for the legend above the limit line
    ax.legend(
        handles=[
            Patch(color="#55A868", label="stopped on EOS"),
            Patch(color="#C44E52", label="cut off"),
            plt.Line2D([], [], color="grey", linestyle="--", label=f"max_new_tokens = {max_new_tokens}"),
        ],
        fontsize=8,
        loc="upper center",
        ncol=3,
    )
    ax.set_xlabel("turn")
    ax.set_ylabel("tokens generated")
    ax.set_title(title)
    return _save(fig, path)


def judge_summary(summary: dict, path: str | Path, title: str) -> Path:
    """LLM-judge results: B's win rate with its 95 % CI next to the length-controlled rate and the judge's position
    behaviour, and the 1-10 score distributions of both answers."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    names = ["win rate B", "length-controlled\nwin rate B", "position\nconsistency", "picks what it\nreads first"]
    values = [
        summary.get(k)
        for k in ("win_rate_b", "length_controlled_win_rate_b", "position_consistency", "first_position_preference")
    ]
    shown = [v if v is not None else 0 for v in values]
    bars = left.bar(names, shown, color=["#4C72B0", "#55A868", "#8172B2", "#C44E52"])
    ci = summary.get("win_rate_b_ci")
    if ci and values[0] is not None:
        left.errorbar([0], [values[0]], yerr=[[values[0] - ci[0]], [ci[1] - values[0]]], color="black", capsize=5)
    for bar, value in zip(bars, values):
        left.text(
            bar.get_x() + bar.get_width() / 2,
            (value or 0) + 0.02,
            "–" if value is None else f"{value:.0%}",
            ha="center",
            fontsize=9,
        )
    left.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    left.set_ylim(0, 1.1)
    left.set_title(f"pairwise, both orders (n = {summary.get('n')}, ties {summary.get('ties')})", fontsize=10)
    scores = summary.get("score_distribution") or {}
    for offset, (side, color) in enumerate((("a", "#4C72B0"), ("b", "#DD8452"))):
        counts = [scores.get(side, {}).get(str(s), 0) for s in range(1, 11)]
        mean = summary.get(f"mean_score_{side}")
        right.bar(
            [s + (offset - 0.5) * 0.4 for s in range(1, 11)],
            counts,
            width=0.4,
            color=color,
            label=f"{side.upper()} (mean {mean if mean is not None else '–'})",
        )
    right.set_xticks(range(1, 11))
    right.set_xlabel("score (1-10)")
    right.set_ylabel("answers")
    right.set_title("pointwise scores", fontsize=10)
    right.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def pt_benchmarks(metrics: dict, path: str | Path) -> Path:
    """Tasks x models: measured bars with 95 % CI, each task's random baseline as a dash, and the leaderboard's
    published scores as hollow markers labelled "published, not measured here" (never as bars)."""
    tasks = [
        t for t, per in metrics["tasks"].items() if all(per[m].get("value") is not None for m in metrics["models"])
    ]
    labels = metrics["models"]
    fig, ax = plt.subplots(figsize=(max(7.0, 1.05 * len(tasks) + 2.5), 4.4))
    width = 0.8 / max(len(labels), 1)
    colors = ["#8172B3", "#55A868", "#C44E52", "#4C72B0", "#DD8452"]
    for k, label in enumerate(labels):
        xs = [i - 0.4 + width * (k + 0.5) for i in range(len(tasks))]
        values = [metrics["tasks"][t][label]["value"] for t in tasks]
        cis = [metrics["tasks"][t][label].get("ci95") or [v, v] for t, v in zip(tasks, values)]
        err = [[max(v - c[0], 0) for v, c in zip(values, cis)], [max(c[1] - v, 0) for v, c in zip(values, cis)]]
        ax.bar(xs, values, width, yerr=err, capsize=2, color=colors[k % len(colors)], label=f"{label} (measured)")
    for i, t in enumerate(tasks):
        baseline = metrics["tasks"][t][labels[0]].get("baseline")
        if baseline is not None:
            ax.hlines(baseline, i - 0.45, i + 0.45, colors="grey", linestyles=":", linewidth=1.2)
    markers = ["o", "s", "^", "D"]
    for k, (model, scores) in enumerate(metrics.get("published_not_measured_here", {}).items()):
        xs = [i for i, t in enumerate(tasks) if t in scores]
        ax.scatter(xs, [scores[tasks[i]] for i in xs], marker=markers[k % 4], facecolors="none", edgecolors="black",
                   zorder=3, label=f"{model}: published, not measured here")  # fmt: skip
    ax.plot([], [], color="grey", linestyle=":", label="random baseline (NPM)")
    ax.set_xticks(range(len(tasks)), [t.replace("_", "\n", 1) for t in tasks], fontsize=7)
    ax.set_ylim(0, 105)
    ax.set_ylabel("leaderboard metric (%)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    n_items = {metrics["tasks"][t][labels[0]]["n"] for t in tasks}
    title = (
        f"Open PT LLM Leaderboard tasks, {', '.join(labels)}; n = {min(n_items)}-{max(n_items)} items per task"
        if n_items
        else "Open PT LLM Leaderboard tasks"
    )
    fig.suptitle("\n".join(textwrap.wrap(title, 110)), fontsize=9)
    return _save(fig, path)
