"""The paper's forgetting score: drop in ROUGE of greedy generations against the training target.

Kept as an option because it is what the paper measured; it costs two autoregressive decodes per
example, so it is not the default. ``rouge-score`` is the reference implementation the paper used.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _scorer(kind: str):  # noqa: ANN202 - rouge_score has no type hints
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer([kind], use_stemmer=True)


def rouge_f(prediction: str, target: str, kind: str = "rougeL") -> float:
    """ROUGE F-measure of ``prediction`` against ``target`` (stemmed, as in the paper's code)."""
    if not target.strip():
        return float("nan")
    return float(_scorer(kind).score(target, prediction)[kind].fmeasure)


def rouge_drop(gen_a: str, gen_b: str, target: str, kind: str = "rougeL") -> float:
    """ROUGE_A - ROUGE_B: how much less model B reproduces the target than model A does."""
    return rouge_f(gen_a, target, kind) - rouge_f(gen_b, target, kind)
