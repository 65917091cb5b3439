"""The threshold benchmark: every automatic rule on labelled score sets it was or was not tuned on.

Groups, kept apart:

- **tuning** (what the rules' constants were chosen on): synthetic task + unsafe score sets (task
  mode normal, right-skewed gamma, lognormal, Student t(5); unsafe as a mode, a plateau, a long
  tail, a tail from the task mode's shoulder, a taller narrow peak; unsafe share 1/5/10/25/50%;
  320 and 5,000 rows; 3 seeds each), clean synthetic sets (one mode, 160 to 100,000 rows, 5 seeds
  each), the demo run's scores, and the real runs of ``SEEN_WHILE_TUNING``;
- **evaluation** (real pipeline runs never looked at while choosing the rule): the other files of
  ``benchmarks/threshold_data/`` written by ``benchmarks/threshold_runs.py`` (other task sources,
  reply styles, unsafe shares, clean corpora);
- **evaluation: synthetic** (``HELD_OUT_TASK`` x ``HELD_OUT_UNSAFE``, other seeds), **evaluation:
  synthetic, second** (``SECOND_HELD_OUT_*``), **evaluation: synthetic, third** (``THIRD_HELD_OUT_*``),
  **evaluation: synthetic, fourth** (``FOURTH_HELD_OUT_*``) and **evaluation: synthetic, fifth** (``FIFTH_HELD_OUT_*``):
  score shapes the rule was never tuned on, each fixed before any rule was run on it (2026-12-03, the
  third, fourth and fifth 2026-12-04).

For every real run the confounds are measured too: AUROC of loss under A alone, loss under B alone
and response length against the filter's score.

Gates (issue 10): on every labelled set with unsafe share >= 5% whose best cut in hindsight reaches
F1 >= 0.95, the default rule's F1 >= 0.90 (median >= 0.93); on clean sets it drops <= 1% of rows.

    python benchmarks/thresholds.py [--out benchmarks/thresholds.json]
    python benchmarks/thresholds.py --real-only   # after a new real run: the tuning groups are kept from --out
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Iterator
from multiprocessing import get_context
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import Config, FilterConfig, ScoringConfig
from pipeline.filtering import prompts, thresholds
from pipeline.reporting.metrics import auroc, precision_recall_f1
from pipeline.scoring.scores import REFUSAL, SCORES
from pipeline.stages.filter import choose_threshold, corroborating_scores, fallback_score, votes_asked

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import rule_results  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT = next(iter(thresholds.AUTO_METHODS))
DEFAULT_SCORE = ScoringConfig().method

TASK = {
    "normal": lambda r, n: r.normal(0.05, 0.05, n),
    "skewed": lambda r, n: r.gamma(3, 0.03, n) - 0.03,
    "lognormal": lambda r, n: r.lognormal(-2.5, 0.5, n) - 0.05,
    "t5": lambda r, n: 0.05 + 0.04 * r.standard_t(5, n),
}
UNSAFE = {
    "mode": lambda r, n: r.normal(0.7, 0.12, n),
    "plateau": lambda r, n: r.uniform(0.27, 1.29, n),
    "tail": lambda r, n: 0.2 + r.exponential(0.3, n),
    # A tail that starts on the task mode's shoulder (2 task scales out), as the real runs at the
    # package defaults give (docstrings, jokes): the likeliest upper component is then a
    # half-normal whose edge is 1-1.5 task scales from the task mode.
    "shoulder tail": lambda r, n: 0.15 + r.exponential(0.15, n),
    "taller peak": lambda r, n: r.normal(0.5, 0.02, n),
}
SHARES = (0.01, 0.05, 0.10, 0.25, 0.50)
HELD_OUT_TASK = {
    "laplace": lambda r, n: 0.05 + r.laplace(0.0, 0.03, n),  # symmetric, exponential tails both sides
    "gumbel": lambda r, n: r.gumbel(0.04, 0.03, n),  # right-skewed, exponential right tail
    "weibull": lambda r, n: 0.06 * r.weibull(1.3, n) - 0.02,  # a steep left edge, a long right side
    # a corpus pooled from two task sources that forget a little differently (70/30, overlapping)
    "two task modes": lambda r, n: np.r_[r.normal(0.03, 0.03, n - n * 3 // 10), r.normal(0.12, 0.04, n * 3 // 10)],
}
HELD_OUT_UNSAFE = {
    "gamma": lambda r, n: 0.15 + r.gamma(2.0, 0.12, n),  # a skewed hump starting near the task tail
    "lognormal": lambda r, n: 0.2 + r.lognormal(-1.2, 0.5, n),
    # two reply styles forgotten to different degrees
    "two modes": lambda r, n: np.r_[r.normal(0.35, 0.05, n // 2), r.normal(0.9, 0.15, n - n // 2)],
    "wide": lambda r, n: r.normal(0.55, 0.2, n),  # broad, reaching into the task mode
}
"""Shapes for the synthetic evaluation group: never used to choose or tune a rule. Their seeds
(10-12 labelled, 200-204 clean) differ from the tuning group's too."""
SECOND_HELD_OUT_TASK = {
    "logistic": lambda r, n: 0.05 + r.logistic(0.0, 0.025, n),  # symmetric, tails between normal and Laplace
    "chi2": lambda r, n: 0.02 * r.chisquare(4, n) - 0.03,  # right-skewed
    "left-skewed": lambda r, n: 0.1 - r.gamma(2.0, 0.03, n),  # a long *left* tail, a steep right side
    # 2% garbage rows with arbitrary losses on both sides of the mode
    "normal + outliers": lambda r, n: np.r_[r.normal(0.05, 0.05, n - n // 50), r.uniform(-0.3, 0.5, n // 50)],
}
SECOND_HELD_OUT_UNSAFE = {
    "narrow uniform": lambda r, n: r.uniform(0.3, 0.6, n),
    "far exponential": lambda r, n: 0.4 + r.exponential(0.1, n),
    "wide gamma": lambda r, n: 0.1 + r.gamma(1.5, 0.3, n),
    "normal": lambda r, n: r.normal(0.45, 0.08, n),
}
"""A second synthetic evaluation group (seeds 20-22, clean 300-304), fixed on 2026-12-03 before
the mirrored-left-tail change (reverted: RESULTS.md) was run on anything, because it was prompted by the first
group's misses. "left-skewed" is a shape where the change is expected to do harm."""
THIRD_HELD_OUT_TASK = {
    "t3": lambda r, n: 0.05 + 0.03 * r.standard_t(3, n),  # heavier-tailed than any task shape tuned on
    "wald": lambda r, n: r.wald(0.1, 0.5, n) - 0.05,  # inverse Gaussian: right-skewed, a long right side
    "beta": lambda r, n: 0.3 * r.beta(2.0, 8.0, n) - 0.02,  # bounded both sides, right-skewed
    "wide normal": lambda r, n: r.normal(0.08, 0.08, n),  # a task mode that forgets a lot, unevenly
}
THIRD_HELD_OUT_UNSAFE = {
    "triangular": lambda r, n: r.triangular(0.25, 0.4, 1.0, n),
    "beta far": lambda r, n: 0.3 + 0.8 * r.beta(5.0, 2.0, n),  # a left-skewed hump far out
    "pareto": lambda r, n: 0.25 + 0.1 * r.pareto(3.0, n),  # a hard edge and a power-law tail
    "near normal": lambda r, n: r.normal(0.35, 0.06, n),  # close to the task mode
}
"""A third synthetic evaluation group (seeds 30-32, clean 400-404), fixed on 2026-12-04 (sixteenth session) before
any rule was run on it. That session read the misses of all three other synthetic groups, so none of them tests a
change made after it; this group does."""
FOURTH_HELD_OUT_TASK = {
    "skew normal": lambda r, n: 0.02 + 0.05 * (0.9 * np.abs(r.normal(size=n)) + 0.436 * r.normal(size=n)),  # delta 0.9
    "three bumps": lambda r, n: r.normal(0.0, 0.02, n) + 0.05 * r.integers(0, 3, n),  # a lumpy task mode
    "flat": lambda r, n: r.uniform(-0.05, 0.15, n),  # no peak at all: lighter tails than a normal
    "gamma 1.5": lambda r, n: r.gamma(1.5, 0.04, n) - 0.02,  # steep left edge, long right side
}
FOURTH_HELD_OUT_UNSAFE = {
    "half-normal far": lambda r, n: 0.3 + np.abs(r.normal(0.0, 0.25, n)),
    "log-uniform": lambda r, n: np.exp(r.uniform(math.log(0.2), math.log(1.5), n)),  # dense near its lower edge
    "near peak + far tail": lambda r, n: np.r_[r.normal(0.3, 0.03, n * 3 // 10), 0.5 + r.exponential(0.3, n - n * 3 // 10)],
    "weibull hump": lambda r, n: 0.2 + 0.5 * r.weibull(2.5, n),
}
"""A fourth synthetic evaluation group (seeds 40-42, clean 500-504), fixed on 2026-12-04 (nineteenth session) before
any rule was run on it, because that session read the other groups' misses (``threshold_floor.py``) and looked
at the fits behind some of them."""
FIFTH_HELD_OUT_TASK = {
    "t10": lambda r, n: 0.05 + 0.04 * r.standard_t(10, n),  # a little heavier-tailed than a normal
    "narrow lognormal": lambda r, n: r.lognormal(-2.3, 0.3, n) - 0.06,  # a mild right skew
    "gamma 6": lambda r, n: r.gamma(6.0, 0.015, n) - 0.04,  # close to a normal, a slightly longer right side
    "flat-topped": lambda r, n: np.r_[r.normal(0.02, 0.025, n // 2), r.normal(0.08, 0.025, n - n // 2)],  # two equal sources
}
FIFTH_HELD_OUT_UNSAFE = {
    "uniform mid": lambda r, n: r.uniform(0.3, 0.8, n),
    "gamma far": lambda r, n: 0.25 + r.gamma(3.0, 0.08, n),
    "two narrow peaks": lambda r, n: np.r_[r.normal(0.4, 0.02, n // 2), r.normal(0.8, 0.02, n - n // 2)],
    "edge + slow exponential": lambda r, n: 0.3 + r.exponential(0.5, n),
}
"""A fifth synthetic evaluation group (seeds 50-52, clean 600-604), fixed on 2026-12-04 (twentieth session) before
any rule or candidate was run on it: the other four groups' misses have been read, and that session tried start-grid
variants on the tuning group (RESULTS.md), so the next candidate is to be judged here first."""
SYNTHETIC_GROUPS = {
    "tuning: synthetic": (TASK, UNSAFE, range(3), range(100, 105)),
    "evaluation: synthetic": (HELD_OUT_TASK, HELD_OUT_UNSAFE, range(10, 13), range(200, 205)),
    "evaluation: synthetic, second": (SECOND_HELD_OUT_TASK, SECOND_HELD_OUT_UNSAFE, range(20, 23), range(300, 305)),
    "evaluation: synthetic, third": (THIRD_HELD_OUT_TASK, THIRD_HELD_OUT_UNSAFE, range(30, 33), range(400, 405)),
    "evaluation: synthetic, fourth": (FOURTH_HELD_OUT_TASK, FOURTH_HELD_OUT_UNSAFE, range(40, 43), range(500, 505)),
    "evaluation: synthetic, fifth": (FIFTH_HELD_OUT_TASK, FIFTH_HELD_OUT_UNSAFE, range(50, 53), range(600, 605)),
}
"""Each synthetic group: task shapes, unsafe shapes, labelled seeds, clean seeds (``synthetic``)."""
SEEN_WHILE_TUNING = {
    "docstrings-25pct-templated-160rows-seed0-demo-alignedbase", "docstrings-25pct-varied-320rows-seed0-defaults-safety80",
    "jokes-10pct-templated-120rows-seed0-strong", "jokes-25pct-varied-120rows-seed0-strong", "jokes-25pct-varied-160rows-seed0-demo",
    "jokes-25pct-varied-320rows-seed0-defaults-safety80", "wordnet-00pct-varied-120rows-seed0-strong",
    "wordnet-00pct-varied-160rows-seed0-demo", "wordnet-05pct-varied-120rows-seed0-strong", "wordnet-25pct-varied-120rows-seed0-strong",
    "wordnet-25pct-varied-160rows-seed0-demo", "wordnet-25pct-varied-320rows-seed0-defaults-safety80",
}
"""Real runs whose scores were looked at when the rule's constants were last chosen (2026-12-02:
``MODE_GAP_MIN`` and ``EXPECTED_F1_MIN``, after two runs at the package defaults showed the
shoulder shape). They were evaluation runs for the rule before; for the current rule they are tuning."""


GATE, ELIGIBLE = 0.90, 0.95
"""Issue 10's gate: F1 >= ``GATE`` on every labelled set (>= 5% unsafe) whose best cut in hindsight reaches ``ELIGIBLE``."""


def set_key(name: str, seed: int, rows: int, unsafe_share: float) -> tuple[str, int, int, float]:
    """A synthetic set's identity in ``thresholds.json``: how a set rebuilt by ``labelled_sets`` finds its judged row."""
    return name, seed, rows, round(unsafe_share, 6)


def cut_result(drop: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Precision, recall, F1 and counts of the rows ``drop`` against the labels ``y``, and the share dropped."""
    return {**precision_recall_f1(drop, y), "dropped": float(drop.mean())}


def judge(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Each rule's F1 and drop share on one labelled set, and the best F1 in hindsight."""
    out: dict[str, Any] = {"rows": len(x), "unsafe_share": float(y.mean())}
    if y.any() and not y.all():
        out["auroc"] = auroc(x, y.astype(float))
        out["best_f1"] = precision_recall_f1(x > thresholds.best_f1(x, y).value, y)["f1"]
    for rule, m in rule_results(x, y).items():
        out[rule] = {**m, "dropped": m["dropped"] / len(x)}  # a share, comparable across set sizes
    return out


def labelled_sets(task_shapes: dict[str, Any], unsafe_shapes: dict[str, Any],
                  seeds: range) -> Iterator[tuple[str, int, float, Any, Any, np.ndarray, np.ndarray]]:
    """Every task shape x unsafe shape x share x size x seed: (name, seed, share, task, unsafe, scores, labels),
    drawn the same way wherever a set is rebuilt (``threshold_floor.py`` too)."""
    for n in (320, 5000):
        for share in SHARES:
            for tk, task in task_shapes.items():
                for uk, unsafe in unsafe_shapes.items():
                    for seed in seeds:
                        r = np.random.default_rng(seed)
                        k = round(n * share)
                        x = np.r_[task(r, n - k), unsafe(r, k)]
                        y = np.r_[np.zeros(n - k, bool), np.ones(k, bool)]
                        yield f"{tk} + {uk}", seed, share, task, unsafe, x, y


def clean_sets(task_shapes: dict[str, Any], clean_seeds: range) -> Iterator[tuple[str, int, np.ndarray]]:
    """Every task shape alone (a clean corpus) at 160 to 100,000 rows: (name, seed index, scores)."""
    for n in (160, 320, 5000, 100_000):
        for tk, task in task_shapes.items():
            for seed in clean_seeds:
                yield f"clean {tk}", seed - clean_seeds.start, task(np.random.default_rng(seed), n)


def _judged(name: str, seed: int, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    return {"set": name, "seed": seed, **judge(x, y)}


def synthetic(task_shapes: dict[str, Any], unsafe_shapes: dict[str, Any], seeds: range, clean_seeds: range,
              pool: Pool) -> list[dict[str, Any]]:
    """Every labelled set (``labelled_sets``), judged; then every clean set (``clean_sets``), in that order.

    The sets are drawn here and judged in ``pool``'s processes: each judgement is independent and CPU-bound
    (a few EM fits), so the benchmark's wall time divides by the cores."""
    return pool.starmap(_judged, group_jobs(task_shapes, unsafe_shapes, seeds, clean_seeds), chunksize=8)


def group_jobs(task_shapes: dict[str, Any], unsafe_shapes: dict[str, Any], seeds: range,
               clean_seeds: range) -> list[tuple[str, int, np.ndarray, np.ndarray]]:
    """Every set of a synthetic group as (name, seed, scores, labels): the labelled sets, then the clean ones (all labels 0)."""
    jobs = [(name, seed, x, y) for name, seed, _, _, _, x, y in labelled_sets(task_shapes, unsafe_shapes, seeds)]
    return jobs + [(name, seed, x, np.zeros(len(x), bool)) for name, seed, x in clean_sets(task_shapes, clean_seeds)]


CORROBORATED = "mixture+corroboration"
"""The package default's cut as the filter stage makes it (``choose_threshold`` with the default
config): ``mixture`` on the default score, made only if ``filter.corroborate`` backs it (by default
B's prompt states, ``safety_prompts``). Only runs whose file carries those states (``prompt_states``
in each set) can be judged; on the others the default is "-" and left out of the gates. Only real
runs have the losses and states, so on real runs this is the default and plain ``mixture`` its first step.
Since the thirteenth session it includes the default ``filter.fallback`` (``delta``'s own cut where
``log_ratio`` finds none), whose cut may be on ``delta``; since the fourteenth the second vote, on the rows'
replies (``reply_prompts``), which only runs whose file carries reply states can have: on the others the
default is judged only where that vote cannot change its cut (``judgeable``); since the twenty-third, the vote
extension (``filter.extend_by_votes``; the cut without it is ``UNEXTENDED``) and, after a withdrawn cut, the
fallback's cut where the votes back it."""


TWELFTH_SESSION_RUNS = {
    "docstrings-25pct-templated-120rows-seed10-strong-evaluation.enabled=false",
    "jokes-25pct-varied-120rows-seed10-strong-evaluation.enabled=false",
    "calendar-10pct-varied-120rows-seed10-strong-evaluation.enabled=false",
    "mixed-00pct-varied-120rows-seed10-strong-evaluation.enabled=false",
    "docstrings-25pct-hijacked-120rows-seed10-strong-evaluation.enabled=false",
    "jokes-25pct-hijacked-120rows-seed10-strong-evaluation.enabled=false",
    "calendar-25pct-hijacked-120rows-seed10-strong-evaluation.enabled=false",
    "calendar-00pct-varied-120rows-seed11-strong-evaluation.enabled=false",
    "calendar-25pct-hijacked-120rows-seed11-strong-evaluation.enabled=false",
    "docstrings-10pct-varied-120rows-seed11-strong-evaluation.enabled=false",
}
"""The twelfth session's runs (2026-12-03), made after every rule below was fixed: five pre-registered, two
more ``hijacked`` corpora added after the first one's result (to see whether it holds on other sources), and
three seed-11 runs pre-registered for the size-capped candidate of ``threshold_totals.py``."""

THIRTEENTH_SESSION_RUNS = {
    "calendar-25pct-hijacked-320rows-seed12-defaults-safety80", "calendar-00pct-varied-320rows-seed12-defaults-safety80",
    "docstrings-10pct-varied-320rows-seed12-defaults-safety80", "mixed-00pct-varied-320rows-seed12-defaults-safety80",
}
"""The thirteenth session's runs at the package defaults (2026-12-03), pre-registered for the size-capped list and
the ``delta`` fallback before they ran."""
FOURTEENTH_SESSION_RUNS = {
    f"{spec}-120rows-seed13-strong-evaluation.enabled=false" for spec in (
        "calendar-25pct-hijacked", "calendar-00pct-varied", "mixed-00pct-varied", "docstrings-25pct-hijacked",
        "jokes-25pct-hijacked", "docstrings-10pct-varied")
}
"""The fourteenth session's seed-13 runs (2026-12-04), pre-registered in RESULTS.md before any of them started."""
FIFTEENTH_SESSION_RERUNS = {
    f"{spec}-320rows-seed{seed}-defaults-safety80" for spec, seed in (
        ("calendar-00pct-varied", 7), ("calendar-00pct-varied", 8), ("mixed-00pct-varied", 3), ("mixed-00pct-varied", 4),
        ("mixed-00pct-varied", 5), ("docstrings-00pct-varied", 6), ("calendar-00pct-varied", 0), ("mixed-00pct-varied", 2),
        ("mixed-00pct-varied", 1))
}
"""Clean corpora made before the reply vote, re-run in the fifteenth session (2026-12-04, pre-registered in
RESULTS.md; mixed seeds 2 and 1 finished in the sixteenth) with the same seeds and settings so that their files carry
reply states. The re-runs reproduced the old scores (to within 5e-5); only the states are new, so these count as fresh
for the reply vote and for nothing else."""
SEVENTEENTH_SESSION_RERUNS = {
    f"{spec}-320rows-seed{seed}-defaults-safety80" for spec, seed in (
        ("docstrings-05pct-varied", 5), ("docstrings-10pct-varied", 5), ("mixed-10pct-varied", 3), ("mixed-10pct-varied", 4))
}
"""Runs with unsafe rows made before the reply vote, re-run in the seventeenth session (2026-12-04, pre-registered in
RESULTS.md) with the same seeds and settings and ``model.precision=fp32`` (that session's CPU had AVX512-BF16; the
originals ran in fp32 on AVX2), so that their files carry reply states. Each reproduced the old losses to within 1e-3
(the pre-registered bound; across CPU kinds), so it replaces the original and counts as fresh for the reply vote only.
Mixed 10% seed 4, the fourth, was made on the same terms in the eighteenth session (max |diff| 9.0e-4)."""
TWENTY_SECOND_SESSION_RUNS = {
    f"{spec}-320rows-seed14-defaults-safety80" for spec in (
        "wordnet-25pct-varied", "jokes-25pct-varied", "wordnet-00pct-varied", "docstrings-25pct-varied", "calendar-10pct-varied")
}
"""Fresh runs of the package default as it has stood since the fourteenth session (2026-12-05, twenty-second session;
pre-registered in RESULTS.md before the first started): the issue's own shape (320 rows, 80 refusals, no config file),
seed 14, which no run had used. No rule or candidate has seen them; they are judged as they come."""
TWENTY_THIRD_SESSION_RUNS = {
    f"{spec}-320rows-seed15-defaults-safety80" for spec in ("calendar-10pct-varied", "calendar-00pct-varied", "calendar-25pct-varied")
}
"""Fresh runs for the vote-backed fallback after a withdrawn cut (2026-12-05, twenty-third session; pre-registered in
RESULTS.md before the first started): seed 15, which no run had used, on calendar corpora, where the votes withdraw
cuts. No rule or candidate has seen them."""
TWENTY_FOURTH_SESSION_RUNS = {
    f"{spec}-320rows-seed{seed}-defaults-safety80" for spec, seed in (
        ("docstrings-25pct-varied", 16), ("wordnet-10pct-varied", 16), ("calendar-25pct-varied", 17), ("wordnet-10pct-varied", 17))
}
"""Fresh runs of the package default as the twenty-third session left it (2026-12-05, twenty-fourth session;
pre-registered in RESULTS.md before each started): the issue's own shape, seed 16, and seed 17 for the net-votes
candidate (two of its four; no run had used either seed). No rule has been chosen on them; they are judged as they come."""
TWENTY_FIFTH_SESSION_RUNS = {
    f"{spec}-320rows-seed18-defaults-safety80" for spec in (
        "calendar-10pct-varied", "calendar-25pct-varied", "jokes-25pct-varied", "calendar-00pct-varied")
}
"""Fresh runs for the third component on the filter's own score (2026-12-05, twenty-fifth and twenty-sixth sessions;
pre-registered in RESULTS.md before the first started): the issue's own shape, seed 18, which no run had used. No
rule has been chosen on them; they are judged as they come."""
TWENTY_EIGHTH_SESSION_RUNS = {
    f"{spec}-320rows-seed19-defaults-safety80" for spec in (
        "docstrings-25pct-varied", "wordnet-25pct-varied", "jokes-25pct-varied", "mixed-00pct-varied")
}
"""Fresh runs of the package default as the twenty-sixth session adopted it (2026-12-05, twenty-eighth session;
pre-registered in RESULTS.md before the first started): the issue's own shape, seed 19, which no run had used. No
rule has been chosen on them; they are judged as they come."""
SINCE_TWENTY_SECOND_SESSION = (TWENTY_SECOND_SESSION_RUNS | TWENTY_THIRD_SESSION_RUNS | TWENTY_FOURTH_SESSION_RUNS
                               | TWENTY_FIFTH_SESSION_RUNS | TWENTY_EIGHTH_SESSION_RUNS)
"""The fresh runs since the twenty-second session: made after corroboration, the prompt and reply votes, the vote
extension and the ``delta`` fallback were written down, so they are evaluation runs for each of those."""
MADE_AFTER_REPLY_VOTE = (FOURTEENTH_SESSION_RUNS | FIFTEENTH_SESSION_RERUNS | SEVENTEENTH_SESSION_RERUNS | SINCE_TWENTY_SECOND_SESSION)
"""Real runs whose reply states were first computed after ``reply_prompts`` joined the default (fourteenth
session): its only evaluation runs. The 17 runs whose reply states ``score_probes.py --probe replies`` added are
the data it was adopted on."""

MADE_AFTER_FALLBACK = {
    "docstrings-10pct-varied-320rows-seed12-defaults-safety80", "mixed-00pct-varied-320rows-seed12-defaults-safety80",
} | FOURTEENTH_SESSION_RUNS | SINCE_TWENTY_SECOND_SESSION
"""Real runs made after ``filter.fallback`` took the form it had until the twenty-third session (no fallback after
a withdrawn cut; pre-registered in RESULTS.md after the first two seed-12 runs): its only evaluation runs. Since
the twenty-third session a fallback after a withdrawn cut is made where the votes back it; its fresh runs are
``TWENTY_THIRD_SESSION_RUNS``."""

MADE_AFTER_CORROBORATION = {
    "docstrings-25pct-varied-320rows-seed4-defaults-safety80", "mixed-00pct-varied-320rows-seed4-defaults-safety80",
    "mixed-10pct-varied-320rows-seed4-defaults-safety80", "docstrings-25pct-templated-320rows-seed4-strong-evaluation.enabled=false",
    "calendar-00pct-varied-320rows-seed4-defaults-safety80", "mixed-00pct-varied-320rows-seed5-defaults-safety80",
    "docstrings-10pct-varied-320rows-seed5-defaults-safety80", "docstrings-05pct-varied-320rows-seed5-defaults-safety80",
    "docstrings-50pct-varied-240rows-seed5-defaults-safety80", "docstrings-50pct-varied-240rows-seed6-defaults-safety80",
    "docstrings-25pct-varied-320rows-seed6-defaults-safety80", "docstrings-00pct-varied-320rows-seed6-defaults-safety80",
    "jokes-50pct-varied-240rows-seed6-defaults-safety80", "calendar-00pct-varied-320rows-seed7-defaults-safety80",
    "calendar-50pct-varied-240rows-seed7-defaults-safety80", "calendar-00pct-varied-320rows-seed8-defaults-safety80",
    "docstrings-50pct-varied-240rows-seed8-defaults-safety80", "calendar-00pct-varied-320rows-seed9-defaults-safety80",
    "mixed-00pct-varied-320rows-seed9-defaults-safety80", "docstrings-25pct-templated-120rows-seed9-strong-evaluation.enabled=false",
} | TWELFTH_SESSION_RUNS | THIRTEENTH_SESSION_RUNS | FOURTEENTH_SESSION_RUNS | SINCE_TWENTY_SECOND_SESSION
"""Real runs made after corroboration was chosen (on every run before them, 2026-12-02): the only
evaluation runs for ``mixture+corroboration``; they are also in the evaluation group above."""
MADE_AFTER_SAFETY_PROMPTS = {
    "docstrings-50pct-varied-240rows-seed8-defaults-safety80", "calendar-00pct-varied-320rows-seed9-defaults-safety80",
    "mixed-00pct-varied-320rows-seed9-defaults-safety80", "docstrings-25pct-templated-120rows-seed9-strong-evaluation.enabled=false",
} | TWELFTH_SESSION_RUNS | THIRTEENTH_SESSION_RUNS | FOURTEENTH_SESSION_RUNS | SINCE_TWENTY_SECOND_SESSION
"""Real runs made after ``safety_prompts`` joined the default (2026-12-03, tenth session), with the
pipeline's own prompt states: the only evaluation runs for it. The 21 runs whose states
``score_probes.py --probe prompts`` added are its tuning data. The prompt vote alone became the
default after the calendar seed-9 run (eleventh session), so for that default only the mixed seed-9
run and later ones are fresh."""


UNEXTENDED = "mixture+corroboration, before the vote extension"
"""The default's cut without ``filter.extend_by_votes`` (the default until the twenty-third session, 2026-12-05),
beside the default's own (``CORROBORATED``): what the extension changed on each run. The extension was
pre-registered in RESULTS.md (twelfth session) as ``EXTENDED`` and judged here as a candidate until it joined
the default: where the prompt vote backs a cut, the rows just below it vote too, and the cut moves down to
where the net count of safety votes, walking down the scores, peaks (``filtering.prompts.extended_cut``)."""

BEFORE_EXTENSION = Config(filter=FilterConfig(extend_by_votes=False))
"""The config of ``UNEXTENDED``."""

MADE_AFTER_EXTENSION = (TWELFTH_SESSION_RUNS | THIRTEENTH_SESSION_RUNS | FOURTEENTH_SESSION_RUNS | SINCE_TWENTY_SECOND_SESSION)
"""Real runs made after the vote extension was written down (2026-12-03, twelfth session): its only evaluation runs."""


States = tuple[np.ndarray, np.ndarray, np.ndarray | None]
"""B's states stored with a run: its rows' prompt states, the safety set's prompt states, and its rows' reply
states (``reply_state``; None where the file has none)."""


def config_cut(scores: dict[str, np.ndarray], states: States | None, cfg: Config) -> thresholds.Threshold:
    """The cut the filter stage makes under ``cfg`` on one real run (``scores``: every forward-pass score by
    name; ``states``: ``States`` or None), each vote taken from the stored states as ``filter.state_share``
    takes it from the run's shards. A vote whose states the file lacks is not asked (``judgeable`` says
    where that could change the cut)."""
    x = scores[cfg.scoring.method]
    # Runs made before the score stage wrote `refusal` (and not probed for it since) lack it.
    others = {name: scores[name] for name in corroborating_scores(cfg) if name in scores}

    def votes_on(score: np.ndarray) -> dict[str, Any]:
        """Each vote the run has states for, on cuts of ``score`` (the filter's own, or the fallback's)."""
        if states is None:
            return {}
        rows, safety, replies = states
        columns = {thresholds.SAFETY_PROMPTS: rows, thresholds.REPLY_PROMPTS: replies}
        return {name: (lambda value, c=columns[name]: prompts.cut_share([(score, c)], value, safety))
                for name in votes_asked(cfg) if columns[name] is not None}

    fallback = fallback_score(cfg)
    extension = None
    if states is not None and thresholds.SAFETY_PROMPTS in votes_asked(cfg):
        extension = lambda value: prompts.vote_extension(lambda: [(x, states[0])], value, states[1])  # noqa: E731
    return choose_threshold(x, cfg.filter, others, votes_on(x), scores[fallback] if fallback else None, extension,
                            votes_on(scores[fallback]) if fallback else None)


def judgeable(scores: dict[str, np.ndarray], states: States | None, cfg: Config) -> bool:
    """Whether ``config_cut`` is the filter stage's cut on this run: the run has every vote's states, or the
    ones it lacks cannot matter (the votes it has backed the cut, or the rule proposed none)."""
    asked = votes_asked(cfg)
    if not asked:
        return True
    if states is None:
        return False
    if thresholds.REPLY_PROMPTS not in asked or states[2] is not None:
        return True
    t = config_cut(scores, states, cfg)
    proposed = thresholds.WITHDRAWN_CUT in t.evidence or thresholds.WEAK_CUT in t.evidence
    return (t.score is None and math.isfinite(t.value)) or not proposed


def config_drop(scores: dict[str, np.ndarray], states: States | None, cfg: Config) -> np.ndarray:
    """The rows ``config_cut`` drops, on the score its cut is on (a fallback's own)."""
    t = config_cut(scores, states, cfg)
    return scores[t.score or cfg.scoring.method] > t.value


def corroborated(scores: dict[str, np.ndarray], y: np.ndarray, states: States | None = None,
                 cfg: Config | None = None) -> dict[str, float] | None:
    """The default config's cut on one real run (``config_cut``), in the form of ``judge``'s rule results; None
    where the run lacks states the default's cut depends on (``judgeable``: the pipeline would stop and ask to
    re-score). ``cfg``: another config's cut instead (``BEFORE_EXTENSION``)."""
    cfg = cfg or Config()
    if not judgeable(scores, states, cfg):
        return None
    drop = config_drop(scores, states, cfg)
    m = precision_recall_f1(drop, y)
    return {k: m[k] for k in ("precision", "recall", "f1")} | {"dropped": float(drop.mean())}


def run_arrays(d: dict[str, Any]) -> tuple[np.ndarray, tuple[np.ndarray, ...], dict[str, np.ndarray], States | None]:
    """One ``threshold_data`` file's labels, (loss A, loss B, response tokens), every forward-pass score by name
    (``refusal`` too where the file has it), and B's ``States`` (None where it has no prompt states)."""
    rows = d["rows"]
    y = np.array([r["label"] for r in rows], bool)
    la, lb, n = (np.array([r[k] for r in rows], float) for k in ("loss_a", "loss_b", "n_tokens"))
    scores = {name: fn(la, lb, n) for name, fn in SCORES.items()}
    if REFUSAL in rows[0]:
        scores[REFUSAL] = np.array([r[REFUSAL] for r in rows], float)
    replies = np.array([r["reply_state"] for r in rows], float) if "reply_state" in rows[0] else None
    states = (np.array([r["prompt_state"] for r in rows], float), np.array(d["safety_prompt_states"], float), replies
              ) if "prompt_state" in rows[0] else None
    return y, (la, lb, n), scores, states


def real_runs() -> list[dict[str, Any]]:
    """Every real run's judged scores; ``tuned_on`` says whether the current rule was chosen looking at it."""
    sets = []
    for path in sorted((HERE / "threshold_data").glob("*.json")):
        d = json.loads(path.read_text())
        y, (la, lb, n), scores, states = run_arrays(d)
        x = scores[DEFAULT_SCORE]  # the score the pipeline writes by default
        out = {"set": d["run"], "source": d["source"], "recipe": d.get("recipe", "demo"),
               "tuned_on": d["run"] in SEEN_WHILE_TUNING, "prompt_states": states is not None, **judge(x, y),
               CORROBORATED: corroborated(scores, y, states), UNEXTENDED: corroborated(scores, y, states, BEFORE_EXTENSION)}
        if y.any() and not y.all():
            out["confounds_auroc"] = {"loss_a_alone": auroc(la, y.astype(float)), "loss_b_alone": auroc(lb, y.astype(float)),
                                      "response_tokens": auroc(n, y.astype(float))}
        out["default_rule_by_score"] = {name: by_score(scores[name], y, n) for name in SCORES}
        sets.append(out)
    return sets


def auroc_within_length(x: np.ndarray, y: np.ndarray, n: np.ndarray) -> float:
    """AUROC inside quartiles of response length, averaged with the unsafe rows as weights.

    A score that only tracks length (unsafe replies here are longer than most task answers) loses
    its edge inside a quartile; strata with fewer than two rows of either class are skipped.
    """
    edges = np.quantile(n, [0.25, 0.5, 0.75])
    stratum = np.searchsorted(edges, n, side="left")
    parts = [(auroc(x[m], y[m].astype(float)), int(y[m].sum())) for m in (stratum == k for k in range(4))
             if y[m].sum() >= 2 and (~y[m]).sum() >= 2]
    return sum(a * w for a, w in parts) / sum(w for _, w in parts) if parts else math.nan


def by_score(x: np.ndarray, y: np.ndarray, n: np.ndarray) -> dict[str, float]:
    """The default rule on one score of a real run: AUROC (overall and within length quartiles), F1,
    and task rows dropped (its cost on a clean corpus)."""
    drop = x > thresholds.AUTO_METHODS[DEFAULT](x).value
    labelled = bool(y.any() and not y.all())
    out = {"auroc": auroc(x, y.astype(float)) if labelled else math.nan,
           "auroc_within_length": auroc_within_length(x, y, n) if labelled else math.nan,
           "f1": precision_recall_f1(drop, y)["f1"] if y.any() else math.nan}
    return out | {"task_rows_dropped": int((drop & ~y).sum()), "dropped": float(drop.mean())}


def demo() -> dict[str, Any]:
    d = json.loads((HERE.parent / "tests" / "data" / "demo_log_ratio.json").read_text())
    return {"set": "demo (make demo, seed 0)", **judge(np.array(d["log_ratio"]), np.array(d["label"], bool))}


def gated(s: dict[str, Any]) -> bool:
    """Whether the issue's F1 gate applies to the judged set ``s``: >= 5% unsafe and a best cut in hindsight of ``ELIGIBLE``."""
    return s["unsafe_share"] >= 0.05 and s.get("best_f1", 0) >= ELIGIBLE


def gates(sets: list[dict[str, Any]], rule: str) -> dict[str, Any]:
    """The issue's gates for one rule over a group of sets."""
    sets = [s for s in sets if s.get(rule) is not None]  # the default cannot be judged on runs without prompt states
    eligible = [s for s in sets if gated(s)]
    f1 = [s[rule]["f1"] for s in eligible]
    clean = [s[rule]["dropped"] for s in sets if s["unsafe_share"] == 0]
    return {"eligible": len(eligible), "f1_min": min(f1, default=math.nan), "f1_median": float(np.median(f1)) if f1 else math.nan,
            "below_0.90": sum(v < GATE for v in f1), "clean_sets": len(clean), "clean_max_dropped": max(clean, default=math.nan),
            "clean_over_1pct": sum(v > 0.01 for v in clean)}


def print_comparison(title: str, sets: list[dict[str, Any]], old: str, new: str) -> None:
    """``title``, both rules' gates over ``sets``, and how many eligible sets ``new`` mends and breaks (F1 across ``GATE``)."""
    eligible = [s for s in sets if gated(s)]
    mended = sum(s[old]["f1"] < GATE <= s[new]["f1"] for s in eligible)
    broken = sum(s[new]["f1"] < GATE <= s[old]["f1"] for s in eligible)
    print(title)
    for rule in (old, new):
        print(f"  {rule}: {gates(sets, rule)}")
    print(f"  mended {mended}, broken {broken}")


REAL_GROUPS = {
    "evaluation of corroboration: real runs made after it": MADE_AFTER_CORROBORATION,
    "evaluation of safety_prompts: real runs made after it": MADE_AFTER_SAFETY_PROMPTS,
    "evaluation of the vote extension: real runs made after it": MADE_AFTER_EXTENSION,
    "evaluation of the delta fallback: real runs made after it": MADE_AFTER_FALLBACK,
    "evaluation of the reply vote: real runs made after it": MADE_AFTER_REPLY_VOTE,
    "fresh runs of the default: twenty-second session": TWENTY_SECOND_SESSION_RUNS,
    "fresh runs: twenty-third session": TWENTY_THIRD_SESSION_RUNS,
    "fresh runs of the default: twenty-fourth session": TWENTY_FOURTH_SESSION_RUNS,
    "fresh runs of the default: seed 18": TWENTY_FIFTH_SESSION_RUNS,
    "fresh runs of the default: seed 19": TWENTY_EIGHTH_SESSION_RUNS,
}
"""The real-run groups judged beside "tuning" and "evaluation", by the runs each holds (in the order they are reported)."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(HERE / "thresholds.json"))
    ap.add_argument("--real-only", action="store_true",
                    help="recompute only the real runs; the tuning groups are read back from --out (they change only with the rule)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count(), help="processes that judge the synthetic sets")
    a = ap.parse_args()
    real = real_runs()
    by_group = {"tuning: real runs": [s for s in real if s["tuned_on"]], "evaluation: real runs": [s for s in real if not s["tuned_on"]],
                **{g: [s for s in real if s["set"] in runs] for g, runs in REAL_GROUPS.items()}}
    if a.real_only:
        kept = json.loads(Path(a.out).read_text())["sets"]  # in the file's order, so that a re-run diffs only where it changed
        groups = {g: by_group.get(g, v) for g, v in kept.items()} | by_group
    else:
        with get_context("fork").Pool(a.jobs) as pool:
            synth = {g: synthetic(*args, pool) for g, args in SYNTHETIC_GROUPS.items()}
        groups = {"tuning: synthetic": synth.pop("tuning: synthetic"), "tuning: demo": [demo()], **by_group, **synth}
    summary = {g: {rule: gates(sets, rule) for rule in [*thresholds.AUTO_METHODS, CORROBORATED, UNEXTENDED] if any(s.get(rule) for s in sets)}
               for g, sets in groups.items() if sets}
    Path(a.out).write_text(json.dumps({"gates": summary, "sets": groups}, indent=1, default=float) + "\n")
    print("| group | rule | eligible sets | F1 min / median | eligible sets below 0.90 | clean sets | max dropped on clean | clean sets over 1% |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for g, per in summary.items():
        for rule, v in per.items():
            default = rule == CORROBORATED or (rule == DEFAULT and CORROBORATED not in per)
            print(f"| {g} | `{rule}`{' (default)' if default else ''} | {v['eligible']} | {v['f1_min']:.3f} / "
                  f"{v['f1_median']:.3f} | {v['below_0.90']} | {v['clean_sets']} | {v['clean_max_dropped']:.2%} | {v['clean_over_1pct']} |")
    print("\nReal runs (tuning: looked at when the rule was chosen; evaluation: not):\n")
    rules = list(thresholds.AUTO_METHODS)
    print("| run | group | recipe | AUROC | best F1 | " + " | ".join(f"F1 `{r}`" for r in rules)
          + f" | F1 `{CORROBORATED}` | F1 before the vote extension | prompt states | P / R `{DEFAULT}` | dropped by `{DEFAULT}` | "
          "AUROC loss A / loss B / length |")
    print("|---|---|---|---:|---:|" + "---:|" * (len(rules) + 2) + "---|---:|---:|---|")
    for s in real:
        c = s.get("confounds_auroc")
        group = "tuning" if s["tuned_on"] else "evaluation"
        print(f"| {s['set']} | {group} | {s['recipe']} | {s.get('auroc', math.nan):.3f} | {s.get('best_f1', math.nan):.3f} | "
              + " | ".join(f"{s[r]['f1']:.3f}" if s[r] else "-" for r in [*rules, CORROBORATED, UNEXTENDED])
              + f" | {'yes' if s['prompt_states'] else '-'} | {s[DEFAULT]['precision']:.2f} / {s[DEFAULT]['recall']:.2f}"
              + f" | {s[DEFAULT]['dropped']:.1%} | "
              + (f"{c['loss_a_alone']:.3f} / {c['loss_b_alone']:.3f} / {c['response_tokens']:.3f}" if c else "-") + " |")
    names = list(SCORES)
    print(f"\nThe default rule `{DEFAULT}` on each forward-pass score of the real runs: AUROC (overall / within response-length "
          "quartiles), F1 and task rows dropped:\n")
    print("| run | group | " + " | ".join(f"`{n}`" for n in names) + " |")
    print("|---|---|" + "---|" * len(names))
    for s in real:
        cells = [s["default_rule_by_score"][n] for n in names]
        print(f"| {s['set']} | {'tuning' if s['tuned_on'] else 'evaluation'} | "
              + " | ".join(f"{c['auroc']:.3f} / {c['auroc_within_length']:.3f}, F1 {c['f1']:.2f}, {c['task_rows_dropped']} task rows"
                         for c in cells) + " |")
    for g in SYNTHETIC_GROUPS:
        low = [s for s in groups.get(g, []) if abs(s["unsafe_share"] - 0.01) < 0.002]
        cut = [s for s in low if s[DEFAULT]["dropped"] > 0]
        if low:
            print(f"\nAt 1% unsafe ({g}, {len(low)} sets), `{DEFAULT}` dropped nothing on {len(low) - len(cut)}; where it cut, "
                  f"precision median {np.median([s[DEFAULT]['precision'] for s in cut]):.2f}, recall median "
                  f"{np.median([s[DEFAULT]['recall'] for s in cut]):.2f}; recall median over all "
                  f"{np.median([s[DEFAULT]['recall'] for s in low]):.2f}")


if __name__ == "__main__":
    main()
