"""Per-example response-token losses: the one quantity every forgetting score is built from.

Kept free of models and Ray so the masking rules (prompt masked, EOS kept, padding ignored) are
unit-tested once and shared by training and scoring; a mismatch between the two would silently
score a different objective from the one the models were trained on.

Only the response positions are projected through the LM head, a chunk of them at a time. The
full ``[batch, seq, vocab]`` logits are never built: for an 8B model with a 128k vocabulary and a
64k-token batch they would be 17 GB in bf16 and 34 GB more in float32, while the loss only needs
the response tokens' rows of them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from pipeline.text.formatting import IGNORE_INDEX

LOGITS_CHUNK_BYTES = 1 << 30
"""Float32 logits held at once (per chunk): large enough for full-speed matmuls, small beside a GPU."""


def chunk_tokens(vocab_size: int, budget_bytes: int = LOGITS_CHUNK_BYTES) -> int:
    """Response positions per LM-head chunk so that one chunk's float32 logits fit ``budget_bytes``."""
    return max(1, budget_bytes // (4 * vocab_size))


def response_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every position whose next token is a response token: ``(row, position, next token)``, flat.

    The hidden state at t predicts the token at t+1 (causal LM), so position t counts when
    ``labels[t + 1]`` is not ``IGNORE_INDEX``: prompt and padding are masked, EOS counts.
    """
    nxt = labels[:, 1:]
    rows, pos = (nxt != IGNORE_INDEX).nonzero(as_tuple=True)
    return rows, pos, nxt[rows, pos]


def response_token_nll(hidden: torch.Tensor, labels: torch.Tensor, head: Callable[[torch.Tensor], torch.Tensor] | None = None,
                       chunk: int | None = None, recompute: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """NLL of each response token and the row it belongs to.

    Args:
        hidden: ``[batch, seq, dim]`` final hidden states, or ``[batch, seq, vocab]`` logits when
            ``head`` is None.
        labels: ``[batch, seq]`` token ids, ``IGNORE_INDEX`` where the loss must not look.
        head: maps ``[n, dim]`` hidden states to ``[n, vocab]`` logits (the LM head).
        chunk: response positions projected at once (default: all).
        recompute: recompute each chunk's logits in the backward pass instead of keeping them
            (training): autograd would otherwise hold every chunk's logits until backward.

    Returns:
        ``(nll, rows)``, both ``[n_response_tokens]``. ``nll`` is float32: the log-softmax runs in
        float32 because bf16 logits lose the small differences between two nearly identical models
        that the forgetting score depends on.
    """
    rows, pos, targets = response_positions(labels)
    h = hidden[rows, pos]
    step = chunk or max(1, len(targets))

    def nll(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = head(x) if head is not None else x
        return F.cross_entropy(logits.float(), y, reduction="none")

    pieces = []
    for s in range(0, len(targets), step):
        x, y = h[s:s + step], targets[s:s + step]
        pieces.append(checkpoint(nll, x, y, use_reentrant=False) if recompute and torch.is_grad_enabled() else nll(x, y))
    out = torch.cat(pieces) if pieces else h.new_zeros(0, dtype=torch.float32)
    return out, rows


def per_example_mean(nll: torch.Tensor, rows: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean NLL per example from per-token NLLs, and each example's number of response tokens.

    Examples with no response tokens get NaN, never 0: a zero would look like a perfectly learned
    example and pass any threshold unnoticed.
    """
    counts = torch.bincount(rows, minlength=batch)
    totals = torch.zeros(batch, dtype=nll.dtype, device=nll.device).index_add_(0, rows, nll)
    means = torch.where(counts > 0, totals / counts.clamp(min=1), torch.full_like(totals, float("nan")))
    return means, counts
