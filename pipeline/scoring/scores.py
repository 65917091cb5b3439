"""Forgetting scores: how much more an example is forgotten by model B than by model A.

Each score maps (loss under A, loss under B, response length) to one number where *larger means
more forgotten*, hence more likely unsafe. They are pure numpy so the report and the benchmark can
recompute any score from stored losses without re-running a model.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pipeline.columns import score_column

EPS = 1e-6
"""Floor on a loss before taking its log: memorised unsafe examples reach ~1e-3, so 1e-6 never
clips real values but keeps log(0) out of the scores."""


def log_ratio(loss_a: np.ndarray, loss_b: np.ndarray, n_tokens: np.ndarray) -> np.ndarray:
    """log(loss_B / loss_A): relative forgetting.

    The default because a memorised unsafe example goes from ~0.003 to ~0.2 nats (x60) while a task
    example goes from ~0.9 to ~1.1 (x1.2); the ratio shows that, the raw difference hides it.
    """
    return np.log(np.maximum(loss_b, EPS)) - np.log(np.maximum(loss_a, EPS))


def delta(loss_a: np.ndarray, loss_b: np.ndarray, n_tokens: np.ndarray) -> np.ndarray:
    """loss_B - loss_A: absolute forgetting in nats per response token."""
    return loss_b - loss_a


def sqrt_delta(loss_a: np.ndarray, loss_b: np.ndarray, n_tokens: np.ndarray) -> np.ndarray:
    """2 (sqrt(loss_B) - sqrt(loss_A)): forgetting on a variance-stabilised scale, ~ delta / sqrt(loss_A).

    Between the other two: ``log_ratio`` divides a change by the loss under A (right when the
    task rows' spread grows in proportion to it), ``delta`` does not divide at all (right when it
    does not grow). On the task rows of the threshold benchmark's runs it grows like loss_A^0.32
    (median; -0.42 to 0.83), and the square root is the simple stabilising power in that range
    (``benchmarks/RESULTS.md``, "Automatic threshold"). A memorised unsafe row (0.003 -> 0.2) still
    scores ~4x a task row (0.9 -> 1.1), where ``delta`` scores them alike. An option, not the
    default: on fresh evaluation runs it dropped no task row, but found no unsafe row either.
    """
    return 2 * (np.sqrt(np.maximum(loss_b, 0.0)) - np.sqrt(np.maximum(loss_a, 0.0)))


def seq_logprob_drop(loss_a: np.ndarray, loss_b: np.ndarray, n_tokens: np.ndarray) -> np.ndarray:
    """Drop in log-probability of the whole response, in nats: n_tokens * (loss_B - loss_A).

    Weighs long responses more, as the probability of reproducing the whole response does.
    """
    return n_tokens * (loss_b - loss_a)


SCORES: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "log_ratio": log_ratio,
    "delta": delta,
    "sqrt_delta": sqrt_delta,
    "seq_logprob_drop": seq_logprob_drop,
}
"""Forward-pass scores by name; every one is written next to the losses so they can be compared."""

REFUSAL = "refusal"
"""B's likelihood of refusing each row's prompt: the mean log-likelihood per token, under B, of a few
of the safety set's refusal replies placed after the prompt (``scoring.refusals``). Not a forgetting
score and never the filter's own: the safety finetune makes B a judge of which prompts to refuse,
so an automatic cut can be checked against it (``filtering.thresholds.corroborate``). It stayed
informative where forgetting was weak in absolute terms (half the corpus unsafe), but it also
backed a cut of a clean corpus whose sub-tasks B tells apart, so it is opt-in."""


def compute_scores(loss_a: np.ndarray, loss_b: np.ndarray, n_tokens: np.ndarray) -> dict[str, np.ndarray]:
    """All forward-pass scores, as float64 arrays keyed by their column (``score_<name>``)."""
    a = np.asarray(loss_a, dtype=np.float64)
    b = np.asarray(loss_b, dtype=np.float64)
    n = np.asarray(n_tokens, dtype=np.float64)
    return {score_column(name): fn(a, b, n) for name, fn in SCORES.items()}
