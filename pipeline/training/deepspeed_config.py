"""The DeepSpeed config for a finetune (a pure function of the finetune settings and the hardware),
and the one DeepSpeed default we switch off before ``deepspeed.initialize``."""

from __future__ import annotations

from typing import Any

from pipeline.config import FinetuneConfig


def deepspeed_config(ft: FinetuneConfig, world_size: int) -> dict[str, Any]:
    """ZeRO stage and batch sizes; the optimizer, the schedule and the precision are ours.

    A torch AdamW is handed to DeepSpeed rather than DeepSpeed's own, because DeepSpeed's fused
    and CPU Adam need compiled extensions that may be missing; ZeRO shards it all the same.
    DeepSpeed's bf16 mode is never switched on: it holds the weights in bf16, and a finetune's
    changes to them are mostly below one bf16 step (``autocast`` in ``training.loop``).
    """
    zero: dict[str, Any] = {"stage": ft.zero_stage}
    if ft.zero_stage == 3:
        # Needed to export one consolidated safetensors model from the shards after training.
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "train_micro_batch_size_per_gpu": ft.batch_size,
        "gradient_accumulation_steps": ft.grad_accum,
        "train_batch_size": ft.batch_size * ft.grad_accum * world_size,
        "gradient_clipping": 1.0,
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def warmup_linear(step: int, total_steps: int, warmup_ratio: float) -> float:
    """Learning-rate multiplier: linear warm-up, then linear decay to 10% of the peak."""
    warmup = max(1, int(total_steps * warmup_ratio))
    if step < warmup:
        return (step + 1) / warmup
    remaining = max(1, total_steps - warmup)
    return max(0.1, 1.0 - 0.9 * (step - warmup) / remaining)


# DeepSpeed's name for its CPU shared-memory all-reduce kernel (ShareMemCommBuilder.NAME).
SHM_COMM_OP = "deepspeed_shm_comm"


def skip_cpu_shm_comm_build() -> None:
    """Stop ``deepspeed.initialize`` from JIT-compiling the CPU shared-memory all-reduce kernel.

    On the CPU accelerator every first init compiles it (about 2 minutes on 2 cores) under a lock
    file in ~/.cache/torch_extensions. A worker killed mid-compile (a stopped job, a preempted node,
    a restarted worker group) leaves that lock behind and every later finetune on the machine waits
    on it forever. The kernel only serves ``inference_all_reduce`` (tensor-parallel inference);
    training all-reduces go through torch.distributed either way, so we lose nothing. DeepSpeed
    caches its probe of compatible ops in one module-level dict that it reads before building.
    """
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__[SHM_COMM_OP] = False
