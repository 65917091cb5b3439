"""DeepSpeed on CPU: no kernel is compiled at init. (Training over gloo with two ranks, ZeRO-2 and
ZeRO-3, is tested in test_multi_rank_training.py.)"""

from __future__ import annotations

from pipeline.training.deepspeed_config import skip_cpu_shm_comm_build


def test_cpu_init_compiles_no_shared_memory_kernel(tmp_path, monkeypatch):
    # Without the switch, DeepSpeed's CPU backend compiles this kernel at every first init under a
    # lock file; a worker killed mid-compile left the lock and hung every later finetune.
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    from deepspeed.comm.torch import build_shm_op

    skip_cpu_shm_comm_build()
    assert build_shm_op() is None
    assert list(tmp_path.iterdir()) == []
