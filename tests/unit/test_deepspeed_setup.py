"""DeepSpeed as the finetunes use it, on CPU over gloo: our config builds a real engine, training
lowers the loss, and the exported weights are the trained weights, whole, under every ZeRO stage."""

from __future__ import annotations

import os
import socket

import pytest
import torch

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


@pytest.fixture(scope="module")
def process_group():
    """A one-rank gloo process group, as Ray Train gives each worker (here world size 1)."""
    import deepspeed
    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    skip_cpu_shm_comm_build()
    deepspeed.init_distributed(dist_backend="gloo", auto_mpi_discovery=False)
    yield
    dist.destroy_process_group()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.mark.parametrize("stage", [2, 3])
def test_training_lowers_the_loss_and_the_export_is_the_whole_trained_model(stage, tiny_model, process_group):
    import deepspeed

    from pipeline.models.loading import load_model, load_tokenizer
    from pipeline.scoring.losses import batch_mean_nll
    from pipeline.text.formatting import collate, encode_batch
    from pipeline.training.loop import _consolidated_state_dict

    tok = load_tokenizer(tiny_model)
    model = load_model(tiny_model).train()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    chats = [[{"role": "user", "content": f"Tell me about bees, number {i}."},
              {"role": "assistant", "content": f"Bees make honey, number {i}."}] for i in range(4)]
    enc = encode_batch(tok, chats, 64, truncate=False)
    batch = collate([e.input_ids for e in enc], [e.prompt_len for e in enc], tok.pad_token_id)
    ft = FinetuneConfig(zero_stage=stage, batch_size=4, grad_accum=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=deepspeed_config(ft, bf16=False, world_size=1))
    losses = []
    for _ in range(6):
        loss = batch_mean_nll(engine(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                              batch["labels"])
        engine.backward(loss)
        engine.step()
        losses.append(float(loss))
    assert losses[-1] < 0.8 * losses[0], losses

    exported = _consolidated_state_dict(engine, stage)
    params = dict(engine.module.named_parameters())
    with deepspeed.zero.GatheredParameters(list(params.values()), enabled=stage == 3):
        trained = {k: v.detach().clone() for k, v in params.items()}
    for name, weight in trained.items():
        got = exported[name]
        assert got.shape == initial[name].shape, name  # whole, not this rank's ZeRO-3 partition
        assert torch.equal(got.float(), weight.float()), name
    assert any(not torch.equal(exported[k].float(), initial[k].float()) for k in trained)  # and trained
