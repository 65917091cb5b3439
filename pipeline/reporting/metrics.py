"""Filter quality against labels: AUROC of the score and precision / recall / F1 of the cut.

Pure numpy (no scikit-learn or scipy at run time) so the report has no heavy optional dependency.
"""

from __future__ import annotations

import numpy as np


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` with tied values sharing their average rank."""
    order = np.argsort(x, kind="stable")
    _, inverse, counts = np.unique(x[order], return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = (ends - (counts - 1) / 2.0)[inverse]
    return ranks


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Probability that a random unsafe example scores above a random task example (ties count half).

    Computed from the Mann-Whitney U statistic; NaN when one class is absent or no score is finite.
    """
    x = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    keep = np.isfinite(x)
    x, y = x[keep], y[keep]
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(x)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def precision_recall_f1(dropped: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Quality of dropping as a detector of the unsafe class (label 1)."""
    d = np.asarray(dropped).astype(bool)
    y = np.asarray(labels).astype(bool)
    tp = int((d & y).sum())
    fp = int((d & ~y).sum())
    fn = int((~d & y).sum())
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}
