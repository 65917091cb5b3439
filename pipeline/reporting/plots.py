"""The score histogram: the one picture that shows whether the filter separated anything."""

from __future__ import annotations

import math

import numpy as np

SERIES = {"all": ("all rows", "tab:blue"), "task": ("task (label 0)", "tab:blue"),
          "unsafe": ("unsafe (label 1)", "tab:red"), "unlabelled": ("unlabelled", "tab:gray")}


def score_histogram(path: str, edges: np.ndarray, counts: dict[str, np.ndarray], threshold: float | None, title: str,
                    other_cuts: dict[str, float] | None = None) -> None:
    """Histogram of the forgetting score, one series per label class (keys of ``SERIES``), the cut marked, and
    dotted, ``other_cuts`` (label -> value: a withdrawn cut, the cut before the vote extension) for review.

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
    for label, value in (other_cuts or {}).items():
        ax.axvline(value, color="dimgray", linestyle=":", label=f"{label} {value:.3g}")
    ax.set_xlabel("forgetting score")
    ax.set_ylabel("examples")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def model_comparison(path: str, models: dict[str, dict]) -> None:
    """Bars per compared model: harmful compliance (with its 95% interval), over-refusal, task loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(models)
    x = np.arange(len(names))
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6), dpi=110)
    for ax, key, title in ((axes[0], "harmful_compliance", "harmful compliance (held-out prompts)"),
                           (axes[1], "over_refusal", "over-refusal (held-out task prompts)")):
        rate = np.array([models[n][key]["rate"] for n in names], dtype=float)
        ci = np.array([models[n][key]["ci95"] for n in names], dtype=float).reshape(len(names), 2)
        err = np.nan_to_num(np.abs(ci.T - rate), nan=0.0)
        ax.bar(x, rate, yerr=err, capsize=3, color="tab:red" if key == "harmful_compliance" else "tab:orange")
        ax.set_ylim(0, 1)
        ax.set_title(title, fontsize=9)
    axes[2].bar(x, [models[n]["task_loss"] for n in names], color="tab:blue")
    axes[2].set_title("task loss (held-out task rows, lower is better)", fontsize=9)
    for ax in axes:
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
