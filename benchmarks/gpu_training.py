"""Finetune throughput and MFU on one GPU: the training loop's own engine on a 1B-class model.

One process, a process group of one, and ``training.loop.build_engine`` (DeepSpeed ZeRO over
``ResponseLM``: response positions only through the LM head, chunk logits recomputed in the
backward pass, optional gradient checkpointing), fed length-grouped micro-batches of synthetic
rows. Reports real tokens/s and MFU = 6 * N * tokens/s / peak (model FLOPs: the recomputation of
gradient checkpointing is not counted as useful work).

    python benchmarks/gpu_training.py --out benchmarks/gpu_training.json
    python benchmarks/gpu_training.py --tiny --steps 3   # a CPU smoke run of the same code
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
from gpu_scoring import LLAMA_1B, TINY, build_model, peak_tflops, synthetic_rows


def run(path: str, n_params: int, zero: int, checkpointing: bool, batch_size: int, steps: int, gpu: bool, peak: float | None) -> dict:
    import torch

    from pipeline.config import FinetuneConfig
    from pipeline.text.formatting import collate, length_grouped_batches
    from pipeline.training.loop import autocast, build_engine

    ft = FinetuneConfig(zero_stage=zero, gradient_checkpointing=checkpointing, batch_size=batch_size, use_gpu=gpu)
    engine = build_engine(ft, path, False, total_steps=steps + 2)
    compute = autocast(gpu, engine.device)  # bf16 on the GPU, as the training loop runs it
    ids, prompt_lens = synthetic_rows(batch_size * (steps + 2), engine.module.lm.config.vocab_size, seed=zero)
    batches = length_grouped_batches([len(x) for x in ids], steps + 2, np.random.default_rng(0))
    tokens, t0 = 0, 0.0
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    for k, rows in enumerate(batches):
        if k == 2:  # two warm-up steps: kernels, allocator, optimizer state
            if gpu:
                torch.cuda.synchronize()
            t0, tokens = time.perf_counter(), 0
        t = collate([ids[i] for i in rows], [prompt_lens[i] for i in rows], 0)
        t = {key: v.to(engine.device) for key, v in t.items()}
        with compute:
            loss = engine(t["input_ids"], t["attention_mask"], t["labels"], recompute=True)[0].mean()
        engine.backward(loss)
        engine.step()
        tokens += int(t["attention_mask"].sum())
    if gpu:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    flops = 6 * n_params * tokens
    out = {"zero_stage": zero, "gradient_checkpointing": checkpointing, "batch_size": batch_size, "steps": steps,
           "tokens": tokens, "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds),
           "achieved_tflops": round(flops / seconds / 1e12, 1), "mfu": round(flops / seconds / (peak * 1e12), 3) if peak else None,
           "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1) if gpu else None}
    del engine
    if gpu:
        torch.cuda.empty_cache()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--tiny", action="store_true", help="a tiny model on CPU: checks the script, measures nothing")
    ap.add_argument("--peak-tflops", type=float)
    ap.add_argument("--out")
    args = ap.parse_args()
    import torch
    import torch.distributed as dist

    gpu = torch.cuda.is_available() and not args.tiny
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29533", "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"})
    dist.init_process_group("nccl" if gpu else "gloo", rank=0, world_size=1)
    device = torch.cuda.get_device_name() if gpu else "cpu"
    peak = peak_tflops(device, args.peak_tflops)
    results = []
    with tempfile.TemporaryDirectory() as d:
        path, n_params = build_model(d, TINY if args.tiny else LLAMA_1B)
        for zero, checkpointing in ((2, True), (2, False), (3, True)):
            r = run(path, n_params, zero, checkpointing, args.batch_size, args.steps, gpu, peak)
            print(json.dumps(r), flush=True)
            results.append(r)
    dist.destroy_process_group()
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"device": device, "bf16_peak_tflops": peak, "params_counted": n_params,
                       "model": "tiny" if args.tiny else "Llama-3.2-1B shape", "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
