"""The score histogram: the one picture that shows whether the filter separated anything."""

from __future__ import annotations

import math

import numpy as np

SERIES = {"all": ("all rows", "tab:blue"), "task": ("task (label 0)", "tab:blue"),
          "unsafe": ("unsafe (label 1)", "tab:red"), "unlabelled": ("unlabelled", "tab:gray")}


def score_histogram(path: str, edges: np.ndarray, counts: dict[str, np.ndarray], threshold: float | None, title: str) -> None:
    """Histogram of the forgetting score, one series per label class (keys of ``SERIES``), the cut marked.

    Takes counts over ``edges`` rather than the scores, so the report never holds a score per row.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for key, c in counts.items():
        if key in ("all", "task", "unsafe") or c.sum():
            name, color = SERIES[key]
            ax.stairs(c, edges, fill=True, alpha=0.6, color=color, label=f"{name}: {int(c.sum())}")
    if threshold is not None and math.isfinite(threshold):
        ax.axvline(threshold, color="black", linestyle="--", label=f"cut {threshold:.3g} (drop right)")
    ax.set_xlabel("forgetting score")
    ax.set_ylabel("examples")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
