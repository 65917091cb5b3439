"""Greedy generation in left-padded batches: the paper's ROUGE score and the evaluate stage share it.

Prompts are sorted by length before batching so a batch pads little, and results come back in the
caller's order. Greedy decoding makes a model's answer a function of the model and the prompt
alone, so two runs of the same evaluation agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any


def greedy_generate(lm: Any, tokenizer: Any, prompts: Sequence[Sequence[int]], max_new_tokens: int, device: Any,
                    autocast: AbstractContextManager | None = None, batch_size: int = 16) -> list[str]:
    """The greedy continuation of each tokenised prompt, decoded without special tokens."""
    import torch

    pad = tokenizer.pad_token_id
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[str] = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        idx = order[start: start + batch_size]
        width = max(len(prompts[i]) for i in idx)
        x = torch.tensor([[pad] * (width - len(prompts[i])) + list(prompts[i]) for i in idx], device=device)
        attn = torch.tensor([[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in idx], device=device)
        with torch.inference_mode(), (autocast or nullcontext()):
            g = lm.generate(input_ids=x, attention_mask=attn, max_new_tokens=max_new_tokens, do_sample=False,
                            pad_token_id=pad)
        for i, text in zip(idx, tokenizer.batch_decode(g[:, width:], skip_special_tokens=True)):
            out[i] = text
    return out
