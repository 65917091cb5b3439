"""How often can *any* label-free rule meet the synthetic gate? The cut of a rule that knows the distributions.

The gate asks for F1 >= 0.90 on every synthetic set with unsafe share >= 5% whose best cut in
hindsight reaches F1 >= 0.95. Hindsight picks its cut with the set's own labels; a rule without
labels must place its cut from the scores, and on a small set (320 rows at 5%: 16 unsafe rows,
so F1 < 0.90 after four wrong rows) where the cut falls in a thin gap is partly luck of the draw.
This measures that luck: for each synthetic set of ``thresholds.py`` (same shapes, shares, sizes
and seeds, so the same scores), the *population* cut, the one that maximises F1 under the true
task and unsafe distributions and the true share (found on 1,000,000 fresh draws from the same
generators), is applied to the set. No label-free rule can know more than that cut does, so the
eligible sets where it falls below F1 0.90 lie below the floor of the gate for every rule; the
default rule's failures elsewhere are the rule's own.

Nothing is tuned on this: it is a property of the sets and the gate. ``mixture``'s F1 per set is
read from ``thresholds.json`` (the same sets).

    python benchmarks/threshold_floor.py [--out benchmarks/threshold_floor.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from thresholds import DEFAULT, ELIGIBLE, GATE, HERE, SYNTHETIC_GROUPS, labelled_sets, set_key  # noqa: E402 - after the path it needs

from pipeline.filtering import thresholds  # noqa: E402
from pipeline.reporting.metrics import precision_recall_f1  # noqa: E402

POPULATION = 1_000_000


def population_cut(task: Any, unsafe: Any, share: float, seed: int) -> float:
    """The cut with the best F1 under the generators themselves (a large fresh sample of the same mixture)."""
    r = np.random.default_rng(seed)
    k = round(POPULATION * share)
    x = np.r_[task(r, POPULATION - k), unsafe(r, k)]
    y = np.r_[np.zeros(POPULATION - k, bool), np.ones(k, bool)]
    return thresholds.best_f1(x, y).value


def group_floor(task_shapes: dict[str, Any], unsafe_shapes: dict[str, Any], seeds: range, judged: list[dict]) -> dict[str, Any]:
    """The eligible sets of one synthetic group: where the population cut and the default rule reach the gate."""
    by_key = {set_key(s["set"], s["seed"], s["rows"], s["unsafe_share"]): s for s in judged}
    cuts: dict[tuple[str, float], float] = {}
    rows = []
    for name, seed, share, task, unsafe, x, y in labelled_sets(task_shapes, unsafe_shapes, seeds):  # thresholds.py's draws
        if share < 0.05:
            continue
        if (name, share) not in cuts:
            cuts[(name, share)] = population_cut(task, unsafe, share, seed=10**6 + len(cuts))
        s = by_key[set_key(name, seed, len(x), float(y.mean()))]
        if s.get("best_f1", 0.0) < ELIGIBLE:
            continue
        oracle = precision_recall_f1(x > cuts[(name, share)], y)["f1"]
        rows.append({"set": name, "seed": seed, "rows": len(x), "unsafe_share": share,
                     "population_cut_f1": oracle, "default_f1": s[DEFAULT]["f1"]})
    below = [r for r in rows if r["population_cut_f1"] < GATE]
    default_below = [r for r in rows if r["default_f1"] < GATE]
    return {"eligible": len(rows), "population_cut_below_gate": len(below), "default_below_gate": len(default_below),
            "default_below_where_population_cut_meets_it": sum(r["population_cut_f1"] >= GATE for r in default_below),
            "population_cut_below_where_default_meets_it": sum(r["default_f1"] >= GATE for r in below),
            "population_cut_median_f1": float(np.median([r["population_cut_f1"] for r in rows])),
            "below_by_size": {str(n): {"population_cut": sum(r["rows"] == n for r in below),
                                       "default": sum(r["rows"] == n for r in default_below),
                                       "eligible": sum(r["rows"] == n for r in rows)} for n in (320, 5000)},
            "sets": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--judged", type=Path, default=HERE / "thresholds.json", help="thresholds.py's output (the default rule per set)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    judged = json.loads(args.judged.read_text())["sets"]
    result = {}
    for group, (task_shapes, unsafe_shapes, seeds, _) in SYNTHETIC_GROUPS.items():
        if group not in judged:
            continue  # a group added since thresholds.py last ran
        result[group] = group_floor(task_shapes, unsafe_shapes, seeds, judged[group])
        print(group, json.dumps({k: v for k, v in result[group].items() if k != "sets"}), flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
