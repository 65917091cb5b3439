"""Summary statistics of a score column in one pass per shard, with memory that does not grow with rows.

Why: the report runs on the driver, and a nightly corpus has 100M rows. Count, mean, standard
deviation, minimum and maximum are exact running sums; quantiles come from a fixed histogram of
``QUANTILE_BINS`` bins over [min, max] (a second pass), so each lies within one bin width,
(max - min) / ``QUANTILE_BINS``, of the rows around it; the plot's 60-bin histogram is exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

QUANTILE_BINS = 1 << 16
QUANTILES = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


@dataclass
class Moments:
    """Running count, sum, sum of squares, min and max of the finite values seen."""

    n: int = 0
    total: float = 0.0
    squares: float = 0.0
    lo: float = np.inf
    hi: float = -np.inf

    def add(self, x: np.ndarray) -> None:
        x = x[np.isfinite(x)]
        if not len(x):
            return
        self.n += len(x)
        self.total += float(x.sum())
        self.squares += float(np.square(x).sum())
        self.lo, self.hi = min(self.lo, float(x.min())), max(self.hi, float(x.max()))

    @property
    def mean(self) -> float:
        return self.total / self.n

    @property
    def std(self) -> float:
        return float(np.sqrt(max(0.0, self.squares / self.n - self.mean**2)))


@dataclass
class Histogram:
    """Counts of finite values in ``bins`` equal bins over [lo, hi] (the top edge belongs to the last bin)."""

    lo: float
    hi: float
    bins: int
    counts: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.counts = np.zeros(self.bins, dtype=np.int64)

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(self.lo, self.hi, self.bins + 1)

    def add(self, x: np.ndarray) -> None:
        x = x[np.isfinite(x)]
        if len(x):
            self.counts += np.histogram(x, bins=self.bins, range=(self.lo, self.hi) if self.hi > self.lo else (self.lo, self.lo + 1))[0]

    def quantiles(self, qs: tuple[float, ...] = QUANTILES) -> np.ndarray:
        """Quantiles by linear interpolation inside the bin that holds each one."""
        cum = np.concatenate([[0], np.cumsum(self.counts)])
        targets = np.asarray(qs) * cum[-1]
        i = np.clip(np.searchsorted(cum, targets, side="left") - 1, 0, self.bins - 1)
        inside = np.divide(targets - cum[i], self.counts[i], out=np.zeros(len(qs)), where=self.counts[i] > 0)
        edges = self.edges
        return edges[i] + np.clip(inside, 0, 1) * (edges[i + 1] - edges[i])


def stats(moments: Moments, hist: Histogram | None) -> dict[str, float]:
    """The report's summary of one column; empty when no value was finite."""
    if not moments.n:
        return {}
    out = {"mean": moments.mean, "std": moments.std, "min": moments.lo, "max": moments.hi}
    if hist is not None:
        out |= {f"p{round(q * 100)}": float(v) for q, v in zip(QUANTILES, hist.quantiles())}
    return out
