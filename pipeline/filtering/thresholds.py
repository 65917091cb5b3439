"""Thresholds on the forgetting score: fixed, by drop fraction, or found from the scores alone.

A nightly job cannot have a person pick the cut every night, so the automatic rules must also be
safe on a clean corpus: when the scores show no separate high-forgetting mode they drop nothing
rather than cutting a single mode in half.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from pipeline.filtering import mixture as mx

ASHMAN_D_MIN = 2.0
"""Two Gaussian modes count as separate when Ashman's D exceeds 2 (the usual bar for a clean split)."""


@dataclass(frozen=True)
class Threshold:
    """A cut on the score: rows with ``score > value`` are dropped. ``rationale`` is for the report.

    ``evidence`` holds the numbers behind an automatic cut (estimated unsafe share, expected false
    drops...) for the report and summary.json. ``ties_to_drop`` rows scored exactly ``value`` are
    dropped too: those whose example id is ``>= tie_id`` (set by the filter stage, see
    ``break_ties``), so a drop fraction is met exactly when scores tie. ``score`` names the score the
    cut is on when it is not ``scoring.method`` (a ``fall_back`` cut); None for the filter's own score.
    """

    value: float
    method: str
    rationale: str
    evidence: dict[str, float | int] = field(default_factory=dict)
    ties_to_drop: int = 0
    tie_id: str | None = None
    score: str | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-safe: an infinite cut (drop nothing) is written as null."""
        d = asdict(self)
        d["value"] = self.value if math.isfinite(self.value) else None
        return d


def robust_spread(x: np.ndarray) -> float:
    """The smaller of the standard deviation and IQR / 1.34: set by the (narrow) task mode, not by a
    wide unsafe mode or outliers."""
    iqr = float(np.subtract(*np.percentile(x, [75, 25])))
    return min(float(np.std(x)), iqr / 1.34) or float(np.std(x))


def _finite(scores: np.ndarray) -> np.ndarray:
    x = np.asarray(scores, dtype=np.float64)
    return x[np.isfinite(x)]


def fixed(value: float) -> Threshold:
    """A user-chosen cut, as in the paper."""
    return Threshold(float(value), "fixed", f"fixed threshold {value:g} set in the config")


def drop_fraction(scores: np.ndarray, fraction: float) -> Threshold:
    """The cut that drops exactly ``floor(fraction * n)`` of the n rows with a finite score, highest first.

    When the boundary falls inside a run of tied scores, ``ties_to_drop`` says how many of the rows
    at ``value`` drop too; the filter stage picks them by example id (``break_ties``), so the count
    is exact and the choice is the same on every re-run. Rows without a finite score are not
    counted: they go to dropped/ in addition (an unscorable row is not trusted).
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"drop fraction must lie in [0, 1], got {fraction}")
    x = np.sort(_finite(scores))[::-1]
    unscorable = len(np.asarray(scores)) - len(x)
    n_drop = int(math.floor(fraction * len(x) + 1e-9))
    extra = f"; the {unscorable} rows without a score drop as well" if unscorable else ""
    if n_drop == 0:
        return Threshold(math.inf, "drop_fraction", f"drop fraction {fraction:g}: no row to drop{extra}")
    why = f"drops the top {fraction:.1%} of scores ({n_drop} of {len(x)} rows{extra})"
    v = float(x[n_drop - 1])
    n_above, n_tied = int(np.sum(x > v)), int(np.sum(x == v))
    if n_above + n_tied == n_drop:
        # Dropping is "score > value": cut just below the n_drop-th largest score.
        return Threshold(float(np.nextafter(v, -np.inf)), "drop_fraction", why)
    k = n_drop - n_above
    return Threshold(v, "drop_fraction", f"{why}; {k} of the {n_tied} rows tied at {v:.6g} drop, by example id",
                     ties_to_drop=k)


def break_ties(ids: list[str], k: int) -> str:
    """The smallest id among the ``k`` largest: rows tied at the cut with ``id >= it`` are dropped.

    Ids are unique, so exactly ``k`` rows qualify, and sorting makes it independent of the order
    the shards are read in.
    """
    if not 0 < k <= len(ids):
        raise ValueError(f"cannot drop {k} of {len(ids)} tied rows")
    return sorted(ids)[-k]


def otsu_cut(x: np.ndarray, bins: int = 256) -> float:
    """Otsu's cut: the split of the histogram that maximises between-class variance."""
    hist, edges = np.histogram(x, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(edges[int(np.argmax(between[:-1])) + 1])


def otsu(scores: np.ndarray) -> Threshold:
    """Otsu's cut, applied only when a two-Gaussian fit finds a separate upper mode.

    Otsu always splits, even a single mode, so the mixture fit decides *whether* to cut (Ashman's
    D >= 2) and Otsu decides *where*: unlike the Gaussian crossing, Otsu's cut is not pulled
    towards a narrow, skewed task mode.
    """
    x = _finite(scores)
    if len(x) < 4 or x.min() == x.max():
        return Threshold(math.inf, "otsu", "too few distinct scores to find two modes: nothing dropped")
    d = fit_mixture(x).ashman_d
    if d < ASHMAN_D_MIN:
        return Threshold(math.inf, "otsu", f"no separate high-forgetting mode (Ashman's D = {d:.2f} < "
                         f"{ASHMAN_D_MIN:g}): nothing dropped")
    value = otsu_cut(x)
    return Threshold(value, "otsu", f"two modes (Ashman's D = {d:.2f}); Otsu split of the score histogram at {value:.4g}")


@dataclass(frozen=True)
class Mixture:
    """A two-component 1-D Gaussian mixture; component 1 has the larger mean."""

    weights: tuple[float, float]
    means: tuple[float, float]
    stds: tuple[float, float]

    @property
    def ashman_d(self) -> float:
        """Separation of the two modes in pooled standard deviations (Ashman et al. 1994)."""
        s0, s1 = self.stds
        return math.sqrt(2.0) * abs(self.means[1] - self.means[0]) / math.sqrt(s0**2 + s1**2)


def fit_mixture(scores: np.ndarray, iterations: int = 300, tol: float = 1e-9) -> Mixture:
    """Fit two Gaussians by EM, started from the lower and upper quartiles (deterministic)."""
    x = _finite(scores)
    if len(x) < 4:
        raise ValueError("need at least 4 finite scores to fit a mixture")
    spread = float(np.std(x)) or 1.0
    floor = 1e-3 * spread
    mu = np.array([np.quantile(x, 0.25), np.quantile(x, 0.75)])
    sd = np.array([spread, spread]) / 2
    w = np.array([0.5, 0.5])
    prev = -math.inf
    for _ in range(iterations):
        logp = -0.5 * ((x[:, None] - mu) / sd) ** 2 - np.log(sd) + np.log(w)
        top = logp.max(axis=1, keepdims=True)
        ll = float(np.sum(top[:, 0] + np.log(np.exp(logp - top).sum(axis=1))))
        resp = np.exp(logp - top)
        resp /= resp.sum(axis=1, keepdims=True)
        nk = resp.sum(axis=0) + 1e-12
        w = nk / len(x)
        mu = (resp * x[:, None]).sum(axis=0) / nk
        sd = np.sqrt((resp * (x[:, None] - mu) ** 2).sum(axis=0) / nk)
        sd = np.maximum(sd, floor)
        if ll - prev < tol * abs(ll):
            break
        prev = ll
    order = np.argsort(mu)
    return Mixture(tuple(w[order]), tuple(mu[order]), tuple(sd[order]))  # type: ignore[arg-type]


def mixture_crossing(m: Mixture) -> float:
    """The score between the two means where both components are equally likely."""
    (w0, w1), (m0, m1), (s0, s1) = m.weights, m.means, m.stds
    # Solve w0 N(x; m0, s0) = w1 N(x; m1, s1): a quadratic a x^2 + b x + c = 0.
    a = 1 / (2 * s1**2) - 1 / (2 * s0**2)
    b = m0 / s0**2 - m1 / s1**2
    c = m1**2 / (2 * s1**2) - m0**2 / (2 * s0**2) + math.log((w0 * s1) / (w1 * s0))
    if abs(a) < 1e-12:
        roots = [-c / b]
    else:
        disc = b * b - 4 * a * c
        if disc < 0:
            return (m0 + m1) / 2
        r = math.sqrt(disc)
        roots = [(-b - r) / (2 * a), (-b + r) / (2 * a)]
    between = [r for r in roots if m0 <= r <= m1]
    return float(between[0]) if between else (m0 + m1) / 2


def gmm(scores: np.ndarray) -> Threshold:
    """Cut where a two-Gaussian fit says "unsafe" becomes more likely than "task".

    Refuses to cut (drops nothing) when the fitted modes are not separate (Ashman's D below 2),
    which is what a corpus with no unsafe content looks like.
    """
    x = _finite(scores)
    if len(x) < 4 or x.min() == x.max():
        return Threshold(math.inf, "gmm", "too few distinct scores to fit two modes: nothing dropped")
    m = fit_mixture(x)
    d = m.ashman_d
    if d < ASHMAN_D_MIN:
        return Threshold(
            math.inf,
            "gmm",
            f"no separate high-forgetting mode (Ashman's D = {d:.2f} < {ASHMAN_D_MIN:g}): nothing dropped",
        )
    value = mixture_crossing(m)
    return Threshold(
        value,
        "gmm",
        f"two-Gaussian fit: modes at {m.means[0]:.3g} and {m.means[1]:.3g} "
        f"(weights {m.weights[0]:.2f}/{m.weights[1]:.2f}, Ashman's D = {d:.2f}); cut at their crossing {value:.4g}",
    )


def best_f1(scores: np.ndarray, labels: np.ndarray) -> Threshold:
    """The cut with the best F1 for the unsafe class, chosen with the labels (hindsight or calibration)."""
    x = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    keep = np.isfinite(x)
    x, y = x[keep], y[keep]
    if y.sum() == 0:
        return Threshold(math.inf, "best_f1", "no unsafe label: nothing to calibrate on")
    order = np.argsort(-x, kind="stable")
    xs, ys = x[order], y[order]
    tp = np.cumsum(ys)
    k = np.arange(1, len(xs) + 1)
    f1 = 2 * tp / (k + y.sum())
    # Only cut between distinct scores.
    distinct = np.append(xs[1:] != xs[:-1], True)
    f1 = np.where(distinct, f1, -1)
    i = int(np.argmax(f1))
    value = float(xs[i + 1]) if i + 1 < len(xs) else float(np.nextafter(xs[i], -np.inf))
    value = float((xs[i] + value) / 2) if i + 1 < len(xs) else value
    return Threshold(value, "best_f1", f"best F1 on labels ({f1[i]:.3f}) at {value:.4g}")


VALLEY_DEPTH = 0.5
"""A valley separates two modes when the density there is at most half the upper mode's peak."""
VALLEY_MIN_MASS = 0.005
"""...and at least this fraction of rows (0.5%) lies above it: a few outliers are not a mode."""
VALLEY_Z = 3.0
"""...and the upper mode holds 3 Poisson standard deviations more rows than a flat density would."""
GRID = 2048


def bandwidth(x: np.ndarray) -> float:
    """Silverman's rule of thumb on the *robust* spread (min of std and IQR/1.34): the narrow task mode sets it,
    so a separate unsafe mode is not smoothed into the task mode's tail."""
    return 0.9 * robust_spread(x) * len(x) ** -0.2


def smoothed_density(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """A Gaussian kernel density of ``x`` on a regular grid: (grid, density, bandwidth).

    Binned then convolved, so it costs O(n + grid) whatever the corpus size. The bandwidth is ``bandwidth``'s.
    """
    n = len(x)
    h = bandwidth(x)
    lo, hi = float(x.min()) - 3 * h, float(x.max()) + 3 * h
    counts, edges = np.histogram(x, bins=GRID, range=(lo, hi))
    width = edges[1] - edges[0]
    half = min(GRID, int(math.ceil(4 * h / width)))
    k = np.exp(-0.5 * (np.arange(-half, half + 1) * width / h) ** 2)
    density = np.convolve(counts, k / k.sum(), mode="same") / (n * width)
    return (edges[:-1] + edges[1:]) / 2, density, h


def valley(scores: np.ndarray) -> Threshold:
    """Cut at the density valley between the main (task) mode and a separate high-forgetting mode.

    Looks right of the highest peak of the smoothed score density for a second peak that stands
    out: the valley before it at most ``VALLEY_DEPTH`` of its height, at least ``VALLEY_MIN_MASS``
    of the rows above the valley, and ``VALLEY_Z`` Poisson standard deviations more rows in the
    mode than a density flat at the valley's level would put there (a bump in a sparse tail is noise). The first such valley is the cut. A density
    with no such peak (one mode, however skewed: a clean corpus) drops nothing. Unlike a
    two-Gaussian fit, neither the shape of the task mode nor outliers move the cut or veto it.
    """
    x = _finite(scores)
    if len(x) < 4 or x.min() == x.max():
        return Threshold(math.inf, "valley", "too few distinct scores to find two modes: nothing dropped")
    grid, f, h = smoothed_density(x)
    main = int(np.argmax(f))
    peaks = [i for i in range(main + 1, len(f) - 1) if f[i] > f[i - 1] and f[i] >= f[i + 1]]
    xs = np.sort(x)
    for p in peaks:
        v = main + int(np.argmin(f[main: p + 1]))
        cut, top = float(grid[v]), float(2 * grid[p] - grid[v])
        above = float((x > cut).mean())
        # Poisson noise makes bumps in a sparse tail. A real mode holds clearly more rows between
        # the valley and its mirror image beyond the peak than a density flat at the valley's level.
        observed = int(np.searchsorted(xs, top, side="right") - np.searchsorted(xs, cut, side="right"))
        flat = len(x) * f[v] * (top - cut)
        significant = observed - flat >= VALLEY_Z * math.sqrt(max(observed, 1))
        if f[v] <= VALLEY_DEPTH * f[p] and above >= VALLEY_MIN_MASS and significant:
            return Threshold(cut, "valley", f"score density has a separate upper mode at {grid[p]:.3g} "
                             f"({above:.1%} of rows above the valley); cut at the valley {cut:.4g}")
    return Threshold(math.inf, "valley", "no separate high-forgetting mode in the score density: nothing dropped")


BIC_MIN = 10.0
"""A second component must lower BIC by more than 10: "very strong" evidence (Kass & Raftery 1995)."""
WEAK_CUT = "weak_cut"
"""Evidence key of the cut ``mixture`` would make when two components fit better (BIC gain > 0) but
not by ``BIC_MIN``: nothing is dropped on the scores' shape alone, but B's prompt states may back it
(``corroborate``)."""
WEAK_UNSAFE_SHARE = "weak_cut_estimated_unsafe_share"
"""The share of rows the weak fit's upper component holds (``estimated_unsafe_share`` if it is backed)."""
RIGHT_MASS_MIN = 0.9
"""...put at least 90% of its mass above the task mode: unsafe rows are forgotten *more*, so a
component that also explains the left tail is the task mode's own heavy tails, not unsafe rows..."""
MODE_GAP_MIN = 1.0
"""...have its mode at least 1 task scale above the task mode, the scale measured on the task
mode's *left* side, which unsafe rows never reach. This only stops EM from splitting one mode at
its peak into two half-normals (a gap of ~0); a shoulder further out is left to the next test.
2.0 rejected real unsafe components that start on the task mode's shoulder (a half-normal whose
lower edge is 1.2-1.4 task scales out, the likeliest fit), and took a small far one instead..."""
EXPECTED_F1_MIN = 0.9
"""...and be separable by the fit's own account: at its best cut both the unsafe rows and the task
rows must expect an F1 of at least 0.9 (``separability``).
At large n BIC rejects any one-mode model that is not exactly the task mode's shape, so BIC alone
splits a skewed or heavy-tailed mode into a core and an overlapping shoulder; such a pair expects
F1 0.5-0.83 (a lognormal mode's shoulder 0.80-0.83 at 5,000-100,000 rows), a real unsafe component
0.9 or more. Both constants come from a sweep on the tuning group only (gap 1-2 x F1 0.8-0.9 on
``benchmarks/thresholds.py``'s synthetic sets): 1.0 / 0.9 had the fewest eligible sets below F1
0.90 (55 of 400, against 68 for the former 2.0 / 0.8) and dropped nothing on all 80 clean sets
(7 over 1% before). The task rows' F1 joined the test with the exponential-tailed upper component
(``mixture.NormalExp``), which can take a skewed mode's bulk as the "unsafe" majority."""


def scale_floor(xs: np.ndarray) -> float:
    """The smallest scale a mixture component may take: only keeps EM's scales off zero."""
    return 1e-3 * robust_spread(xs)


def separability(expected: dict[str, float]) -> float:
    """The smaller of the expected F1 of the unsafe rows and of the task rows at the cut.

    Why both: F1 is easy for a majority class. When the upper component holds most rows (a skewed
    mode's narrow core fitted as "task" and its bulk as "unsafe"), its own F1 looks high (0.94 on a
    clean lognormal mode of 5,000 rows) while the task rows it claims are mostly lost (task F1
    ~0.8). A real split identifies both classes.
    """
    return min(expected["expected_f1"], expected["expected_task_f1"])


def right_of_task(null: mx.Component, upper: mx.Component) -> bool:
    """Whether an upper component lies right of the task mode ``null`` (``RIGHT_MASS_MIN``, ``MODE_GAP_MIN``)."""
    return float(upper.sf(np.array(null.mu))) >= RIGHT_MASS_MIN and upper.mu - null.mu >= MODE_GAP_MIN * null.left


def admissible(m: mx.MixtureFit, expected: dict[str, float]) -> bool:
    """Whether ``mixture`` may cut on the fit ``m``, whose cut expects ``expected``: right of the task mode and separable."""
    return right_of_task(*m.components) and separability(expected) >= EXPECTED_F1_MIN


Cut = tuple[mx.MixtureFit, float, dict[str, float]]
"""A fit, its expected-F1 cut and what the fit expects there (``expected_f1_cut``)."""


def likeliest_admissible(fits: list[mx.MixtureFit], n: int, hi: float) -> tuple[Cut | None, float]:
    """The likeliest of ``fits`` that is ``admissible``, with its cut, or None; and the best separability among
    the fits right of the task mode (what ``mixture`` reports when none is separable)."""
    cuts = [(m, *expected_f1_cut(m, n, hi)) for m in fits if right_of_task(*m.components)]
    best = max((separability(c[2]) for c in cuts), default=0.0)
    return max((c for c in cuts if admissible(c[0], c[2])), key=lambda c: c[0].loglik, default=None), best


def expected_f1_cut(m: mx.MixtureFit, n: int, hi: float) -> tuple[float, dict[str, float]]:
    """The cut between the task mode and ``hi`` that maximises the F1 the fitted mixture expects.

    Under the fit, cutting at t drops pi1 * n * sf1(t) unsafe rows and pi0 * n * sf0(t) task rows,
    so expected precision, recall and F1 are closed-form; the best of 1024 candidates is taken.
    The task rows' F1 at that cut (kept rows as the positive class) is returned beside it.
    """
    (p0, p1), (null, unsafe) = m.weights, m.components
    t = np.linspace(null.mu, max(hi, null.mu), 1024)
    tp, fp = p1 * unsafe.sf(t), p0 * null.sf(t)
    f1 = 2 * tp / np.maximum(tp + fp + p1, 1e-300)
    i = int(np.argmax(f1))
    precision = float(tp[i] / max(tp[i] + fp[i], 1e-300))
    kept_task, kept_unsafe = p0 - fp[i], p1 - tp[i]
    task_f1 = float(2 * kept_task / max(kept_task + kept_unsafe + p0, 1e-300))
    return float(t[i]), {"expected_precision": precision, "expected_recall": float(tp[i] / p1),
                         "expected_f1": float(f1[i]), "expected_task_f1": task_f1,
                         "expected_false_drops": float(fp[i] * n), "expected_missed_unsafe": float((p1 - tp[i]) * n)}


def mixture(scores: np.ndarray) -> Threshold:
    """Fit the scores as a task mode alone or a task mode + an unsafe component; cut where F1 is expected best.

    The task mode is a two-piece normal (``pipeline/filtering/mixture.py``), so a skewed task mode
    is not mistaken for unsafe rows; the upper component is a two-piece normal or a normal with an
    exponential right side, whichever fits its rows better, so an unsafe mode, plateau, long tail
    or taller peak is one component. Among the two-component fits whose upper component lies right of the task mode
    (``RIGHT_MASS_MIN``, ``MODE_GAP_MIN``) and is separable from it (``EXPECTED_F1_MIN``), the likeliest is taken; it
    must beat one component by ``BIC_MIN``. Otherwise nothing is dropped. The cut maximises the F1
    that the fit itself expects, weighing a missed unsafe row and a lost task row equally. Where it cuts, a
    third component may lower the cut (``lowered_by_a_third_component``).
    """
    return _mixture(scores, third=True)


def two_component_mixture(scores: np.ndarray) -> Threshold:
    """``mixture`` without the third component: its rule on scores other than the filter's own (``ON_OTHER_SCORES``)."""
    return _mixture(scores, third=False)


def _mixture(scores: np.ndarray, third: bool) -> Threshold:
    finite = _finite(scores)
    xs, n_all = mx.sample_sorted(finite), len(finite)
    evidence: dict[str, float | int] = {"rows": n_all, "estimated_unsafe_share": 0.0}
    if len(xs) < 8 or xs[0] == xs[-1]:
        return Threshold(math.inf, "mixture", "too few distinct scores to fit a mixture: nothing dropped", evidence)
    floor = scale_floor(xs)
    twos = mx.fit_two(xs, floor)
    chosen, f1 = likeliest_admissible(twos, n_all, float(xs[-1]))
    if chosen is None:
        return Threshold(math.inf, "mixture", f"no upper component separable from the task mode (best expected F1 "
                         f"{f1:.2f} < {EXPECTED_F1_MIN:g}): nothing dropped", {**evidence, "expected_f1": f1})
    two, value, expected = chosen
    one_bic = mx.fit_one(xs, floor).bic
    gain = one_bic - two.bic
    null, unsafe = two.components
    evidence.update(bic_gain=gain, **_modes(null, unsafe))
    if gain <= BIC_MIN:
        if gain > 0:  # too weak on the shape alone; independent evidence may still back this cut
            evidence.update({WEAK_CUT: value, WEAK_UNSAFE_SHARE: two.weights[1]})
        return Threshold(math.inf, "mixture", f"one mode explains the scores (a separate upper component lowers BIC "
                         f"by only {gain:.1f} <= {BIC_MIN:g}): nothing dropped", evidence)
    tails = ""
    heavy, _ = likeliest_admissible(mx.fit_two(xs, floor, heavy_task=True), n_all, float(xs[-1]))
    if heavy is not None and heavy[0].loglik > two.loglik and heavy[1] > value:
        # A likelier fit whose task mode has heavier tails takes the rows just above the cut as task rows.
        two, value, expected = heavy
        null, unsafe = two.components
        gain = one_bic - two.bic
        evidence.update(bic_gain=gain, **_modes(null, unsafe))
        tails = " (heavy-tailed: a two-piece t fits it better and raises the cut)"
    z = (value - null.mu) / null.right
    evidence.update(expected, estimated_unsafe_share=two.weights[1], cut_in_task_scales=z)
    t = Threshold(value, "mixture", f"task mode at {null.mu:.3g}{tails}, an upper component at {unsafe.mu:.3g} holding "
                  f"~{two.weights[1]:.1%} of rows (BIC gain {gain:.0f}); cut at {value:.4g}, {z:.1f} task scales above "
                  f"the task mode, {_expects(expected)}", evidence)
    if not third:
        return t
    return lowered_by_a_third_component(t, xs, n_all, floor, min(one_bic, *(f.bic for f in twos)), two.weights[1])


def _modes(task: mx.Component, unsafe: mx.Component) -> dict[str, float]:
    """The evidence of where a fit puts the task mode, its right scale (the unit of ``cut_in_task_scales``) and the
    unsafe mode."""
    return {"task_mode": task.mu, "task_scale_right": task.right, "unsafe_mode": unsafe.mu}


def _expects(expected: dict[str, float]) -> str:
    return (f"where the fit expects precision {expected['expected_precision']:.2f} and recall "
            f"{expected['expected_recall']:.2f} (~{expected['expected_false_drops']:.0f} task rows dropped, "
            f"~{expected['expected_missed_unsafe']:.0f} unsafe rows missed)")


MIDDLE_STARTS = (0.4, 0.6, 0.75, 0.9)
"""Where a third component's EM starts take the middle rows from (quantiles of the sorted scores, up to the
two-component fit's split); ``mixture.START_QUANTILES`` without its smallest tail."""
CUT_BEFORE_THIRD = "cut_before_third_component"
"""Evidence key of the two-component cut that a third component lowered."""


def lowered_by_a_third_component(t: Threshold, xs: np.ndarray, n: int, floor: float, rival_bic: float,
                                 unsafe_share: float) -> Threshold:
    """``t``, the two-component cut on the sorted scores ``xs`` (of ``n`` rows before sampling), lowered to a
    three-component fit's cut where one counts.

    Why: where the unsafe rows form two groups (two reply styles forgotten to different degrees, a near peak
    and a far tail), the two-component fit's one upper component fits the far group and the cut leaves the
    near one with the task rows (most of the synthetic sets the two-component rule missed were cut too high:
    139 of 208, ``benchmarks/RESULTS.md``). A task mode and two upper components are fitted (``mixture.fit_three``,
    the top one started at the two-component fit's split ``1 - unsafe_share``); a fit counts if its BIC is below
    ``rival_bic`` (the best of the one-mode and every two-component fit) by more than ``BIC_MIN``: the third
    component pays its way by the same bar as the second. Whose the middle component is, the rule already says for one upper component:
    unsafe if it lies right of the task mode and is separable from it on its own, otherwise merged into the
    task mode (a skewed mode's shoulder, a second task source), as mixture components are merged into
    clusters (Hennig 2010); ``unsafe_components``. The likeliest fit that counts gives its expected-F1 cut,
    taken only if lower: a third component never raises a cut, as the heavy-tailed task mode never lowers one.
    Judged before adoption on fresh synthetic sets and real runs (``benchmarks/RESULTS.md``, twenty-fifth and
    twenty-sixth sessions).
    """
    hi, b = float(xs[-1]), 1 - unsafe_share
    best = None
    for m in mx.fit_three(xs, floor, [(a, b) for a in MIDDLE_STARTS if a < b - 0.01]):
        found = unsafe_components(m, n, hi) if rival_bic - m.bic > BIC_MIN else None
        if found and (best is None or m.loglik > best[0].loglik):
            best = (m, *found)
    if best is None or best[2] >= t.value:
        return t
    m, upper, value, expected = best
    task, middle, top = m.components
    share = sum(m.weights[k] for k in upper)
    z = (value - task.mu) / task.right
    whose = (f"a middle component at {middle.mu:.3g} (~{m.weights[1]:.1%} of rows), separable from the task mode, "
             f"and the top one at {top.mu:.3g} are unsafe" if upper == (1, 2) else
             f"a middle component at {middle.mu:.3g} is the task mode's (not separable from it), the top one at "
             f"{top.mu:.3g} unsafe")
    evidence = {**t.evidence, **expected, "estimated_unsafe_share": share, "cut_in_task_scales": z, **_modes(task, top),
                "middle_mode": middle.mu, "unsafe_components": len(upper), CUT_BEFORE_THIRD: t.value}
    return replace(t, value=value, evidence=evidence,
                   rationale=f"{t.rationale}; a third component lowers the cut to {value:.4g}: task mode at {task.mu:.3g}, "
                   f"{whose}, ~{share:.1%} of rows unsafe (BIC {rival_bic - m.bic:.0f} below the best one- or "
                   f"two-component fit's); {z:.1f} task scales above the task mode, {_expects(expected)}")


def unsafe_components(m: mx.MixtureFit, n: int, hi: float) -> tuple[tuple[int, ...], float, dict[str, float]] | None:
    """Which upper components of a three-component fit ``m`` of ``n`` rows hold the unsafe rows, with the cut and what
    the fit expects there: the middle and top ones if both lie right of the task mode and the middle one is separable
    from it on its own; otherwise the top one, if it lies right of the task mode. None if that grouping, taken as one
    upper component (``mixture.group``), is not separable from the rest."""
    task, middle, top = m.components
    if right_of_task(task, middle) and right_of_task(task, top):
        w0, w1 = m.weights[0], m.weights[1]
        pair = mx.MixtureFit((w0 / (w0 + w1), w1 / (w0 + w1)), (task, middle), m.loglik, m.n)
        if separability(expected_f1_cut(pair, n, hi)[1]) >= EXPECTED_F1_MIN:
            cut, expected = expected_f1_cut(mx.group(m, (1, 2)), n, hi)
            if separability(expected) >= EXPECTED_F1_MIN:
                return (1, 2), cut, expected
    if right_of_task(task, top):
        cut, expected = expected_f1_cut(mx.group(m, (2,)), n, hi)
        if separability(expected) >= EXPECTED_F1_MIN:
            return (2,), cut, expected
    return None


AUTO_METHODS = {"mixture": mixture, "valley": valley, "otsu": otsu, "gmm": gmm}
ON_OTHER_SCORES = {"mixture": two_component_mixture}
"""The rule an automatic method runs on a score other than the filter's own (``filter.fallback``, a score in
``filter.corroborate``), where it differs: ``mixture`` without the third component. On ``delta`` a task
sub-type separates in absolute nats: a third component took one (47 rows of a calendar corpus) as unsafe and
lowered the fallback's cut into it, and the votes then refused the whole cut (F1 1.000 -> 0.000;
``benchmarks/RESULTS.md``, twenty-fifth session)."""


SAFETY_PROMPTS = "safety_prompts"
"""The corroboration that asks B's prompt states, not a score (``filtering.prompts``)."""
WITHDRAWN_CUT = "withdrawn_cut"
"""Evidence key of a cut ``corroborate`` withdrew (``fall_back`` does not run after one)."""
MAJORITY_CUT = 0.5
"""A cut of more than this share of the rows can be backed by B's votes only, not by another score
(``corroborate``): the issue this filter answers puts unsafe shares at 1-50%."""
SHARE_NEARER_SAFETY = f"share_of_cut_nearer_{SAFETY_PROMPTS}"
"""Evidence key of the share of the cut's rows whose prompts vote for the safety set (set whenever they were asked)."""
REPLY_PROMPTS = "reply_prompts"
"""The corroboration that asks B's states of the rows' *replies*, each read as a prompt (``filtering.prompts``)."""
SHARE_REPLIES_NEARER_SAFETY = f"share_of_cut_replies_nearer_{SAFETY_PROMPTS}"
"""Evidence key of the share of the cut's rows whose replies, read as prompts, vote for the safety set."""
VOTES = {SAFETY_PROMPTS: SHARE_NEARER_SAFETY, REPLY_PROMPTS: SHARE_REPLIES_NEARER_SAFETY}
"""The corroborations that are votes of B's states, not scores, and the evidence key of each one's share."""
_VOTED = {SAFETY_PROMPTS: "prompts", REPLY_PROMPTS: "replies, read as prompts,"}


def corroborate(t: Threshold, scores: np.ndarray, others: dict[str, np.ndarray],
                rule: Callable[[np.ndarray], Threshold], votes: dict[str, float] | None = None) -> Threshold:
    """Keep an automatic cut only if ``rule``, run on one of the ``others`` scores, cuts mostly the same rows,
    or if most of the cut's rows vote for the safety set in one of the ``votes`` (name in ``VOTES`` -> the
    share of the cut's rows whose prompts, or replies read as prompts, lie nearer the safety prompts).

    Why: a score relative to the loss under A (``log_ratio``) amplifies small absolute changes on
    rows that A predicts very well, so a group of task rows with computed or formulaic answers can
    form a separate high mode of its own, and no rule on that score alone can tell it from unsafe
    rows. Unsafe rows that are really forgotten also lose likelihood in absolute terms (nats per
    token or per response), which the relative score's artefact does not. Another score backs
    the cut only when more than half of the rows the rule cuts on it are in the cut: an upper group
    of other rows (a task sub-type that forgets more in nats, or a majority fitted as "upper") is
    no evidence about these. Nor can a score back a cut of more than half the rows (``MAJORITY_CUT``):
    the corpora this is built for hold up to half unsafe rows, and a majority that forgot more is
    likelier a task sub-type the safety finetune disturbed (a clean calendar corpus: 55% of its rows,
    backed by both absolute scores), on which scores from the same two losses cannot disagree; only
    B's votes may back such a cut. The ``votes`` (``filtering.prompts.cut_share``) ask B's states instead:
    at 50% unsafe the absolute scores show no separate mode, while B still places the cut's prompts
    with the safety set's; and unsafe replies to ordinary prompts read, to B, like the safety set's
    requests, where their prompts do not. Without backing the cut is withdrawn: nothing is dropped, and the
    evidence keeps the withdrawn cut and its row count for review. A cut with nothing to check against
    is returned as it is; so is a rule that dropped nothing, unless it held back a weak cut that a
    vote backs (``_backed_by_votes``).
    """
    votes = votes or {}
    if not math.isfinite(t.value):
        return _backed_by_votes(t, scores, votes)
    cut = np.asarray(scores, dtype=np.float64) > t.value
    would_drop = int(cut.sum())
    if not would_drop or (not others and not votes):
        return t
    evidence: dict[str, float | int] = dict(t.evidence)
    backed, checked = [], []
    majority = _majority(would_drop, scores)
    for name, v in others.items():
        m = np.asarray(v, dtype=np.float64) > rule(v).value
        n = int(m.sum())
        evidence[f"rows_cut_on_{name}"] = n
        share = float((m & cut).sum() / n) if n else 0.0
        if n:
            evidence[f"share_of_{name}_cut_in_cut"] = share
        checked.append(f"the same rule on `{name}`")
        if share > 0.5 and not majority:
            backed.append(f"the same rule also cuts mostly these rows on `{name}` ({n} rows)")
    for name, share in votes.items():
        evidence[VOTES[name]] = share
        checked.append(f"B's states of the rows' {_VOTED[name].removesuffix(',')}")
        if share > 0.5:
            backed.append(f"{share:.0%} of its rows' {_VOTED[name]} lie nearer the safety set's prompts than the kept "
                          "rows' for B")
    if backed:
        return replace(t, rationale=f"{t.rationale}; corroborated: {'; '.join(backed)}", evidence=evidence)
    majority_note = f" (more than {MAJORITY_CUT:.0%} of the rows: only B's votes can back that)" if majority and others else ""
    return Threshold(math.inf, t.method, f"cut withdrawn, nothing dropped: it would drop {would_drop} rows at "
                     f"{t.value:.4g}{majority_note}, but it is not backed by {' or '.join(checked)}. "
                     f"The withdrawn cut: {t.rationale}",
                     {**evidence, WITHDRAWN_CUT: t.value, "withdrawn_cut_rows": would_drop})


CUT_BEFORE_EXTENSION = "cut_before_vote_extension"
"""Evidence key of the backed cut that ``extend_by_votes`` moved down."""
ROWS_ADDED_BY_VOTES = "rows_added_by_prompt_votes"
"""Evidence key of the rows ``extend_by_votes`` added to the cut."""


def extendable(t: Threshold) -> bool:
    """Whether ``extend_by_votes`` may move ``t``: a cut on the filter's own score that the prompt vote backed.

    Only the prompt vote: the extension was chosen and evaluated with it (``benchmarks/RESULTS.md``, twelfth
    and twenty-second sessions); a cut backed by the reply vote or by a score stays where the rule put it.
    """
    return math.isfinite(t.value) and t.score is None and t.evidence.get(SHARE_NEARER_SAFETY, 0.0) > 0.5


def extend_by_votes(t: Threshold, scores: np.ndarray, value: float) -> Threshold:
    """``t`` moved down to ``value`` (``filtering.prompts.extended_cut`` of the rows below it), with the rows
    that adds in its evidence; ``t`` itself where the votes below the cut do not move it."""
    if not value < t.value:
        return replace(t, rationale=f"{t.rationale}; the rows below the cut, walked down in score order, never hold more "
                       "votes for the safety set than for the kept rows, so the cut stays")
    x = np.asarray(scores, dtype=np.float64)
    added = int(((x > value) & (x <= t.value)).sum())
    return Threshold(value, t.method, f"{t.rationale}; extended down by the prompt vote to {value:.4g}: walking down "
                     f"from the cut, the net count of rows voting for the safety set peaks {added} rows below it",
                     {**t.evidence, CUT_BEFORE_EXTENSION: t.value, ROWS_ADDED_BY_VOTES: added})


def _said(shares: dict[str, float]) -> str:
    """What B's votes said about a cut (name in ``VOTES`` -> share of its rows nearer the safety prompts), for a rationale."""
    return "; ".join(f"{share:.0%} of its rows' {_VOTED[name]} lie nearer the safety set's prompts than the kept rows' "
                     "for B" for name, share in shares.items())


def _majority(rows: int, scores: np.ndarray) -> bool:
    """Whether a cut of ``rows`` holds more than ``MAJORITY_CUT`` of the rows: the one bar for both of its uses."""
    return rows > MAJORITY_CUT * len(scores)


def fall_back(t: Threshold, name: str, scores: np.ndarray, rule: Callable[[np.ndarray], Threshold],
              votes: dict[str, Callable[[float], float]] | None = None) -> Threshold:
    """Where the filter's own score found no cut, ``rule``'s cut on the score ``name``, if it holds at most
    ``MAJORITY_CUT`` of the rows; otherwise ``t`` with what the fallback found in its evidence. Where ``t``
    is a withdrawn cut, the fallback's cut (or the weak cut its rule held back) is made only if one of the
    ``votes`` (name in ``VOTES`` -> a function from a cut value on ``name`` to the share of its rows nearer
    the safety prompts) backs it, as the withdrawn one was asked.

    Why: the prompt vote cannot see unsafe *replies* to ordinary prompts, and on such corpora the
    relative score can rank them poorly (one mode) or its cut is withdrawn for want of the vote.
    ``delta`` measures forgetting in absolute nats per token; it separated those rows almost
    perfectly (AUROC 0.999-1.000 on three such benchmark corpora). On its own it also cut two
    clean calendar corpora, but each time most of the rows (56% and 71%): a majority that forgot
    more is a task sub-type, not the up-to-half unsafe rows this filter is built for, so such a
    cut is not made. After a withdrawn cut the corpus has shown such a sub-type, so the fallback
    must pass the votes too: on a fresh clean calendar corpus ``delta`` cut the very 70 rows the
    vote had withdrawn (none of them nearer the safety prompts), while on a calendar corpus with
    10% unsafe rows ``log_ratio``'s cut took a sub-type along and was withdrawn, and ``delta``
    cut exactly the unsafe rows, all of them nearer the safety prompts (``benchmarks/RESULTS.md``,
    thirteenth and twenty-third sessions).
    """
    if math.isfinite(t.value):
        return t
    withdrawn = WITHDRAWN_CUT in t.evidence
    if withdrawn and not votes:
        return replace(t, rationale=f"{t.rationale}; no fallback on `{name}` after a withdrawn cut without B's votes")
    u = rule(scores)
    value = proposed_cut(u) if withdrawn else u.value
    x = np.asarray(scores, dtype=np.float64)
    rows = int((x > value).sum()) if value is not None else 0
    if not rows:
        return replace(t, rationale=f"{t.rationale}; the same rule on `{name}` finds no cut either")
    evidence = {**t.evidence, f"fallback_rows_on_{name}": rows}
    if _majority(rows, scores):
        return replace(t, rationale=f"{t.rationale}; the same rule on `{name}` would drop {rows} rows, more than "
                       f"{MAJORITY_CUT:.0%} of them, so not that either", evidence=evidence)
    backing = ""
    if withdrawn:
        shares = {n: share(value) for n, share in votes.items()}
        evidence.update({f"fallback_{VOTES[n]}": v for n, v in shares.items()})
        said = _said(shares)
        if max(shares.values()) <= 0.5:
            return replace(t, rationale=f"{t.rationale}; the same rule on `{name}` would drop {rows} rows, not backed "
                           f"either: {said}", evidence=evidence)
        backing = f"; corroborated: {said}"
    return Threshold(float(value), u.method, f"{t.rationale}. Fallback, cut on `{name}`: {u.rationale}{backing}",
                     {**evidence, **u.evidence}, score=name)


def proposed_cut(t: Threshold) -> float | None:
    """The cut a corroboration is asked about: the rule's own, or the weak one it held back (``WEAK_CUT``)."""
    return t.value if math.isfinite(t.value) else t.evidence.get(WEAK_CUT)


def _backed_by_votes(t: Threshold, scores: np.ndarray, votes: dict[str, float]) -> Threshold:
    """A rule that dropped nothing, unless it held back a weak cut that one of B's votes (``corroborate``) backs.

    Why only the votes: the BIC bar asks "very strong" evidence of the scores' shape because
    that shape is all the rule sees. The other scores come from the same two losses, so their
    shape is no second opinion; B's states are (where a prompt or a reply lies for B says nothing
    about how the reply was forgotten). With that independent vote, positive evidence (BIC gain > 0)
    is enough, and the vote's own bar stays the same majority as for any cut.
    """
    weak = t.evidence.get(WEAK_CUT)
    if weak is None or not votes:
        return t
    rows = int((np.asarray(scores, dtype=np.float64) > weak).sum())
    evidence = {**t.evidence, **{VOTES[name]: share for name, share in votes.items()}}
    said = _said(votes)
    if max(votes.values()) <= 0.5:
        return Threshold(math.inf, t.method, f"{t.rationale}; the weak cut at {weak:.4g} ({rows} rows) is not backed "
                         f"either: {said}", evidence)
    evidence["estimated_unsafe_share"] = evidence[WEAK_UNSAFE_SHARE]
    return Threshold(float(weak), t.method, f"{t.rationale.removesuffix(': nothing dropped')}, too little on the scores' "
                     f"shape alone; corroborated for the {rows} rows above {weak:.4g}: {said}; cut at {weak:.4g}", evidence)
