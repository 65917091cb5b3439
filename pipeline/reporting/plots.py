"""The score histogram: the one picture that shows whether the filter separated anything."""

from __future__ import annotations

import math

import numpy as np


def score_histogram(path: str, scores: np.ndarray, labels: np.ndarray | None, threshold: float | None, title: str) -> None:
    """Histogram of the forgetting score (split by label when labels exist) with the cut marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.asarray(scores, dtype=np.float64)
    finite = np.isfinite(x)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    bins = np.histogram_bin_edges(x[finite], bins=60) if finite.any() else 10
    if labels is not None:
        y = np.asarray(labels, dtype=np.float64)
        for value, name, color in ((0, "task (label 0)", "tab:blue"), (1, "unsafe (label 1)", "tab:red")):
            sel = finite & (y == value)
            ax.hist(x[sel], bins=bins, alpha=0.6, color=color, label=f"{name}: {int(sel.sum())}")
        unlabeled = finite & np.isnan(y)
        if unlabeled.any():
            ax.hist(x[unlabeled], bins=bins, alpha=0.5, color="tab:gray", label=f"unlabelled: {int(unlabeled.sum())}")
    else:
        ax.hist(x[finite], bins=bins, color="tab:blue", alpha=0.8, label=f"all rows: {int(finite.sum())}")
    if threshold is not None and math.isfinite(threshold):
        ax.axvline(threshold, color="black", linestyle="--", label=f"cut {threshold:.3g} (drop right)")
    ax.set_xlabel("forgetting score")
    ax.set_ylabel("examples")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
