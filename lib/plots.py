"""Figures saved as PNG under results/; notebooks display the saved file, so what you see is what is committed."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless-safe (papermill, CI); notebooks show the saved PNG
import matplotlib.pyplot as plt  # noqa: E402


def token_length_histograms(lengths_by_split: dict[str, list[int]], max_length: int, path: str | Path,
                            title: str) -> Path:
    """One histogram per split with the `max_length` cut-off marked."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def translation_quality(report: dict, path: str | Path) -> Path:
    """Attempts per record, and the PT/EN length ratio per field with the outlier bounds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
