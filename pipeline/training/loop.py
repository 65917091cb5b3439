"""The per-worker training loop that Ray Train's TorchTrainer runs for both finetunes.

Ray Train owns the processes, the process group and fault tolerance (a failed worker group is
restarted from the last reported checkpoint); DeepSpeed owns ZeRO sharding and precision; this
loop owns only the objective: mean NLL over response tokens, the same masking the scorer uses
(``models.response_lm``). Every worker takes the same number of micro-batches per epoch, a
multiple of the accumulation steps (``training.sampling``): a worker with one batch more would
wait in an all-reduce forever. Precision is resolved here, where the device is.
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
from pipeline.training.sampling import micro_batches, window_rows, worker_rows

TRAIN_STATE = "train_state.json"


def _consolidated_state_dict(engine: Any, zero_stage: int) -> dict[str, Any] | None:
    """Full weights of the wrapped LM for export (None off rank 0 under ZeRO-3).

    Under ZeRO-3 every rank must take part in gathering them. Keys lose the ``lm.`` of the
    ``ResponseLM`` wrapper, so they are the plain Hugging Face names.
    """
    state = engine._zero3_consolidated_16bit_state_dict() if zero_stage == 3 else engine.module.state_dict()
    if state is None:
        return None
    return {k.removeprefix("lm."): v for k, v in state.items()}


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


def _epoch_batches(shard: Any, batch_size: int, grad_accum: int, seed: int, rank: int, world: int) -> Iterator[tuple[list, list]]:
    """One epoch of this worker's (input_ids, prompt_lens) micro-batches.

    The shard arrives in the seeded key order (see ``training.sampling``); each window of it is
    dealt out across workers, and this worker's rows are grouped by length and the batches shuffled
    with an epoch-seeded generator: same seed, same batches, however Ray schedules the reads.
    """
    from pipeline.text.formatting import length_grouped_batches

    rng = np.random.default_rng(seed)
    for window in shard.iter_batches(batch_size=window_rows(batch_size, grad_accum, world), batch_format="numpy"):
        mine = worker_rows(len(window[col.PROMPT_LEN]), rank, world)
        n_batches, used = micro_batches(len(mine), batch_size, grad_accum)
        ids, prompt_lens = window[col.INPUT_IDS][mine[:used]], window[col.PROMPT_LEN][mine[:used]]
        for rows in length_grouped_batches([len(x) for x in ids], n_batches, rng):
            yield [ids[i] for i in rows], [prompt_lens[i] for i in rows]


def autocast(bf16: bool, device: Any) -> Any:
    """The context every training forward pass runs in: bf16 matmuls over fp32 weights, or nothing.

    Why not DeepSpeed's bf16 mode, which holds the weights (and so the residual stream) in bf16 and
    keeps fp32 copies for the optimizer: at the package defaults a finetune moves SmolLM2's weights
    by a median 0.44 bf16 steps, so a model held in bf16 forgets much of what it learnt, and that
    is the signal the filter reads. Trained that way, model A's loss came out ~0.12 nats higher on
    every row, on a GPU and on a CPU alike (benchmarks/RESULTS.md, "The real model on a GPU").
    """
    import torch

    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def build_engine(ft: Any, model_path: str, trust_remote_code: bool, total_steps: int, steps_done: int = 0) -> Any:
    """The DeepSpeed engine over ``ResponseLM(model)``, in a process group that already exists.

    Ray Train has set up torch.distributed; DeepSpeed's own communication layer is bound to it
    before the model loads, because under ZeRO-3 the model is built inside ``deepspeed.zero.Init``
    (``HfDeepSpeedConfig`` alive during ``from_pretrained``), so each rank loads only its partition,
    and ``zero.Init`` reads the world size from that layer (unbound, it sees a world of one).
    """
    import deepspeed
    import torch
    import torch.distributed as dist
    from transformers.integrations import HfDeepSpeedConfig

    from pipeline.models.loading import load_model
    from pipeline.models.response_lm import ResponseLM
    from pipeline.training.deepspeed_config import deepspeed_config, skip_cpu_shm_comm_build, warmup_linear

    skip_cpu_shm_comm_build()
    deepspeed.init_distributed(dist_backend=dist.get_backend(), auto_mpi_discovery=False)
    ds_config = deepspeed_config(ft, dist.get_world_size())
    zero3 = HfDeepSpeedConfig(ds_config) if ft.zero_stage == 3 else None
    model = load_model(model_path, trust_remote_code)
    del zero3
    model.config.use_cache = False
    model.train()
    freeze_below(model, ft.train_layers)
    if ft.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=ft.learning_rate, weight_decay=ft.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_linear(s + steps_done, total_steps, ft.warmup_ratio))
    engine, _, _, _ = deepspeed.initialize(model=ResponseLM(model), optimizer=optimizer, lr_scheduler=scheduler, config=ds_config)
    return engine


def _export(local_dir: str, uri: str) -> None:
    """Upload the finished model directory to ``uri`` (the stage's staging directory)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    fs.makedirs(path, exist_ok=True)
    fs.put(local_dir.rstrip("/") + "/", path.rstrip("/") + "/", recursive=True)


def train_loop(config: dict[str, Any]) -> None:
    """Finetune ``config['model_dir']`` on the dataset shard "train".

    Each epoch but the last reports a checkpoint of the weights (restart point); the last one's
    model is written to ``config['export_uri']`` by rank 0.
    """
    import ray.train
    import torch

    from pipeline.config import FinetuneConfig
    from pipeline.models.loading import load_tokenizer, resolve_model
    from pipeline.models.precision import use_bf16
    from pipeline.text.formatting import collate
    from pipeline.training.sampling import optimizer_steps

    ft = FinetuneConfig.model_validate(config["finetune"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(config["seed"] + rank)
    if ft.use_gpu and not torch.cuda.is_available():
        raise RuntimeError("use_gpu is set but this training worker sees no CUDA device")
    if not ft.use_gpu:
        torch.set_num_threads(max(1, int(ft.cpus_per_worker)))
    bf16 = use_bf16(config["precision"], ft.use_gpu)
    steps_per_epoch = max(1, optimizer_steps(config["n_rows"], ft.batch_size, ft.grad_accum, world))
    start_epoch = 0
    checkpoint = ray.train.get_checkpoint()  # set when restarted after a failure
    with checkpoint.as_directory() if checkpoint else nullcontext(resolve_model(config["model_dir"])) as model_path:
        if checkpoint:  # continue from the last finished epoch's weights
            start_epoch = json.load(open(os.path.join(model_path, TRAIN_STATE)))["epochs_done"]
            if start_epoch >= ft.epochs:  # failed after the final report: the model is already exported
                return
            if rank == 0:
                print(f"[{config['label']}] restarted: resuming from the checkpoint after epoch {start_epoch}", flush=True)
        tokenizer = load_tokenizer(model_path, config["trust_remote_code"])
        engine = build_engine(ft, model_path, config["trust_remote_code"], steps_per_epoch * ft.epochs, start_epoch * steps_per_epoch)
    device = engine.device
    compute = autocast(bf16, device)
    shard = ray.train.get_dataset_shard("train")
    label = config["label"]
    for epoch in range(start_epoch, ft.epochs):
        t0, tokens, losses, step = time.time(), 0, [], 0
        for ids, prompt_lens in _epoch_batches(shard, ft.batch_size, ft.grad_accum, config["seed"] + epoch, rank, world):
            t = collate(ids, prompt_lens, tokenizer.pad_token_id)
            t = {k: v.to(device) for k, v in t.items()}
            with compute:
                # every row has a response token (ingest rejects the others), so the mean is defined
                loss = engine(t["input_ids"], t["attention_mask"], t["labels"], recompute=True)[0].mean()
            engine.backward(loss)
            engine.step()
            losses.append(float(loss.detach()))
            tokens += int(t["attention_mask"].sum())
            step += 1
            if rank == 0 and step % config["log_every"] == 0:
                print(f"[{label}] epoch {epoch + 1}/{ft.epochs} step {step}/{steps_per_epoch * ft.grad_accum} "
                      f"loss {sum(losses[-config['log_every']:]) / config['log_every']:.4f} "
                      f"{tokens / (time.time() - t0):.0f} tok/s", flush=True)
        state_dict = _consolidated_state_dict(engine, ft.zero_stage)
        metrics = {"epoch": epoch + 1, "loss": sum(losses) / max(1, len(losses)), "seconds": time.time() - t0,
                   "tokens_per_s": tokens / max(1e-9, time.time() - t0), "restored_from_epoch": start_epoch,
                   "micro_batches": step, "bf16": bf16}
        last = epoch + 1 == ft.epochs
        with tempfile.TemporaryDirectory() as d:
            ckpt = None
            if rank == 0:
                engine.module.lm.save_pretrained(d, state_dict=state_dict, safe_serialization=True)
                tokenizer.save_pretrained(d)
                state_dir = d  # a restart point: Ray Train keeps the latest one in its storage
                if last:
                    # The result goes straight to the run directory, uploaded once. The last report
                    # still carries a checkpoint, of the state alone: Ray Train keeps the metrics of
                    # the latest checkpoint as the result's.
                    _export(d, config["export_uri"])
                    state_dir = os.path.join(d, "state")
                    os.mkdir(state_dir)
                json.dump({"epochs_done": epoch + 1}, open(os.path.join(state_dir, TRAIN_STATE), "w"))
                ckpt = ray.train.Checkpoint.from_directory(state_dir)
                print(f"[{label}] epoch {epoch + 1}/{ft.epochs} done: mean loss {metrics['loss']:.4f}, "
                      f"{metrics['tokens_per_s']:.0f} tok/s, {metrics['seconds']:.0f}s", flush=True)
            ray.train.report(metrics, checkpoint=ckpt)
