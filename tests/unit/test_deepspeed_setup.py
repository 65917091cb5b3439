"""DeepSpeed set-up that must hold on CPU machines: no kernel is JIT-compiled at init."""

from __future__ import annotations

from pipeline.config import FinetuneConfig
from pipeline.training.deepspeed_config import deepspeed_config, skip_cpu_shm_comm_build


def test_cpu_init_compiles_no_shared_memory_kernel(tmp_path, monkeypatch):
    # Without the switch, DeepSpeed's CPU backend compiles this kernel at every first init under a
    # lock file; a worker killed mid-compile left the lock and hung every later finetune.
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    from deepspeed.comm.torch import build_shm_op

    skip_cpu_shm_comm_build()
    assert build_shm_op() is None
    assert list(tmp_path.iterdir()) == []


def test_stage_3_gathers_weights_for_the_saved_model_and_batch_sizes_multiply():
    cfg = deepspeed_config(FinetuneConfig(zero_stage=3, batch_size=4, grad_accum=2), bf16=True, world_size=2)
    assert cfg["zero_optimization"] == {"stage": 3, "stage3_gather_16bit_weights_on_model_save": True}
    assert cfg["train_batch_size"] == 4 * 2 * 2
    assert deepspeed_config(FinetuneConfig(zero_stage=2), bf16=False, world_size=1)["zero_optimization"] == {"stage": 2}
