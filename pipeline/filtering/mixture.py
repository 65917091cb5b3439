"""A mixture of one to three components (two-piece normals and kin), fitted by EM and chosen by BIC.

Why this family: the task rows' forgetting scores form one mode that is often skewed (a task row
that resembles the safety set forgets a little more), so a symmetric Gaussian null misreads its
right shoulder as unsafe rows. A two-piece normal (a different scale left and right of the mode)
fits a skewed mode with one extra parameter, and its maximum-likelihood fit has a closed form
for the scales once the mode is fixed, so EM stays cheap and deterministic. The unsafe rows get
the same family or, when it fits them better, a normal with an exponential right side
(``NormalExp``): a tight mode and a broad plateau are one two-piece normal with suitable scales,
and a tail that starts at an edge and thins out is an exponential, which a half-normal fits
badly. BIC decides whether the second component is worth its four parameters; with none (a
clean corpus) nothing is cut. Where a cut is made, a task mode with heavier tails (a two-piece
Student t, ``TwoPieceT``) may raise it, never lower it (``thresholds.mixture``), and a second upper
component (``fit_three``), for unsafe rows in two groups, may lower it, never raise it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SQRT2PI = math.sqrt(2 * math.pi)
SQRT_HALF_PI = math.sqrt(math.pi / 2)
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


class _Deviations:
    """Weighted deviations of sorted ``xs`` from a candidate mode, from cumulative sums: O(log n) each.

    Both component fits profile their scales out for a fixed mode and need these sums at every
    candidate the mode search tries.
    """

    def __init__(self, xs: np.ndarray, w: np.ndarray) -> None:
        self.xs = xs
        self.c0, self.c1, self.c2 = np.cumsum(w), np.cumsum(w * xs), np.cumsum(w * xs * xs)
        self.n = float(self.c0[-1])
        self.cdf = self.c0 / self.n

    def at(self, mu: float) -> tuple[float, float, float]:
        """(squared deviations below ``mu``, squared deviations above it, deviations above it)."""
        c0, c1, c2 = self.c0, self.c1, self.c2
        k = int(np.searchsorted(self.xs, mu, side="left"))
        w0, w1, w2 = (c0[k - 1], c1[k - 1], c2[k - 1]) if k else (0.0, 0.0, 0.0)
        below = w2 - 2 * mu * w1 + mu * mu * w0
        above = (c2[-1] - w2) - 2 * mu * (c1[-1] - w1) + mu * mu * (c0[-1] - w0)
        linear_above = (c1[-1] - w1) - mu * (c0[-1] - w0)
        return max(float(below), 0.0), max(float(above), 0.0), max(float(linear_above), 0.0)


def fit_two_piece(xs: np.ndarray, w: np.ndarray, floor: float) -> TwoPiece:
    """Weighted maximum-likelihood two-piece normal on sorted ``xs``.

    For a fixed mode the best scales are sigma_L = S_L^(1/3) * sqrt(A / N) and likewise sigma_R,
    where S_L, S_R are the weighted squared deviations below / above the mode and
    A = S_L^(1/3) + S_R^(1/3); the log-likelihood is then -1.5 N log A + const, so the mode is
    the one that minimises A. S_L and S_R come from cumulative sums, so each candidate costs
    O(log n); a grid over the weighted quantiles, then golden-section refinement, finds it.
    """
    dev = _Deviations(xs, w)

    def cost(mu: float) -> float:
        sl, sr, _ = dev.at(mu)
        return sl ** (1 / 3) + sr ** (1 / 3)

    mu = _search_mode(xs, dev.cdf, cost)
    sl, sr, _ = dev.at(mu)
    a_ = sl ** (1 / 3) + sr ** (1 / 3)
    scale = math.sqrt(a_ / dev.n) if dev.n > 0 else 0.0
    return TwoPiece(mu, max(sl ** (1 / 3) * scale, floor), max(sr ** (1 / 3) * scale, floor))


def _search_mode(xs: np.ndarray, cdf: np.ndarray, cost: Callable[[float], float]) -> float:
    """The mode minimising ``cost``: the best of 99 weighted quantiles, refined by golden section."""
    qs = np.interp(np.linspace(0.01, 0.99, 99), cdf, xs)
    i = int(np.argmin([cost(float(q)) for q in qs]))
    lo, hi = float(qs[max(i - 1, 0)]), float(qs[min(i + 1, len(qs) - 1)])
    g = (math.sqrt(5) - 1) / 2
    for _ in range(40):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        if cost(a) < cost(b):
            hi = b
        else:
            lo = a
    return (lo + hi) / 2


@dataclass(frozen=True)
class NormalExp:
    """A normal left of the mode ``mu`` (scale ``left``) and an exponential right of it (scale ``right``).

    Why: unsafe rows that A learnt to different degrees are forgotten by different amounts, so
    their scores often start at an edge and thin out like an exponential; a half-normal puts too
    little mass near that edge, and the task component then stretches to cover it. Same number of
    parameters as ``TwoPiece``, so BIC compares the two fairly.
    """

    mu: float
    left: float
    right: float

    @property
    def _z(self) -> float:
        return SQRT_HALF_PI * self.left + self.right

    def logpdf(self, x: np.ndarray) -> np.ndarray:
        d = x - self.mu
        return np.where(d < 0, -0.5 * (d / self.left) ** 2, -d / self.right) - math.log(self._z)

    def sf(self, x: np.ndarray) -> np.ndarray:
        """P(X > x)."""
        x = np.asarray(x, dtype=np.float64)
        d = x - self.mu
        below = (self.left * SQRT2PI * (0.5 - _ndtr(np.minimum(d, 0) / self.left)) + self.right) / self._z
        above = self.right * np.exp(-np.maximum(d, 0) / self.right) / self._z
        return np.where(d < 0, below, above)


def fit_normal_exp(xs: np.ndarray, w: np.ndarray, floor: float) -> NormalExp:
    """Weighted maximum-likelihood ``NormalExp`` on sorted ``xs``.

    For a fixed mode, with S_L the weighted squared deviations below it, T_R the weighted
    deviations above it and N the total weight, the scales solve l^3 = S_L Z / (N c) and
    b^2 = T_R Z / N with Z = c l + b, c = sqrt(pi / 2). Writing Z = v^6 gives v^4 = alpha + beta v
    (alpha = c^(2/3) (S_L / N)^(1/3), beta = (T_R / N)^(1/2)), whose one positive root Newton finds;
    the cost per row is then log Z + (c l / 2 + b) / Z. The mode is searched as in ``fit_two_piece``.
    """
    dev = _Deviations(xs, w)
    n = dev.n

    def scales(mu: float) -> tuple[float, float, float]:
        sl, _, tr = dev.at(mu)
        alpha, beta = SQRT_HALF_PI ** (2 / 3) * (sl / n) ** (1 / 3), math.sqrt(tr / n)
        v = alpha ** 0.25 + beta ** (1 / 3)  # f(v) = v^4 - beta v - alpha >= 0 here, and f is convex
        for _ in range(60):
            step = (v**4 - beta * v - alpha) / (4 * v**3 - beta) if v > 0 else 0.0
            v -= step
            if abs(step) <= 1e-12 * v:
                break
        z = v**6
        return (sl * z / (n * SQRT_HALF_PI)) ** (1 / 3), math.sqrt(tr * z / n), z

    def cost(mu: float) -> float:
        left, right, z = scales(mu)
        return math.log(z) + (SQRT_HALF_PI * left / 2 + right) / z if z > 0 else math.inf

    mu = _search_mode(xs, dev.cdf, cost)
    left, right, _ = scales(mu)
    return NormalExp(mu, max(left, floor), max(right, floor))


T_DOF = 4
"""Degrees of freedom of ``TwoPieceT``: tails far heavier than a normal's (a row 6 scales out is ~10^5 times
likelier), as t(3)-t(5), Laplace and lognormal task modes have, yet a finite variance; and with 4 the t's CDF
has a closed form, so the expected-F1 cut costs no numerical integration."""
_T_LOG_NORM = math.lgamma((T_DOF + 1) / 2) - math.lgamma(T_DOF / 2) - 0.5 * math.log(T_DOF * math.pi)


def _t4_cdf(z: np.ndarray) -> np.ndarray:
    """The standard Student t CDF with 4 degrees of freedom (closed form)."""
    a = z * z / 4
    return 0.5 + 0.375 * z / np.sqrt(1 + a) * (1 - a / (1 + a) / 3)


@dataclass(frozen=True)
class TwoPieceT:
    """A two-piece Student t (``T_DOF``): mode ``mu``, scale ``left`` below it and ``right`` above it.

    Why: a task mode whose tails are heavier than a normal's (Student t, Laplace, lognormal) puts a
    few task rows far out; a two-piece normal task then hands them to the upper component, whose
    edge, and so the cut, lands in the task's tail (precision 0.6-0.8 on such sets). It only ever
    raises a cut the two-piece normal made (``thresholds.mixture``): as the one-mode model it also
    absorbs small unsafe components, and as a free alternative it let closer upper components win
    on real runs (both in benchmarks/RESULTS.md).
    """

    mu: float
    left: float
    right: float

    def logpdf(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mu) / np.where(x < self.mu, self.left, self.right)
        return math.log(2 / (self.left + self.right)) + (_T_LOG_NORM - (T_DOF + 1) / 2 * np.log1p(z * z / T_DOF))

    def sf(self, x: np.ndarray) -> np.ndarray:
        """P(X > x)."""
        x = np.asarray(x, dtype=np.float64)
        total = self.left + self.right
        below = 1 - 2 * self.left / total * _t4_cdf((x - self.mu) / self.left)
        above = 2 * self.right / total * (1 - _t4_cdf((x - self.mu) / self.right))
        return np.where(x < self.mu, below, above)


def step_two_piece_t(xs: np.ndarray, w: np.ndarray, c: TwoPiece | TwoPieceT, floor: float) -> TwoPieceT:
    """One ECM step for a weighted ``TwoPieceT`` on sorted ``xs``, from the component ``c``.

    A t is a normal whose precision varies by row: with each row's expected precision weight
    u = (nu + 1) / (nu + z^2) at the current fit (z its deviation in scales), the mode and scales
    are the two-piece normal's closed form on the deviations weighted by w * u, the scales
    normalised by the rows' total weight w. One step never lowers the likelihood, so EM can take
    one per iteration (a generalised EM) instead of fitting the t to convergence each time.
    """
    z = (xs - c.mu) / np.where(xs < c.mu, c.left, c.right)
    dev = _Deviations(xs, w * ((T_DOF + 1) / (T_DOF + z * z)))

    def cost(mu: float) -> float:
        sl, sr, _ = dev.at(mu)
        return sl ** (1 / 3) + sr ** (1 / 3)

    mu = _search_mode(xs, dev.cdf, cost)
    sl, sr, _ = dev.at(mu)
    n = float(w.sum())
    scale = math.sqrt((sl ** (1 / 3) + sr ** (1 / 3)) / n) if n > 0 else 0.0
    return TwoPieceT(mu, max(sl ** (1 / 3) * scale, floor), max(sr ** (1 / 3) * scale, floor))


Component = TwoPiece | TwoPieceT | NormalExp
"""A fitted component: its mode ``mu``, ``logpdf`` and tail ``sf``."""


@dataclass(frozen=True)
class MixtureFit:
    """Weights and components, lower mode first; ``loglik`` and ``bic`` on the fitted points."""

    weights: tuple[float, ...]
    components: tuple[Component, ...]
    loglik: float
    n: int

    @property
    def n_params(self) -> int:
        return 4 * len(self.components) - 1

    @property
    def bic(self) -> float:
        return -2 * self.loglik + self.n_params * math.log(self.n)


def _loglik(xs: np.ndarray, weights: np.ndarray, comps: list[Component]) -> tuple[float, np.ndarray]:
    logp = np.stack([math.log(max(wk, 1e-300)) + c.logpdf(xs) for wk, c in zip(weights, comps)], axis=1)
    top = logp.max(axis=1, keepdims=True)
    ll_rows = top[:, 0] + np.log(np.exp(logp - top).sum(axis=1))
    return float(ll_rows.sum()), np.exp(logp - ll_rows[:, None])


def fit_one(xs: np.ndarray, floor: float) -> MixtureFit:
    """A single two-piece normal: the model of a corpus with no unsafe rows."""
    c = fit_two_piece(xs, np.ones(len(xs)), floor)
    ll, _ = _loglik(xs, np.array([1.0]), [c])
    return MixtureFit((1.0,), (c,), ll, len(xs))


def fit_upper(xs: np.ndarray, w: np.ndarray, floor: float) -> TwoPiece | NormalExp:
    """The upper (unsafe) component: whichever family fits the weighted rows more likely."""
    fits = [f(xs, w, floor) for f in (fit_two_piece, fit_normal_exp)]
    return max(fits, key=lambda c: float(np.sum(w * c.logpdf(xs))))


START_QUANTILES = (0.4, 0.6, 0.75, 0.9, 0.97)
"""Where the EM starts split the sorted scores: from a small upper tail (a few % unsafe) to a
majority (unsafe as the taller peak)."""


def em(xs: np.ndarray, resp: np.ndarray, floor: float, iterations: int = 300, tol: float = 1e-7,
       heavy_task: bool = False) -> MixtureFit | None:
    """EM for a task component (column 0) and upper components (``fit_upper``, the other columns) on sorted ``xs``
    from starting responsibilities ``resp`` (rows x components); None where a component ends with fewer than two rows.

    The task component is a two-piece normal, or with ``heavy_task`` a ``TwoPieceT`` (one ECM step per
    iteration, from the two-piece normal at the start); a t task must stay the lower component, else None.
    """
    n = len(xs)
    prev = -math.inf
    task: TwoPiece | TwoPieceT | None = None
    for _ in range(iterations):
        nk = resp.sum(axis=0)
        if nk.min() < 2:
            return None
        weights = nk / n
        if heavy_task:
            task = step_two_piece_t(xs, resp[:, 0], task or fit_two_piece(xs, resp[:, 0], floor), floor)
        else:
            task = fit_two_piece(xs, resp[:, 0], floor)
        comps = [task, *(fit_upper(xs, resp[:, k], floor) for k in range(1, resp.shape[1]))]
        ll, resp = _loglik(xs, weights, comps)
        if ll - prev < tol * abs(ll):
            break
        prev = ll
    if resp.sum(axis=0).min() < 2 or (heavy_task and comps[1].mu < comps[0].mu):
        return None
    order = sorted(range(len(comps)), key=lambda j: comps[j].mu)
    return MixtureFit(tuple(float(weights[j]) for j in order), tuple(comps[j] for j in order), ll, n)


def fit_two(xs: np.ndarray, floor: float, heavy_task: bool = False) -> list[MixtureFit]:
    """``em`` from each of ``START_QUANTILES``: the rows below the quantile start as the task's, the rest as the upper
    component's; the task a two-piece normal, or with ``heavy_task`` a two-piece t (``TwoPieceT``).

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
        fit = em(xs, resp, floor, heavy_task=heavy_task)
        if fit is not None:
            fits.append(fit)
    return fits


def fit_three(xs: np.ndarray, floor: float, starts: list[tuple[float, float]]) -> list[MixtureFit]:
    """``em`` for a task mode and two upper components from each start (a, b): the sorted rows below quantile a
    start as the task's, those between a and b as the middle component's, the rest as the top one's.

    Why: where the unsafe rows form two groups (two reply styles forgotten to different degrees, a near peak
    and a far tail), the one upper component of ``fit_two`` fits the far group and leaves the near one with the
    task rows; a third component can fit it (``thresholds.mixture`` decides whose it is).
    """
    n, fits = len(xs), []
    for a, b in starts:
        i, j = int(a * n), int(b * n)
        if min(i, j - i, n - j) < 2:
            continue
        resp = np.zeros((n, 3))
        resp[:i, 0], resp[i:j, 1], resp[j:, 2] = 1.0, 1.0, 1.0
        fit = em(xs, resp, floor)
        if fit is not None:
            fits.append(fit)
    return fits


@dataclass(frozen=True)
class Group:
    """Components of a fit taken as one, their weights renormalised (``group``): the mode ``mu`` of the first,
    and the tail ``sf``, all that ``thresholds.expected_f1_cut`` reads of a component."""

    mu: float
    parts: tuple[tuple[float, Component], ...]

    def sf(self, x: np.ndarray) -> np.ndarray:
        """P(X > x)."""
        total = sum(w for w, _ in self.parts)
        return sum(w / total * c.sf(x) for w, c in self.parts)


def group(m: MixtureFit, upper: tuple[int, ...]) -> MixtureFit:
    """``m`` as a two-component fit: the components ``upper`` as one upper component, the others as the task's."""
    def joined(ks: list[int]) -> Group:
        return Group(m.components[ks[0]].mu, tuple((m.weights[k], m.components[k]) for k in ks))

    task = [k for k in range(len(m.components)) if k not in upper]
    p1 = sum(m.weights[k] for k in upper)
    return MixtureFit((1 - p1, p1), (joined(task), joined(list(upper))), m.loglik, m.n)  # type: ignore[arg-type]


def sample_sorted(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """Finite scores ``x``, sorted; a seeded sample of ``MAX_POINTS`` when there are more."""
    if len(x) > MAX_POINTS:
        x = np.random.default_rng(seed).choice(x, MAX_POINTS, replace=False)
    return np.sort(x)
