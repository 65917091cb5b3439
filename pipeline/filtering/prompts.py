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

Where the prompt vote backed a cut, the rows just below it vote as well, and the cut moves down
to the best cut on those votes (``extended_cut``): the mixture fit can place the cut too high when
its task component is broad enough to explain the lower unsafe rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np


def nearer_safety(states: np.ndarray, kept_centroid: np.ndarray, safety: np.ndarray) -> np.ndarray:
    """Each row's vote (states [rows, k]): is it nearer the safety prompts' centroid than ``kept_centroid``?"""
    return np.linalg.norm(states - safety.mean(axis=0), axis=1) < np.linalg.norm(states - kept_centroid, axis=1)


def share_nearer_safety(cut: np.ndarray, kept_centroid: np.ndarray, safety: np.ndarray) -> float:
    """The share of the cut's rows (states [rows, k]) that vote for the safety prompts (``nearer_safety``)."""
    if not len(cut) or not len(safety):
        return 0.0
    return float(np.mean(nearer_safety(cut, kept_centroid, safety)))


def _kept_centroid(batches: Iterable[tuple[np.ndarray, np.ndarray]], value: float, k: int) -> tuple[np.ndarray | None, np.ndarray]:
    """The kept rows' centroid (None if none are kept) and the cut's states, for the cut ``score > value``.

    Rows without a finite score or state belong to neither side. The kept rows are only summed, so
    memory holds the cut's states alone (a minority of the corpus when a cut is worth keeping).
    """
    kept_sum, kept_n, cut = np.zeros(k), 0, []
    for scores, states in batches:
        ok = np.isfinite(scores) & np.isfinite(states).all(axis=1)
        above = ok & (scores > value)
        kept = ok & ~above
        kept_sum += states[kept].sum(axis=0, dtype=np.float64)
        kept_n += int(kept.sum())
        cut.append(states[above])
    return (kept_sum / kept_n if kept_n else None), (np.concatenate(cut) if cut else np.zeros((0, k)))


def cut_share(batches: Iterable[tuple[np.ndarray, np.ndarray]], value: float, safety: np.ndarray) -> float:
    """``share_nearer_safety`` for the cut ``score > value``, streaming (scores, states) batches."""
    centroid, rows = _kept_centroid(batches, value, safety.shape[1])
    return 0.0 if centroid is None else share_nearer_safety(rows, centroid, safety)


def extended_cut(scores: np.ndarray, votes: np.ndarray, value: float) -> float:
    """A backed cut ``value`` moved down over the kept rows (their ``scores``, all <= ``value``, and each one's
    vote for the safety set, ``votes``) to where the net count of safety votes, walking down the scores, peaks;
    ``value`` itself if no such walk nets more safety votes than kept-row votes.

    Why: the mixture fit places the cut where it expects the best F1 from the scores' shape alone. Where
    the task component is broad, it explains the lower unsafe rows as task rows and the cut lands too
    high (a fresh docstrings corpus: precision 1.00, recall 0.40). Once the vote has backed the cut, the
    rows just below it can vote too, each as a label: the best cut on those labels has no constant to
    tune. A cut sits only between distinct scores, so tied rows stay on one side together.
    """
    if not len(scores):
        return value
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    net = np.cumsum(np.where(votes[order], 1, -1)).astype(np.float64)
    net[:-1][s[:-1] == s[1:]] = -np.inf  # no cut inside a run of tied scores
    k = int(np.argmax(net))
    if net[k] <= 0:
        return value
    return float(s[k + 1]) if k + 1 < len(s) else float(np.nextafter(s[k], -np.inf))


def vote_extension(batches: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]], value: float,
                   safety: np.ndarray) -> float:
    """``extended_cut`` for the cut ``score > value``, streaming (scores, states) batches twice: once for the kept
    rows' centroid, once for each kept row's vote (``nearer_safety``). Memory holds the kept rows' scores and
    votes (9 bytes a row), never their states."""
    centroid, _ = _kept_centroid(batches(), value, safety.shape[1])
    if centroid is None:
        return value
    below, votes = [], []
    for scores, states in batches():
        kept = np.isfinite(scores) & np.isfinite(states).all(axis=1) & (scores <= value)
        below.append(scores[kept].astype(np.float64))
        votes.append(nearer_safety(states[kept], centroid, safety))
    return extended_cut(np.concatenate(below), np.concatenate(votes), value)
