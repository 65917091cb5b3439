"""Every forward-pass score and automatic threshold on several finished runs, from stored scores.

No model is run: the scores are read back from each run's ``work/scores``. Used to check that the
default score and threshold hold across seeds and settings, not on one lucky run.

    python benchmarks/compare_runs.py runs/demo/out runs/seed1/out runs/sample80/out
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from pipeline.filtering import thresholds
from pipeline.reporting.metrics import auroc, precision_recall_f1
from pipeline.runtime import rundir as layout
from pipeline.runtime.rundir import RunDir
from pipeline.scoring.scores import SCORES


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+")
    args = p.parse_args()
    rules = list(thresholds.AUTO_METHODS)
    print("| run | score | AUROC | Ashman's D | " + " | ".join(f"F1 {r}" for r in rules) + " | best F1 |")
    print("|---|---|---:|---:|" + "---:|" * len(rules) + "---:|")
    for path in args.runs:
        t = RunDir(path).read_columns(layout.SCORES, ["label"] + [f"score_{n}" for n in SCORES])
        y = np.asarray(t.column("label").to_pylist()) == 1
        for name in SCORES:
            x = t.column(f"score_{name}").to_numpy()
            f1 = [precision_recall_f1(x > thresholds.AUTO_METHODS[r](x).value, y)["f1"] for r in rules]
            best = precision_recall_f1(x > thresholds.best_f1(x, y).value, y)["f1"]
            d = thresholds.fit_mixture(x).ashman_d
            cells = " | ".join("0 (none)" if math.isnan(v) or v == 0 else f"{v:.3f}" for v in f1)
            print(f"| {path} | {name} | {auroc(x, y):.3f} | {d:.2f} | {cells} | {best:.3f} |")


if __name__ == "__main__":
    main()
