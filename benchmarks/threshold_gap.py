"""A candidate for ``thresholds.right_of_task``: the mode gap bar at the sample's resolution where that is smaller.

Why it is tried (twenty-seventh session, pre-registered in RESULTS.md, "The mode gap at the sample's resolution"):
62 of the 171 eligible synthetic sets the default misses are cut too high on a small far component (~3% of rows,
precision ~1, recall 0.1-0.4). There the likelier fits that hold the whole unsafe group were refused, most often
(26 sets) by the mode gap test: the upper component's mode must lie ``MODE_GAP_MIN`` task scales above the task mode,
the scale taken on the task mode's left side. A heavy-tailed (Laplace, t3, t5) or left-skewed task mode has a wide
left side, so a real unsafe group that starts at its right edge lies only 0.4-0.8 such scales out. The test exists to
refuse EM's split of one mode at its peak (a gap of ~0); a split narrower than the kernel bandwidth (Silverman's rule,
``thresholds.smoothed_density``) is not a valley the sample can show, and a wider one is left to the separability test.
The candidate bar is ``MODE_GAP_MIN`` x the smaller of the task's left scale and that bandwidth: every fit the
default admits stays admitted.

    python benchmarks/threshold_gap.py --group "tuning: synthetic" --out benchmarks/threshold_gap/tuning-synthetic.json
    python benchmarks/threshold_gap.py --real   # threshold_totals.py --default-only with the candidate

``--group`` runs the candidate on every set of a synthetic group and compares it with the default's judgement
stored in ``benchmarks/threshold_three/`` (its ``candidate`` key is today's default, ``mixture``); the output has
the default as ``mixture`` and the candidate as ``candidate``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from thresholds import SYNTHETIC_GROUPS, cut_result, group_jobs, print_comparison, set_key  # noqa: E402

from pipeline.filtering import mixture as mx  # noqa: E402
from pipeline.filtering import thresholds  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_RULE = thresholds.right_of_task


def with_resolution_gap(rule: Callable[[np.ndarray], thresholds.Threshold]) -> Callable[[np.ndarray], thresholds.Threshold]:
    """``rule`` with the candidate mode gap bar: ``MODE_GAP_MIN`` x min(task left scale, the sample's resolution)."""
    def candidate(scores: np.ndarray) -> thresholds.Threshold:
        x = np.asarray(scores, dtype=np.float64)
        xs = mx.sample_sorted(x[np.isfinite(x)])
        h = thresholds.bandwidth(xs) if len(xs) > 1 else 0.0

        def right_of_task(null: mx.Component, upper: mx.Component) -> bool:
            return (float(upper.sf(np.array(null.mu))) >= thresholds.RIGHT_MASS_MIN
                    and upper.mu - null.mu >= thresholds.MODE_GAP_MIN * min(null.left, h))

        thresholds.right_of_task = right_of_task
        try:
            return rule(scores)
        finally:
            thresholds.right_of_task = DEFAULT_RULE
    return candidate


CANDIDATE = with_resolution_gap(thresholds.mixture)


def stored(group: str) -> dict[tuple[str, int, int, float], dict[str, Any]]:
    """The default's judgement of each set of ``group`` (``benchmarks/threshold_three/``), by set identity."""
    path = HERE / "threshold_three" / (group.replace(": ", "-").replace(", ", "-") + ".json")
    return {set_key(s["set"], s["seed"], s["rows"], s["unsafe_share"]): s for s in json.loads(path.read_text())}


def _judge(name: str, seed: int, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    return {"set": name, "seed": seed, "rows": len(x), "unsafe_share": float(y.mean()), "candidate": cut_result(x > CANDIDATE(x).value, y)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--group", choices=list(SYNTHETIC_GROUPS))
    ap.add_argument("--real", action="store_true", help="threshold_totals.py --default-only with the candidate")
    ap.add_argument("--out", default=None)
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    a = ap.parse_args()
    if a.real:
        import threshold_totals

        threshold_totals.screen_with(CANDIDATE, with_resolution_gap(thresholds.two_component_mixture))
        return
    tasks, unsafe, seeds, clean_seeds = SYNTHETIC_GROUPS[a.group]
    jobs = group_jobs(tasks, unsafe, seeds, clean_seeds)
    start = time.time()
    with get_context("fork").Pool(a.jobs) as pool:
        sets = pool.starmap(_judge, jobs, chunksize=4)
    before = stored(a.group)
    for s in sets:
        old = before[set_key(s["set"], s["seed"], s["rows"], s["unsafe_share"])]
        s["mixture"] = old["candidate"]
        if "best_f1" in old:
            s["best_f1"] = old["best_f1"]
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(sets, default=float) + "\n")
    print_comparison(f"{a.group}, {len(sets)} sets, {time.time() - start:.0f} s", sets, "mixture", "candidate")


if __name__ == "__main__":
    main()
