"""Which rows a finetune trains on, and in what order: a function of the seed and the rows alone.

Ray Data streams blocks in whatever order tasks finish, so "same seed, same split" cannot rest on
arrival order. Each row instead gets a seeded 64-bit hash of its identity; the hash decides whether
the row is in the training sample (``max_examples`` on a corpus of millions) and where it comes in
the training order. Every row is still scored: sampling only bounds what the finetune has to see.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

KEY = "order_key"
WINDOW_BATCHES = 16
"""Optimizer steps per shuffled window of rows that is grouped by length (see ``length_grouped_batches``)."""


def order_keys(seed: int | str, example_ids: Iterable[str], source_rows: Iterable[int]) -> np.ndarray:
    """Seeded uint64 hash per row of (example id, row number in its file).

    The row number keeps rows that share a user-given id apart; the file path is left out on
    purpose because ``ray job submit`` may unpack the same input under a different directory.
    """
    salt = str(seed).encode()
    return np.array(
        [int.from_bytes(hashlib.blake2b(f"{i}\0{r}".encode(), digest_size=8, key=salt).digest(), "little")
         for i, r in zip(example_ids, source_rows)],
        dtype=np.uint64,
    )


def holdout_keys(seed: int, example_ids: Iterable[str], source_rows: Iterable[int]) -> np.ndarray:
    """Keys that decide the evaluation's held-out slice: ``sample_mask(keys, fraction)`` is the slice.

    Salted apart from ``order_keys`` so the slice is independent of the training sample and order.
    """
    return order_keys(f"holdout:{seed}", example_ids, source_rows)


def sample_mask(keys: np.ndarray, fraction: float) -> np.ndarray:
    """Rows in a sample of about ``fraction`` of all rows: those whose key falls in the lowest part."""
    if fraction >= 1.0:
        return np.ones(len(keys), dtype=bool)
    return keys < np.uint64(int(fraction * 2**64))


def worker_rows(n: int, rank: int, world: int) -> np.ndarray:
    """Indices of a window of ``n`` rows that worker ``rank`` of ``world`` trains on.

    Every worker gets the same count (the remainder is skipped), so all take the same number of
    optimizer steps: DeepSpeed's collectives hang if one worker runs out of batches early.
    """
    usable = n - n % world
    return np.arange(rank, usable, world)


def micro_batches(rows: int, batch_size: int, grad_accum: int) -> tuple[int, int]:
    """How a worker cuts ``rows`` rows into micro-batches: ``(micro-batches, rows used)``.

    The count is a multiple of ``grad_accum``, so the last optimizer step of an epoch gets all its
    micro-batches: DeepSpeed steps only at an accumulation boundary and would otherwise carry the
    leftover gradients into the next epoch, or drop them after the last. No micro-batch exceeds
    ``batch_size``; when too few rows are left for that, the last few are skipped (fewer than one
    optimizer step's worth, like the remainder of ``worker_rows``).
    """
    needed = -(-rows // batch_size)
    k = grad_accum * -(-needed // grad_accum)
    if k > rows:
        k = grad_accum * (rows // grad_accum)
    return k, min(rows, k * batch_size)


def window_rows(batch_size: int, grad_accum: int, world: int) -> int:
    """Rows per training window: ``WINDOW_BATCHES`` full optimizer steps of every worker."""
    return batch_size * grad_accum * WINDOW_BATCHES * world


def optimizer_steps(n_rows: int, batch_size: int, grad_accum: int, world: int) -> int:
    """Optimizer steps per epoch on ``n_rows`` rows; the same on every worker (see ``worker_rows``)."""
    full, rest = divmod(n_rows, window_rows(batch_size, grad_accum, world))
    return full * WINDOW_BATCHES + micro_batches(rest // world, batch_size, grad_accum)[0] // grad_accum
