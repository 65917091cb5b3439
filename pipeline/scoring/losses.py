"""Per-example response-token losses: the one quantity every forgetting score is built from.

Kept free of models and Ray so the masking rules (prompt masked, EOS kept, padding ignored) are
unit-tested once and shared by training and scoring; a mismatch between the two would silently
score a different objective from the one the models were trained on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.text.formatting import IGNORE_INDEX


def shift_for_next_token(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Align logits at position t with the label at t+1 (causal LM next-token prediction)."""
    return logits[:, :-1, :], labels[:, 1:]


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Negative log-likelihood of each next token and the mask of positions that count.

    Args:
        logits: ``[batch, seq, vocab]`` raw model outputs (any float dtype).
        labels: ``[batch, seq]`` token ids, ``IGNORE_INDEX`` where the loss must not look.

    Returns:
        ``(nll, mask)``, both ``[batch, seq - 1]``; ``nll`` is float32 and zero where ``mask`` is
        False. The log-softmax runs in float32 because bf16 logits lose the small differences
        between two nearly identical models that the forgetting score depends on.
    """
    logits, labels = shift_for_next_token(logits, labels)
    mask = labels != IGNORE_INDEX
    safe_labels = labels.masked_fill(~mask, 0)
    nll = F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), safe_labels.reshape(-1), reduction="none"
    ).reshape(labels.shape)
    return nll * mask, mask


def per_example_mean_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean response-token NLL of each example and its number of response tokens.

    Examples with no response tokens get NaN, never 0: a zero would look like a perfectly learned
    example and pass any threshold unnoticed.
    """
    nll, mask = token_nll(logits, labels)
    counts = mask.sum(dim=1)
    totals = nll.sum(dim=1)
    means = torch.where(counts > 0, totals / counts.clamp(min=1), torch.full_like(totals, float("nan")))
    return means, counts


def batch_mean_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Training loss: mean NLL over all response tokens of the batch (token-weighted)."""
    nll, mask = token_nll(logits, labels)
    return nll.sum() / mask.sum().clamp(min=1)
