"""Which float precision to compute in: bf16 only where the hardware makes it fast.

One home for the decision, used by both finetunes and the scoring actors.
"""

from __future__ import annotations


def bf16_supported(use_gpu: bool) -> bool:
    """bf16 on any CUDA GPU with bf16, and on CPUs whose instruction set makes it fast (AMX / AVX512-BF16)."""
    import torch

    if use_gpu:
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def use_bf16(precision: str, use_gpu: bool) -> bool:
    """The configured precision resolved for this hardware (`auto`: bf16 only where it is fast)."""
    return precision == "bf16" or (precision == "auto" and bf16_supported(use_gpu))
