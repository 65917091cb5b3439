"""Models for inference on the actor that holds the device: the scoring and the evaluation actors.

The precision is resolved here, on the machine that holds the device, not on a CPU-only head node:
on CPU the weights stay fp32 and matmuls run under bf16 autocast where the CPU supports it; on GPU
the weights are loaded in bf16.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from pipeline.errors import StageError
from pipeline.models.precision import use_bf16


def inference_setup(precision: str, use_gpu: bool, stage: str) -> tuple[Any, Any, Any]:
    """``(device, weight dtype, autocast context)`` on this machine, the one that holds the device.

    A silent CPU fallback would turn a GPU-hour job into weeks: a GPU actor without CUDA fails.
    """
    import torch

    if use_gpu and not torch.cuda.is_available():
        raise StageError(f"{stage}: scoring.gpus_per_actor > 0 but this actor sees no CUDA device")
    device = torch.device("cuda" if use_gpu else "cpu")
    bf16 = use_bf16(precision, use_gpu)
    dtype = torch.bfloat16 if bf16 and use_gpu else torch.float32
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 and not use_gpu else nullcontext()
    return device, dtype, autocast


@dataclass
class InferenceModels:
    """Models (``ResponseLM``s, in the order asked) on one device, the first one's tokenizer, and the autocast to run them under."""

    models: list[Any]
    tokenizer: Any
    device: Any
    autocast: Any


def load_for_inference(models: list[str], precision: str, use_gpu: bool, stage: str, trust_remote_code: bool = False,
                       threads: int | None = None) -> InferenceModels:
    """Load each model once onto this actor's device (``threads``: CPU threads, the actor's CPU share)."""
    import torch

    from pipeline.models.loading import load_model, load_tokenizer, resolve_model
    from pipeline.models.response_lm import ResponseLM

    if threads:
        torch.set_num_threads(threads)
    device, dtype, autocast = inference_setup(precision, use_gpu, stage)
    paths = [resolve_model(m) for m in models]
    loaded = [ResponseLM(load_model(p, trust_remote_code, dtype)).to(device) for p in paths]
    return InferenceModels(loaded, load_tokenizer(paths[0], trust_remote_code), device, autocast)
