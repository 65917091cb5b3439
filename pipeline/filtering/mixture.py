"""A one- or two-component mixture of two-piece normals, fitted by EM and chosen by BIC.

Why this family: the task rows' forgetting scores form one mode that is often skewed (a task row
that resembles the safety set forgets a little more), so a symmetric Gaussian null misreads its
right shoulder as unsafe rows. A two-piece normal (a different scale left and right of the mode)
fits a skewed mode with one extra parameter, and its maximum-likelihood fit has a closed form
for the scales once the mode is fixed, so EM stays cheap and deterministic. The unsafe rows get
the same family: a tight mode, a broad plateau and a long tail are all one two-piece normal with
suitable scales. BIC decides whether the second component is worth its four parameters; with
none (a clean corpus) nothing is cut.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SQRT2PI = math.sqrt(2 * math.pi)
_ndtr = np.vectorize(lambda z: 0.5 * math.erfc(-z / math.sqrt(2)), otypes=[np.float64])
"""The standard normal CDF (numpy has no erf; only ever called on a grid of cut candidates)."""
MAX_POINTS = 20_000
"""EM runs on at most this many scores (a seeded sample): the fit's error is far below the cut's."""


@dataclass(frozen=True)
class TwoPiece:
    """A two-piece normal: mode ``mu``, scale ``left`` below it and ``right`` above it."""

    mu: float
    left: float
    right: float

    def logpdf(self, x: np.ndarray) -> np.ndarray:
        s = np.where(x < self.mu, self.left, self.right)
        return -0.5 * ((x - self.mu) / s) ** 2 + math.log(2 / (SQRT2PI * (self.left + self.right)))

    def sf(self, x: np.ndarray) -> np.ndarray:
        """P(X > x)."""
        x = np.asarray(x, dtype=np.float64)
        total = self.left + self.right
        below = 1 - 2 * self.left / total * _ndtr((x - self.mu) / self.left)
        above = 2 * self.right / total * (1 - _ndtr((x - self.mu) / self.right))
        return np.where(x < self.mu, below, above)


def fit_two_piece(xs: np.ndarray, w: np.ndarray, floor: float) -> TwoPiece:
    """Weighted maximum-likelihood two-piece normal on sorted ``xs``.

    For a fixed mode the best scales are sigma_L = S_L^(1/3) * sqrt(A / N) and likewise sigma_R,
    where S_L, S_R are the weighted squared deviations below / above the mode and
    A = S_L^(1/3) + S_R^(1/3); the log-likelihood is then -1.5 N log A + const, so the mode is
    the one that minimises A. S_L and S_R come from cumulative sums, so each candidate costs
    O(log n); a grid over the weighted quantiles, then golden-section refinement, finds it.
    """
    c0, c1, c2 = np.cumsum(w), np.cumsum(w * xs), np.cumsum(w * xs * xs)
    n = float(c0[-1])

    def sums(mu: float) -> tuple[float, float]:
        k = int(np.searchsorted(xs, mu, side="left"))
        w0, w1, w2 = (c0[k - 1], c1[k - 1], c2[k - 1]) if k else (0.0, 0.0, 0.0)
        left = w2 - 2 * mu * w1 + mu * mu * w0
        right = (c2[-1] - w2) - 2 * mu * (c1[-1] - w1) + mu * mu * (c0[-1] - w0)
        return max(float(left), 0.0), max(float(right), 0.0)

    def cost(mu: float) -> float:
        sl, sr = sums(mu)
        return sl ** (1 / 3) + sr ** (1 / 3)

    qs = np.interp(np.linspace(0.01, 0.99, 99), c0 / n, xs)
    costs = [cost(float(q)) for q in qs]
    i = int(np.argmin(costs))
    lo, hi = float(qs[max(i - 1, 0)]), float(qs[min(i + 1, len(qs) - 1)])
    g = (math.sqrt(5) - 1) / 2
    for _ in range(40):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        if cost(a) < cost(b):
            hi = b
        else:
            lo = a
    mu = (lo + hi) / 2
    sl, sr = sums(mu)
    a_ = sl ** (1 / 3) + sr ** (1 / 3)
    scale = math.sqrt(a_ / n) if n > 0 else 0.0
    return TwoPiece(mu, max(sl ** (1 / 3) * scale, floor), max(sr ** (1 / 3) * scale, floor))


@dataclass(frozen=True)
class MixtureFit:
    """Weights and components, lower mode first; ``loglik`` and ``bic`` on the fitted points."""

    weights: tuple[float, ...]
    components: tuple[TwoPiece, ...]
    loglik: float
    n: int

    @property
    def n_params(self) -> int:
        return 4 * len(self.components) - 1

    @property
    def bic(self) -> float:
        return -2 * self.loglik + self.n_params * math.log(self.n)


def _loglik(xs: np.ndarray, weights: np.ndarray, comps: list[TwoPiece]) -> tuple[float, np.ndarray]:
    logp = np.stack([math.log(max(wk, 1e-300)) + c.logpdf(xs) for wk, c in zip(weights, comps)], axis=1)
    top = logp.max(axis=1, keepdims=True)
    ll_rows = top[:, 0] + np.log(np.exp(logp - top).sum(axis=1))
    return float(ll_rows.sum()), np.exp(logp - ll_rows[:, None])


def fit_one(xs: np.ndarray, floor: float) -> MixtureFit:
    """A single two-piece normal: the model of a corpus with no unsafe rows."""
    c = fit_two_piece(xs, np.ones(len(xs)), floor)
    ll, _ = _loglik(xs, np.array([1.0]), [c])
    return MixtureFit((1.0,), (c,), ll, len(xs))


START_QUANTILES = (0.4, 0.6, 0.75, 0.9, 0.97)
"""Where the EM starts split the sorted scores: from a small upper tail (a few % unsafe) to a
majority (unsafe as the taller peak)."""


def fit_two(xs: np.ndarray, floor: float, iterations: int = 300, tol: float = 1e-7) -> list[MixtureFit]:
    """EM for two two-piece normals on sorted ``xs``, from each of ``START_QUANTILES``.

    Every local optimum is returned (lower mode first), not only the most likely: with a
    heavy-tailed task mode the likeliest pair can be a narrow and a broad component on the same
    mode, and the caller wants the likeliest pair that is a task mode *and a separate upper one*.
    """
    n = len(xs)
    fits = []
    for q in START_QUANTILES:
        split = int(q * n)
        if min(split, n - split) < 2:
            continue
        resp = np.zeros((n, 2))
        resp[:split, 0], resp[split:, 1] = 1.0, 1.0
        prev = -math.inf
        for _ in range(iterations):
            nk = resp.sum(axis=0)
            if nk.min() < 2:
                break
            weights = nk / n
            comps = [fit_two_piece(xs, resp[:, j], floor) for j in range(2)]
            ll, resp = _loglik(xs, weights, comps)
            if ll - prev < tol * abs(ll):
                break
            prev = ll
        if resp.sum(axis=0).min() < 2:
            continue
        order = sorted(range(2), key=lambda j: comps[j].mu)
        fits.append(MixtureFit(tuple(float(weights[j]) for j in order), tuple(comps[j] for j in order), ll, n))
    return fits


def sample_sorted(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """Finite scores ``x``, sorted; a seeded sample of ``MAX_POINTS`` when there are more."""
    if len(x) > MAX_POINTS:
        x = np.random.default_rng(seed).choice(x, MAX_POINTS, replace=False)
    return np.sort(x)
