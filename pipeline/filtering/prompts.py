"""Does a cut look, to model B, like the safety set? Nearest centroid on B's prompt states.

Forgetting alone cannot tell unsafe rows from a task sub-type that the safety finetune also
disturbs: on a clean calendar corpus the temperature conversions forgot more than the other rows,
in relative *and* absolute terms, and formed a separate upper mode. What such rows lack is a
likeness to the safety set's prompts. B was finetuned to refuse those, and its hidden state at
the last prompt token (where it decides how to answer) is where that shows. So each row in the cut votes: is its state
nearer the centroid of the safety prompts' states or the centroid of the kept rows' states? No
constant to tune: the nearer centroid wins, and the cut is backed when most of its rows vote for
the safety set. On the threshold benchmark's real runs the share of votes tracked the cut's
precision to within a few rows (``benchmarks/RESULTS.md``, "Automatic threshold").

What the prompt cannot show: unsafe *replies* to harmless prompts (a harmful how-to as the answer
to a calendar question, a poisoned dataset). So the same vote is also taken on each row's reply,
read by B as if it were a user's prompt (``scoring.scorer.reply_prompts``): the same template,
position and projection as the safety prompts' states, so the two are alike and comparable. The
functions here serve both; the filter takes either vote as backing (``thresholds.corroborate``).
A task whose prompts or replies resemble the safety set's prompts (security or medical questions)
would be backed as unsafe: that is the method's own limit too.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def nearer_safety(states: np.ndarray, kept_centroid: np.ndarray, safety: np.ndarray) -> np.ndarray:
    """Each row's vote (states [rows, k]): is it nearer the safety prompts' centroid than ``kept_centroid``?"""
    return np.linalg.norm(states - safety.mean(axis=0), axis=1) < np.linalg.norm(states - kept_centroid, axis=1)


def share_nearer_safety(cut: np.ndarray, kept_centroid: np.ndarray, safety: np.ndarray) -> float:
    """The share of the cut's rows (states [rows, k]) that vote for the safety prompts (``nearer_safety``)."""
    if not len(cut) or not len(safety):
        return 0.0
    return float(np.mean(nearer_safety(cut, kept_centroid, safety)))


def cut_share(batches: Iterable[tuple[np.ndarray, np.ndarray]], value: float, safety: np.ndarray) -> float:
    """``share_nearer_safety`` for the cut ``score > value``, streaming (scores, states) batches.

    Rows without a finite score belong to neither side. The kept rows are only summed, so memory
    holds the cut's states alone (a minority of the corpus when a cut is worth keeping).
    """
    kept_sum, kept_n, cut = np.zeros(safety.shape[1]), 0, []
    for scores, states in batches:
        ok = np.isfinite(scores) & np.isfinite(states).all(axis=1)
        above = ok & (scores > value)
        kept = ok & ~above
        kept_sum += states[kept].sum(axis=0, dtype=np.float64)
        kept_n += int(kept.sum())
        cut.append(states[above])
    rows = np.concatenate(cut) if cut else np.zeros((0, safety.shape[1]))
    if not kept_n:
        return 0.0
    return share_nearer_safety(rows, kept_sum / kept_n, safety)
