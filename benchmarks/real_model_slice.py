"""The real-model test's run on other data seeds and settings: how large is the effect it asserts?

Builds the test's slice of the demo data (SmolLM2-135M-Instruct, stdlib docstrings, HarmBench),
runs ``forgetfilter run`` with the test's overrides plus any ``--set``, and prints the AUROC of
every score, log_ratio's spread, the class means and the stage timings.

    python benchmarks/real_model_slice.py --out runs/slice --seed 2 [--set safety_finetune.epochs=2 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import polars as pl

from pipeline.cli import main as forgetfilter
from pipeline.demo.build import build

# The settings live in the test, so the benchmark measures exactly what the test asserts.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.integration.test_real_model import OVERRIDES, SLICE  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=1, help="data seed (the test uses 1)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override on top of the test's")
    args = p.parse_args()
    paths = build(f"{args.out}/data", **SLICE, seed=args.seed)
    sets = [a for k, v in OVERRIDES.items() for a in ("--set", f"{k}={v}")] + [a for kv in args.set for a in ("--set", kv)]
    assert forgetfilter(["run", "--input", paths["corpus"], "--safety", paths["safety"], "--output", f"{args.out}/out", *sets]) == 0
    summary = json.load(open(f"{args.out}/out/report/summary.json"))
    scores = pl.read_parquet(f"{args.out}/out/work/scores/*.parquet")
    lr, y = scores["score_log_ratio"].to_numpy(), scores["label"].to_numpy()
    print(json.dumps({"seed": args.seed, "auroc": summary["evaluation"]["auroc"], "log_ratio_spread": float(np.std(lr)),
                      "unsafe_mean": float(lr[y == 1].mean()), "task_mean": float(lr[y == 0].mean()),
                      "task_sd": float(lr[y == 0].std()), "stage_seconds": summary["stage_seconds"]}, indent=2))


if __name__ == "__main__":
    main()
