"""Does the default's cut depend on where EM starts? A measurement of ``mixture.START_QUANTILES``.

``mixture`` keeps the likeliest two-component fit that is *admissible* (upper component right of the
task mode and separable from it, ``thresholds.right_of_task`` and ``EXPECTED_F1_MIN``), and EM runs
from a split of the sorted scores at each start quantile. When the upper component is a normal with
an exponential right side whose left scale has shrunk to ~0, it has a hard edge: rows just below it
get ~0 density under it, so EM cannot move the edge, and the fit's edge is the start's quantile. The
admissible fit is then partly chosen by the start grid, not the data. This measures how much:

- ``--per-start``: on the given clean sets, the fit from each start of a dense grid alone (edge,
  share, log-likelihood, separability, admissible or not);
- otherwise: ``mixture`` with the grid ``--starts`` on one synthetic group of ``thresholds.py``
  (same sets): eligible sets below F1 0.90 (eligibility read from ``thresholds.json``), clean sets
  with more than 1% dropped, and sets at 1% unsafe with nothing dropped, against ``thresholds.json``'s
  default;
- ``--label-started``: on each of the default's misses in one synthetic group (eligible, F1 below
  0.90 in ``thresholds.json``), EM started from the *true labels* against the fit the default chose.
  A miss is the search's when the label-started fit is admissible, meets the gate and is likelier by
  more than 2 nats (EM from the starts never reached it); ambiguous within 2 nats; otherwise the
  model's (its families or its selection).

Nothing here changes the rule; a grid other than the default is an experiment.

    python benchmarks/threshold_starts.py --per-start
    python benchmarks/threshold_starts.py --label-started --out benchmarks/threshold_starts_label_started.json
    python benchmarks/threshold_starts.py --starts 0.4,0.5,0.6,0.7,0.75,0.8,0.85,0.9,0.93,0.95,0.97,0.98
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from thresholds import DEFAULT, ELIGIBLE, GATE, HERE, SYNTHETIC_GROUPS, clean_sets, gated, labelled_sets, set_key  # noqa: E402 - after the path it needs

from pipeline.filtering import mixture as mx  # noqa: E402
from pipeline.filtering import thresholds  # noqa: E402
from pipeline.reporting.metrics import precision_recall_f1  # noqa: E402

DENSE = (0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98)


def per_start(x: np.ndarray, starts: tuple[float, ...]) -> list[dict[str, Any]]:
    """The fit EM reaches from each start alone, and whether ``mixture`` would admit it."""
    xs = mx.sample_sorted(x)
    floor = thresholds.scale_floor(xs)
    out = []
    for q in starts:
        with mock.patch.object(mx, "START_QUANTILES", (q,)):
            fits = mx.fit_two(xs, floor)
        for m in fits:
            cut, expected = thresholds.expected_f1_cut(m, len(x), float(xs[-1]))
            sep = thresholds.separability(expected)
            upper = m.components[1]
            out.append({"start": q, "upper": type(upper).__name__, "upper_mode": upper.mu, "upper_left_scale": upper.left,
                        "upper_share": m.weights[1], "loglik": m.loglik, "separability": sep,
                        "admissible": thresholds.admissible(m, expected),
                        "rows_above_cut": int((x > cut).sum())})
    return out


def judge_group(group: str, starts: tuple[float, ...]) -> dict[str, Any]:
    """``mixture`` with the start grid ``starts`` on one synthetic group, against the default in thresholds.json."""
    with mock.patch.object(mx, "START_QUANTILES", starts):  # restored on return: other modes fit from the default grid
        return _judge_group(group, starts)


def _judge_group(group: str, starts: tuple[float, ...]) -> dict[str, Any]:
    """``judge_group``'s body, run while ``mixture.START_QUANTILES`` is ``starts``."""
    task_shapes, unsafe_shapes, seeds, clean_seeds = SYNTHETIC_GROUPS[group]
    judged = json.loads((HERE / "thresholds.json").read_text())["sets"][group]
    by_key = {set_key(s["set"], s["seed"], s["rows"], s["unsafe_share"]): s for s in judged}
    eligible, below, mended, broken, one_pct, one_pct_none = 0, [], 0, 0, 0, 0
    for name, seed, share, _, _, x, y in labelled_sets(task_shapes, unsafe_shapes, seeds):
        s = by_key[set_key(name, seed, len(x), float(y.mean()))]
        if share < 0.05:
            one_pct += 1
            one_pct_none += not (x > thresholds.mixture(x).value).any()
            continue
        if s.get("best_f1", 0.0) < ELIGIBLE:
            continue
        eligible += 1
        f1 = precision_recall_f1(x > thresholds.mixture(x).value, y)["f1"]
        was = s[DEFAULT]["f1"]
        mended += f1 >= GATE > was
        broken += was >= GATE > f1
        if f1 < GATE:
            below.append({"set": name, "seed": seed, "rows": len(x), "unsafe_share": share, "f1": f1, "default_f1": was})
    over = [{"set": name, "seed": seed, "rows": len(x), "dropped": float((x > thresholds.mixture(x).value).mean())}
            for name, seed, x in clean_sets(task_shapes, clean_seeds)]
    over = [c for c in over if c["dropped"] > 0.01]
    return {"group": group, "starts": list(starts), "eligible": eligible, "below_gate": len(below),
            "mended": mended, "broken": broken, "clean_over_1pct": over,
            "one_pct_sets": one_pct, "one_pct_nothing_dropped": one_pct_none, "below": below}


def label_started(group: str) -> list[dict[str, Any]]:
    """On the default's misses in ``group``: EM from the true labels against the default's chosen fit."""
    task_shapes, unsafe_shapes, seeds, _ = SYNTHETIC_GROUPS[group]
    judged = json.loads((HERE / "thresholds.json").read_text())["sets"][group]
    misses = {set_key(s["set"], s["seed"], s["rows"], s["unsafe_share"]) for s in judged
              if gated(s) and s[DEFAULT]["f1"] < GATE}
    out = []
    for name, seed, _, _, _, x, y in labelled_sets(task_shapes, unsafe_shapes, seeds):
        if set_key(name, seed, len(x), float(y.mean())) not in misses:
            continue
        assert len(x) <= mx.MAX_POINTS, "the default fits a sample here; the labels would have to follow it"
        order = np.argsort(x, kind="stable")
        xs, ys = x[order], y[order].astype(float)
        floor = thresholds.scale_floor(xs)
        fit = mx.em(xs, np.stack([1 - ys, ys], axis=1), floor)
        chosen, _ = thresholds.likeliest_admissible(mx.fit_two(xs, floor), len(x), float(xs[-1]))
        reference = chosen[0].loglik if chosen else mx.fit_one(xs, floor).loglik
        if fit is None:
            out.append({"set": name, "seed": seed, "rows": len(x), "unsafe_share": float(y.mean()), "verdict": "model"})
            continue
        cut, expected = thresholds.expected_f1_cut(fit, len(x), float(xs[-1]))
        admissible = thresholds.admissible(fit, expected)
        f1 = precision_recall_f1(x > cut, y)["f1"]
        gain = fit.loglik - reference
        good = admissible and f1 >= GATE
        verdict = "search" if good and gain > 2 else "ambiguous" if good and gain >= -2 else "model"
        out.append({"set": name, "seed": seed, "rows": len(x), "unsafe_share": float(y.mean()), "label_started_f1": f1,
                    "label_started_admissible": admissible, "loglik_over_chosen": gain, "default_had_a_fit": chosen is not None,
                    "verdict": verdict})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--starts", default=",".join(map(str, DENSE)), help="comma-separated start quantiles")
    ap.add_argument("--group", default="tuning: synthetic", choices=list(SYNTHETIC_GROUPS))
    ap.add_argument("--per-start", action="store_true", help="per-start fits on the clean t5 sets the dense grid cut")
    ap.add_argument("--label-started", action="store_true", help="EM from the true labels on the default's misses in --group")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    starts = tuple(float(q) for q in args.starts.split(","))
    t0 = time.time()
    if args.per_start:
        t5 = SYNTHETIC_GROUPS["tuning: synthetic"][0]["t5"]
        result: Any = {f"clean t5, {n} rows, seed {seed}": per_start(t5(np.random.default_rng(seed), n), starts)
                       for n, seed in ((5000, 102), (100_000, 104))}
        for name, fits in result.items():
            print(name)
            for f in fits:
                print(f"  start {f['start']:.2f}: {f['upper']} edge {f['upper_mode']:.3f} (left scale {f['upper_left_scale']:.4f}), "
                      f"share {f['upper_share']:.3f}, loglik {f['loglik']:.1f}, separability {f['separability']:.3f}, "
                      f"admissible {f['admissible']}")
    elif args.label_started:
        result = label_started(args.group)
        for r in result:
            print(f"  {r['set']}, seed {r['seed']}, {r['rows']} rows, {r['unsafe_share']:.0%}: {r['verdict']}"
                  + (f" (label-started F1 {r['label_started_f1']:.3f}, log-lik {r['loglik_over_chosen']:+.1f} over the chosen fit)"
                     if "label_started_f1" in r else ""))
        print({v: sum(r["verdict"] == v for r in result) for v in ("search", "ambiguous", "model")})
    else:
        result = judge_group(args.group, starts)
        print(json.dumps({k: v for k, v in result.items() if k != "below"}))
    print(f"{time.time() - t0:.0f} s", file=sys.stderr)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
