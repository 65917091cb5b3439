"""The per-worker training loop that Ray Train's TorchTrainer runs for both finetunes.

Ray Train owns the processes, the process group and fault tolerance (a failed worker group is
restarted from the last reported checkpoint); DeepSpeed owns ZeRO sharding and precision; this
loop owns only the objective: mean NLL over response tokens, the same masking the scorer uses.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any

import numpy as np

from pipeline import columns as col
from pipeline.training.sampling import worker_rows

TRAIN_STATE = "train_state.json"
WINDOW_BATCHES = 16
"""Batches per shuffled window that is grouped by length (see ``length_grouped_batches``)."""


def _consolidated_state_dict(engine: Any, zero_stage: int) -> dict[str, Any] | None:
    """Full weights for export; under ZeRO-3 every rank must take part in gathering them."""
    if zero_stage == 3:
        return engine._zero3_consolidated_16bit_state_dict()
    return engine.module.state_dict()


def freeze_below(model: Any, train_layers: int | None) -> None:
    """Leave only the top ``train_layers`` decoder blocks and the final norm trainable."""
    if not train_layers:
        return
    decoder = model.get_decoder()
    blocks = decoder.layers
    for p in model.parameters():
        p.requires_grad = False
    trainable = list(blocks[-train_layers:]) + ([decoder.norm] if hasattr(decoder, "norm") else [])
    for module in trainable:
        for p in module.parameters():
            p.requires_grad = True


def _epoch_batches(shard: Any, batch_size: int, seed: int, rank: int, world: int) -> Iterator[tuple[list, list]]:
    """One epoch of this worker's (input_ids, prompt_lens) batches.

    The shard arrives in the seeded key order (see ``training.sampling``); each window of it is
    dealt out across workers, and this worker's rows are grouped by length and the batches shuffled
    with an epoch-seeded generator: same seed, same batches, however Ray schedules the reads.
    """
    from pipeline.text.formatting import length_grouped_batches

    rng = np.random.default_rng(seed)
    window_rows = batch_size * WINDOW_BATCHES * world
    for window in shard.iter_batches(batch_size=window_rows, batch_format="numpy"):
        mine = worker_rows(len(window[col.PROMPT_LEN]), rank, world)
        ids, prompt_lens = window[col.INPUT_IDS][mine], window[col.PROMPT_LEN][mine]
        for rows in length_grouped_batches([len(x) for x in ids], batch_size, rng):
            yield [ids[i] for i in rows], [prompt_lens[i] for i in rows]


def train_loop(config: dict[str, Any]) -> None:
    """Finetune ``config['model_dir']`` on the dataset shard "train"; report a checkpoint per epoch."""
    import deepspeed
    import ray.train
    import torch

    from pipeline.config import FinetuneConfig
    from pipeline.models.loading import load_model, load_tokenizer, resolve_model
    from pipeline.scoring.losses import batch_mean_nll
    from pipeline.text.formatting import collate
    from pipeline.training.deepspeed_config import deepspeed_config, skip_cpu_shm_comm_build, warmup_linear

    ft = FinetuneConfig.model_validate(config["finetune"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(config["seed"] + rank)
    if not ft.use_gpu:
        torch.set_num_threads(max(1, int(ft.cpus_per_worker)))
    model_dir = resolve_model(config["model_dir"])
    start_epoch = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:  # restarted after a failure: continue from the last finished epoch's weights
        with checkpoint.as_directory() as d:
            model = load_model(d, config["trust_remote_code"])
            tokenizer = load_tokenizer(d, config["trust_remote_code"])
            start_epoch = json.load(open(os.path.join(d, TRAIN_STATE)))["epochs_done"]
        if rank == 0:
            print(f"[{config['label']}] restarted: resuming from the checkpoint after epoch {start_epoch}", flush=True)
    else:
        model = load_model(model_dir, config["trust_remote_code"])
        tokenizer = load_tokenizer(model_dir, config["trust_remote_code"])
    model.train()
    freeze_below(model, ft.train_layers)
    bf16 = config["bf16"]
    steps_per_epoch = max(1, config["n_rows"] // (ft.batch_size * world * ft.grad_accum))
    total_steps = steps_per_epoch * ft.epochs
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=ft.learning_rate, weight_decay=ft.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_linear(s + start_epoch * steps_per_epoch, total_steps, ft.warmup_ratio)
    )
    skip_cpu_shm_comm_build()
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(ft, bf16, world)
    )
    device = engine.device
    # On CPU DeepSpeed keeps fp32 weights; autocast gives the bf16 matmuls (AMX) all the same.
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 and not ft.use_gpu else nullcontext()
    shard = ray.train.get_dataset_shard("train")
    label = config["label"]
    for epoch in range(start_epoch, ft.epochs):
        t0, tokens, losses, step = time.time(), 0, [], 0
        for ids, prompt_lens in _epoch_batches(shard, ft.batch_size, config["seed"] + epoch, rank, world):
            t = collate(ids, prompt_lens, tokenizer.pad_token_id)
            t = {k: v.to(device) for k, v in t.items()}
            with autocast:
                logits = engine(input_ids=t["input_ids"], attention_mask=t["attention_mask"]).logits
            loss = batch_mean_nll(logits, t["labels"])
            engine.backward(loss)
            engine.step()
            losses.append(float(loss.detach()))
            tokens += int(t["attention_mask"].sum())
            step += 1
            if rank == 0 and step % config["log_every"] == 0:
                print(f"[{label}] epoch {epoch + 1}/{ft.epochs} step {step}/~{steps_per_epoch * ft.grad_accum} "
                      f"loss {sum(losses[-config['log_every']:]) / config['log_every']:.4f} "
                      f"{tokens / (time.time() - t0):.0f} tok/s", flush=True)
        state_dict = _consolidated_state_dict(engine, ft.zero_stage)
        metrics = {"epoch": epoch + 1, "loss": sum(losses) / max(1, len(losses)), "seconds": time.time() - t0,
                   "tokens_per_s": tokens / max(1e-9, time.time() - t0), "restored_from_epoch": start_epoch}
        with tempfile.TemporaryDirectory() as d:
            ckpt = None
            if rank == 0:
                engine.module.save_pretrained(d, state_dict=state_dict, safe_serialization=True)
                tokenizer.save_pretrained(d)
                json.dump({"epochs_done": epoch + 1}, open(os.path.join(d, TRAIN_STATE), "w"))
                ckpt = ray.train.Checkpoint.from_directory(d)
                print(f"[{label}] epoch {epoch + 1}/{ft.epochs} done: mean loss {metrics['loss']:.4f}, "
                      f"{metrics['tokens_per_s']:.0f} tok/s, {metrics['seconds']:.0f}s", flush=True)
            ray.train.report(metrics, checkpoint=ckpt)
