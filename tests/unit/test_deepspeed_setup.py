"""DeepSpeed on CPU: no kernel is compiled at init, and bf16 training keeps fp32 weights. (Training over
gloo with two ranks, ZeRO-2 and ZeRO-3, is tested in test_multi_rank_training.py.)"""

from __future__ import annotations

from pipeline.training.deepspeed_config import skip_cpu_shm_comm_build
from tests.conftest import free_port, process_group


def test_cpu_init_compiles_no_shared_memory_kernel(tmp_path, monkeypatch):
    # Without the switch, DeepSpeed's CPU backend compiles this kernel at every first init under a
    # lock file; a worker killed mid-compile left the lock and hung every later finetune.
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    from deepspeed.comm.torch import build_shm_op

    skip_cpu_shm_comm_build()
    assert build_shm_op() is None
    assert list(tmp_path.iterdir()) == []


def _one_small_step(rank: int, port: int, model_dir: str, out: str) -> None:
    import json

    from pipeline.config import FinetuneConfig
    from pipeline.text.formatting import collate
    from pipeline.training.loop import _consolidated_state_dict, autocast, build_engine

    with process_group("gloo", port):
        engine = build_engine(FinetuneConfig(learning_rate=1e-6, warmup_ratio=0.0), model_dir, False, total_steps=2)
        before = {k.removeprefix("lm."): v.detach().clone() for k, v in engine.module.state_dict().items()}
        t = collate([[5, 6, 7, 8, 9, 10, 11, 12]] * 4, [3] * 4, 0)
        with autocast(True, engine.device):
            loss = engine(t["input_ids"], t["attention_mask"], t["labels"])[0].mean()
        engine.backward(loss)
        engine.step()
        after = _consolidated_state_dict(engine, 2)
    changed = [bool((after[k].float() != before[k].float()).any()) for k in before]
    json.dump({"dtypes": sorted({str(v.dtype) for v in after.values()}), "changed": sum(changed) / len(changed)}, open(out, "w"))


def test_bf16_training_keeps_updates_smaller_than_one_bf16_step(tiny_model, tmp_path):
    # At the package defaults a finetune moves most weights by less than one bf16 step; held in bf16
    # (DeepSpeed's bf16 mode) the model loses them. One Adam step at lr 1e-6 is ~1% of a bf16 step of
    # these weights: under bf16 autocast the exported weights must be fp32 and have moved.
    import json

    import torch.multiprocessing as mp

    out = tmp_path / "step.json"
    mp.spawn(_one_small_step, args=(free_port(), tiny_model, str(out)), nprocs=1, join=True)
    r = json.loads(out.read_text())
    assert r["dtypes"] == ["torch.float32"]
    assert r["changed"] > 0.9, r
