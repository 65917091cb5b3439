"""A candidate for ``mixture``: a third component, merged into the task mode unless it is separable from it.

Why: most of the synthetic sets the default misses are cut too *high* (precision >= 0.95, recall low; 139 of
the 208 eligible sets below F1 0.90 in ``thresholds.json``). The two-component fit has one upper component,
so where the unsafe rows form two groups (two reply styles forgotten to different degrees, a near peak and a
far tail) it fits the far group and leaves the near one with the task rows. A third component can fit the
near group, and the rule then has to say whose it is. The rule already has the answer for one upper component:
a component right of the task mode that is separable from it (``thresholds.admissible``) is unsafe. Applied
to the middle component alone, it is unsafe when it is separable from the task mode, and otherwise merged
into the task mode (a skewed mode's shoulder, a second task source that overlaps the first), as in the
merging of mixture components into clusters (Hennig 2010, Baudry et al. 2010). The candidate only ever lowers a
cut the default made, as the heavy-tailed task only ever raises one, and needs the third component to pay
its way by the same BIC bar as the second.

The candidate (pre-registered in RESULTS.md, "A third component, merged unless separable", twenty-fifth
session), exactly:
- where ``thresholds.mixture`` drops nothing, nothing changes;
- otherwise three-component fits (a two-piece normal task mode, two upper components as ``mixture.fit_upper``
  chooses them) are started from the sorted scores split at quantiles a < b: b = 1 - the default's estimated
  unsafe share, a in ``MIDDLE_STARTS`` below b - 0.01;
- a fit counts if its BIC is below both the one-mode fit's and the best two-component fit's by more than
  ``thresholds.BIC_MIN``;
- its unsafe rows are the middle and top components if both lie right of the task mode
  (``RIGHT_MASS_MIN``, ``MODE_GAP_MIN``) and the task mode and the middle component alone are separable
  (``EXPECTED_F1_MIN``); otherwise the top component alone if it lies right of the task mode; the grouping's
  expected-F1 cut must be separable too;
- the likeliest fit that counts gives its cut, which replaces the default's only if it is lower.

    python benchmarks/threshold_three.py --group "evaluation: synthetic, sixth" [--rows 320] [--out FILE]
    python benchmarks/threshold_three.py --real     # threshold_totals.py --default-only with the candidate
    python benchmarks/threshold_three.py --real --own-score-only   # the variant: the fallback keeps ``mixture``

**Result: dropped** on its pre-registered criterion (b): on the real runs one calendar corpus lost its whole cut
(the third component took a task sub-type on ``delta``, in the fallback). On the fresh sixth group it met (a).
The variant that tries the third component on the filter's own score only (``--own-score-only``) is
pre-registered for the next session (RESULTS.md, same section).

``--group`` judges the default (``mixture`` alone, as on every synthetic set) and the candidate on each set of a
synthetic group, in a process pool, and prints the issue's gate counts for both.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from thresholds import ELIGIBLE, GATE, SYNTHETIC_GROUPS, clean_sets, gates, labelled_sets  # noqa: E402

from pipeline.filtering import mixture as mx  # noqa: E402
from pipeline.filtering import thresholds  # noqa: E402
from pipeline.reporting.metrics import precision_recall_f1  # noqa: E402

MIDDLE_STARTS = (0.4, 0.6, 0.75, 0.9)
"""Where the middle component starts (quantiles of the sorted scores); the top one starts at the default's split."""

SIXTH_HELD_OUT_TASK = {
    "t7": lambda r, n: 0.05 + 0.035 * r.standard_t(7, n),
    # two task sources, 80/20, their modes 2.3 scales apart: the shape a merging rule must not cut
    "two sources 80/20": lambda r, n: np.r_[r.normal(0.03, 0.03, n - n // 5), r.normal(0.10, 0.03, n // 5)],
    "gamma 2.5": lambda r, n: r.gamma(2.5, 0.03, n) - 0.03,
    "triangular": lambda r, n: r.triangular(-0.05, 0.03, 0.15, n),
}
SIXTH_HELD_OUT_UNSAFE = {
    "three styles": lambda r, n: np.r_[r.normal(0.3, 0.04, n // 3), r.normal(0.6, 0.04, n // 3), r.normal(0.9, 0.04, n - 2 * (n // 3))],
    "near mode + plateau": lambda r, n: np.r_[r.normal(0.28, 0.04, n * 2 // 5), r.uniform(0.5, 1.2, n - n * 2 // 5)],
    "mode": lambda r, n: r.normal(0.6, 0.1, n),
    "edge + exponential": lambda r, n: 0.25 + r.exponential(0.2, n),
}
"""A sixth synthetic evaluation group (seeds 60-62, clean 700-704), fixed on 2026-12-05 (twenty-fifth session) with the
candidate, before any rule ran on it: the candidate was screened on the tuning group and on the fourth and fifth
groups' 320-row sets, whose misses had been read, so it is judged on this group first."""
GROUPS = {**SYNTHETIC_GROUPS,
          "evaluation: synthetic, sixth": (SIXTH_HELD_OUT_TASK, SIXTH_HELD_OUT_UNSAFE, range(60, 63), range(700, 705))}


def fit_three(xs: np.ndarray, floor: float, starts: list[tuple[float, float]]) -> list[mx.MixtureFit]:
    """EM for a task mode and two upper components from each start (a, b): rows below quantile a start as the
    task's, those between a and b as the middle component's, the rest as the top one's. Lower mode first."""
    n, fits = len(xs), []
    for a, b in starts:
        i, j = int(a * n), int(b * n)
        if min(i, j - i, n - j) < 2:
            continue
        resp = np.zeros((n, 3))
        resp[:i, 0], resp[i:j, 1], resp[j:, 2] = 1.0, 1.0, 1.0
        prev, comps, weights = -math.inf, [], np.zeros(3)
        for _ in range(300):
            nk = resp.sum(axis=0)
            if nk.min() < 2:
                break
            weights = nk / n
            comps = [mx.fit_two_piece(xs, resp[:, 0], floor)] + [mx.fit_upper(xs, resp[:, k], floor) for k in (1, 2)]
            ll, resp = mx._loglik(xs, weights, comps)
            if ll - prev < 1e-7 * abs(ll):
                break
            prev = ll
        if comps and resp.sum(axis=0).min() >= 2:
            order = sorted(range(3), key=lambda k: comps[k].mu)
            fits.append(mx.MixtureFit(tuple(float(weights[k]) for k in order), tuple(comps[k] for k in order), ll, n))
    return fits


@dataclass(frozen=True)
class Group:
    """Several components of a fit as one (their weights renormalised), so that ``thresholds.expected_f1_cut``
    and ``thresholds.separability`` judge a grouping exactly as they judge a two-component fit."""

    mu: float
    parts: tuple[tuple[float, mx.TwoPiece | mx.NormalExp], ...]

    def sf(self, x: np.ndarray) -> np.ndarray:
        total = sum(w for w, _ in self.parts)
        return sum(w / total * c.sf(x) for w, c in self.parts)


def grouped_cut(m: mx.MixtureFit, unsafe: tuple[int, ...], hi: float) -> tuple[float, float]:
    """The expected-F1 cut with the components ``unsafe`` as the unsafe rows and the others as task rows, and its
    separability; the task group keeps the task mode's ``mu``, where the cut search starts."""
    def group(ks: list[int]) -> Group:
        return Group(m.components[ks[0]].mu, tuple((m.weights[k], m.components[k]) for k in ks))

    task = [k for k in range(len(m.components)) if k not in unsafe]
    p1 = sum(m.weights[k] for k in unsafe)
    pair = mx.MixtureFit((1 - p1, p1), (group(task), group(list(unsafe))), m.loglik, m.n)  # type: ignore[arg-type]
    cut, expected = thresholds.expected_f1_cut(pair, m.n, hi)
    return cut, thresholds.separability(expected)


def _right_of(m: mx.MixtureFit, k: int) -> bool:
    pair = mx.MixtureFit((0.5, 0.5), (m.components[0], m.components[k]), m.loglik, m.n)
    return thresholds.right_of_task(pair)


def unsafe_components(m: mx.MixtureFit, hi: float) -> tuple[tuple[int, ...], float, float] | None:
    """Which upper components of a three-component fit are unsafe, the cut and its separability; None if neither grouping is admissible."""
    if _right_of(m, 1) and _right_of(m, 2):
        w0, w1 = m.weights[0], m.weights[1]
        pair = mx.MixtureFit((w0 / (w0 + w1), w1 / (w0 + w1)), m.components[:2], m.loglik, m.n)
        if thresholds.separability(thresholds.expected_f1_cut(pair, m.n, hi)[1]) >= thresholds.EXPECTED_F1_MIN:
            cut, sep = grouped_cut(m, (1, 2), hi)
            if sep >= thresholds.EXPECTED_F1_MIN:
                return (1, 2), cut, sep
    if _right_of(m, 2):
        cut, sep = grouped_cut(m, (2,), hi)
        if sep >= thresholds.EXPECTED_F1_MIN:
            return (2,), cut, sep
    return None


def candidate(scores: np.ndarray, t: thresholds.Threshold | None = None) -> thresholds.Threshold:
    """The default ``mixture`` cut ``t`` (computed if not given), lowered to a three-component fit's where one counts
    (module docstring)."""
    t = thresholds.mixture(scores) if t is None else t
    if not math.isfinite(t.value):
        return t
    x = np.asarray(scores, dtype=np.float64)
    xs = mx.sample_sorted(x[np.isfinite(x)])
    floor, hi = thresholds.scale_floor(xs), float(xs[-1])
    bar = min(min((f.bic for f in mx.fit_two(xs, floor)), default=math.inf), mx.fit_one(xs, floor).bic) - thresholds.BIC_MIN
    b = 1 - float(t.evidence["estimated_unsafe_share"])
    best = None
    for m in fit_three(xs, floor, [(a, b) for a in MIDDLE_STARTS if a < b - 0.01]):
        found = unsafe_components(m, hi) if m.bic < bar else None
        if found and (best is None or m.loglik > best[0].loglik):
            best = (m, *found)
    if best is None or best[2] >= t.value:
        return t
    m, group, cut, sep = best
    return replace(t, value=cut, rationale=f"{t.rationale}; a third component lowers it to {cut:.4g}: "
                   f"{'the middle and top components are' if group == (1, 2) else 'the top component is'} unsafe "
                   f"(modes {', '.join(f'{c.mu:.3g}' for c in m.components)}, separability {sep:.2f})",
                   evidence={**t.evidence, "cut_before_third_component": t.value})


def _judge(name: str, seed: int, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    out: dict[str, Any] = {"set": name, "seed": seed, "rows": len(x), "unsafe_share": float(y.mean())}
    if y.any():
        out["best_f1"] = precision_recall_f1(x > thresholds.best_f1(x, y).value, y)["f1"]
    default = thresholds.mixture(x)  # judged as it is, and the candidate starts from it
    for rule, t in (("mixture", default), ("candidate", candidate(x, default))):
        drop = x > t.value
        out[rule] = {**precision_recall_f1(drop, y), "dropped": float(drop.mean())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--group", choices=list(GROUPS))
    ap.add_argument("--rows", type=int, default=None, help="only the sets of at most this many rows")
    ap.add_argument("--real", action="store_true", help="threshold_totals.py --default-only with the candidate as `mixture`")
    ap.add_argument("--own-score-only", action="store_true",
                    help="with --real: the candidate for the filter's own score only; the fallback's cut on its score stays `mixture`'s")
    ap.add_argument("--out", default=None)
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    a = ap.parse_args()
    if a.real:
        import threshold_totals

        mixture, fall_back = thresholds.mixture, thresholds.fall_back
        thresholds.AUTO_METHODS["mixture"] = candidate
        if a.own_score_only:
            thresholds.fall_back = lambda t, name, scores, rule, votes=None: fall_back(t, name, scores, mixture, votes)
        sys.argv = [sys.argv[0], "--default-only", "--per-run"]
        threshold_totals.main()
        return
    tasks, unsafe, seeds, clean_seeds = GROUPS[a.group]
    jobs = [(name, seed, x, y) for name, seed, _, _, _, x, y in labelled_sets(tasks, unsafe, seeds)]
    jobs += [(name, seed, x, np.zeros(len(x), bool)) for name, seed, x in clean_sets(tasks, clean_seeds)]
    jobs = [j for j in jobs if a.rows is None or len(j[2]) <= a.rows]
    start = time.time()
    with get_context("fork").Pool(a.jobs) as pool:
        sets = pool.starmap(_judge, jobs, chunksize=4)
    if a.out:
        Path(a.out).write_text(json.dumps(sets, default=float) + "\n")
    eligible = [s for s in sets if s["unsafe_share"] >= 0.05 and s.get("best_f1", 0) >= ELIGIBLE]
    mended = sum(s["mixture"]["f1"] < GATE <= s["candidate"]["f1"] for s in eligible)
    broken = sum(s["candidate"]["f1"] < GATE <= s["mixture"]["f1"] for s in eligible)
    print(f"{a.group}, {len(sets)} sets{f' of at most {a.rows} rows' if a.rows else ''}, {time.time() - start:.0f} s")
    for rule in ("mixture", "candidate"):
        print(f"  {rule}: {gates(sets, rule)}")
    print(f"  mended {mended}, broken {broken}")


if __name__ == "__main__":
    main()
