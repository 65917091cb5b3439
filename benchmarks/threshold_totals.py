"""Totals of the automatic cut under several configs, over the real evaluation runs every config can be judged on.

``benchmarks/thresholds.py`` judges each rule against the issue's gates; this adds up what a config
costs and gains over all such runs at once: summed F1, task rows dropped, and clean corpora cut by
more than 1%. Each run's cut is made by ``choose_threshold`` under ``load_config(None, overrides)``,
exactly as the filter stage makes it, with the votes from the run's stored states. A run counts only where
every config's cut is the filter stage's (``thresholds.judgeable``: it has the states each vote needs, or
the missing ones cannot change that config's cut); the others are listed. The README's totals come from here.

The absolute-score list is the size-capped candidate of the twelfth session: since the thirteenth,
``filtering.thresholds.corroborate`` lets no score back a cut of more than half the rows
(``MAJORITY_CUT``), so the list's totals here are capped; RESULTS.md keeps the uncapped ones. Every
config but the default is taken without ``filter.fallback`` (the default's since the thirteenth
session), so each row shows that setting alone. Since the fourteenth session the default has a second vote,
on the rows' replies (``reply_prompts``); the thirteenth session's default is the row without it. Since the
twenty-third the default moves a cut the prompt vote backed down by the votes below it (``filter.extend_by_votes``);
every other row is without that. Every row uses today's ``mixture`` and, where it has the fallback, today's
fallback (after a withdrawn cut, made where the votes back it), so the older defaults' rows are not their
sessions' numbers: RESULTS.md keeps those.

    python benchmarks/threshold_totals.py [--per-run] [--default-only]

``--default-only`` (under a minute) is the screen for a change to the rule: its first row alone, run with the
change in the package, against the same row without it (RESULTS.md: 17.94 / 117 / 0 on the 48 runs judged until
the twenty-first session; 20.26 / 137 / 0 on 52 with the four fresh seed-14 runs; 21.27 / 153 / 0 on those 52 since
the vote extension joined the default; 23.26 / 149 / 0 on 55 with the raise-only t task and the vote-backed
fallback, twenty-third session; 25.48 / 227 / 0 on 58 with the twenty-fourth session's three fresh runs; 29.44 / 303 / 0
on 64 with the seed-18 runs, before and after the third component joined ``mixture``, twenty-sixth session).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from thresholds import SEEN_WHILE_TUNING, config_drop, judgeable, run_arrays  # noqa: E402

from pipeline.config import load_config  # noqa: E402
from pipeline.filtering import thresholds  # noqa: E402
from pipeline.reporting.metrics import precision_recall_f1  # noqa: E402

PROMPTS = "filter.corroborate=[safety_prompts]"
ABSOLUTE = "filter.corroborate=[delta,seq_logprob_drop,safety_prompts]"
NO_FALLBACK = "filter.fallback=null"
NO_EXTENSION = "filter.extend_by_votes=false"
CONFIGS = {
    "default (both votes, the vote extension, the `delta` fallback)": [],
    "the default without the vote extension": [NO_EXTENSION],
    "the prompt vote and the `delta` fallback (thirteenth-session default)": [PROMPTS, NO_EXTENSION],
    "the prompt vote alone (twelfth-session default)": [PROMPTS, NO_FALLBACK, NO_EXTENSION],
    "absolute scores and the prompt vote (size-capped)": [ABSOLUTE, NO_FALLBACK, NO_EXTENSION],
    "absolute scores only": ["filter.corroborate=[delta,seq_logprob_drop]", NO_FALLBACK],
    "log_ratio, no corroboration": ["filter.corroborate=[]", NO_FALLBACK],
    "delta, no corroboration": ["scoring.method=delta", "filter.corroborate=[]"],
    "seq_logprob_drop, no corroboration": ["scoring.method=seq_logprob_drop", "filter.corroborate=[]", NO_FALLBACK],
}
HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-run", action="store_true", help="also print each run's F1 / task rows / share dropped")
    ap.add_argument("--default-only", action="store_true", help="only the package default's row (a quick screen)")
    a = ap.parse_args()
    chosen = dict(list(CONFIGS.items())[:1]) if a.default_only else CONFIGS
    totals = {name: [0.0, 0, 0] for name in chosen}
    configs = {name: load_config(None, overrides) for name, overrides in chosen.items()}
    runs, left_out = 0, []
    for path in sorted((HERE / "threshold_data").glob("*.json")):
        d = json.loads(path.read_text())
        y, _, scores, states = run_arrays(d)
        if d["run"] in SEEN_WHILE_TUNING or states is None:
            continue
        if not all(judgeable(scores, states, cfg) for cfg in configs.values()):
            left_out.append(d["run"])
            continue
        runs += 1
        line = []
        for name, cfg in configs.items():
            drop = config_drop(scores, states, cfg)
            f1 = precision_recall_f1(drop, y)["f1"] if y.any() else 0.0
            t = totals[name]
            t[0] += f1
            t[1] += int((drop & ~y).sum())
            t[2] += int(not y.any() and drop.mean() > 0.01)
            line.append(f"{f1:.3f} / {int((drop & ~y).sum())} / {drop.mean():.1%}")
        if a.per_run:
            print(f"| {d['run']} | " + " | ".join(line) + " |")
    print(f"\n{runs} evaluation runs with prompt states: summed F1 / task rows dropped / clean corpora cut by more than 1%")
    print(f"(left out, no reply states where the reply vote could change the default's cut: {', '.join(left_out) or 'none'})\n")
    print("| config | summed F1 | task rows dropped | clean corpora cut |\n|---|---:|---:|---:|")
    for name, (f1, task, clean) in totals.items():
        print(f"| {name} | {f1:.2f} | {task} | {clean} |")


def screen_with(own: Callable[[np.ndarray], thresholds.Threshold],
                other: Callable[[np.ndarray], thresholds.Threshold] | None = None) -> None:
    """``--default-only --per-run`` with ``own`` as ``mixture`` on the filter's own score and, if given, ``other`` as
    ``mixture`` on the other scores (``thresholds.ON_OTHER_SCORES``): how a benchmark judges a candidate rule on the real runs."""
    thresholds.AUTO_METHODS["mixture"] = own
    if other is not None:
        thresholds.ON_OTHER_SCORES["mixture"] = other
    sys.argv = [sys.argv[0], "--default-only", "--per-run"]
    main()


if __name__ == "__main__":
    main()
