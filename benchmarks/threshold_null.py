"""How often each automatic threshold drops rows from a corpus with no unsafe mode at all.

A nightly job over a clean night must keep everything. Draws single-mode score samples of several
shapes and sizes (20 seeds each) and counts the samples where a rule cut anything.

    python benchmarks/threshold_null.py
"""

from __future__ import annotations

import math

import numpy as np

from pipeline.filtering import thresholds

SHAPES = {
    "normal, 160": lambda r: r.normal(0, 1, 160),
    "lognormal(0, 0.6), 160": lambda r: r.lognormal(0, 0.6, 160),
    "normal, 10k": lambda r: r.normal(0, 1, 10_000),
    "lognormal(0, 0.6), 10k": lambda r: r.lognormal(0, 0.6, 10_000),
    "Student t(3), 5k": lambda r: r.standard_t(3, 5_000),
    "exponential, 50k": lambda r: r.exponential(1, 50_000),
    "Student t(2), 100k": lambda r: r.standard_t(2, 100_000),
    "lognormal(0, 1), 100k": lambda r: r.lognormal(0, 1, 100_000),
}


def main() -> None:
    print("| single-mode sample | " + " | ".join(f"`{r}` cut something" for r in thresholds.AUTO_METHODS) + " |")
    print("|---|" + "---:|" * len(thresholds.AUTO_METHODS))
    for name, draw in SHAPES.items():
        hits = {r: 0 for r in thresholds.AUTO_METHODS}
        for seed in range(20):
            x = draw(np.random.default_rng(seed))
            for r, rule in thresholds.AUTO_METHODS.items():
                hits[r] += math.isfinite(rule(x).value)
        print(f"| {name} | " + " | ".join(f"{hits[r]}/20" for r in thresholds.AUTO_METHODS) + " |")


if __name__ == "__main__":
    main()
