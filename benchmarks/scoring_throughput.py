"""Scoring throughput (tokens/s) and its ratio to this machine's measured matmul peak.

Runs the scoring actor's code in-process (no Ray) on synthetic rows, so the number is the model
work itself. Each scored token goes through two models (A and B): achieved FLOP/s is
``2 models x 2 x parameters x tokens / seconds``, compared with the peak of a large square matmul
in the precision the scorer uses on this machine.

    python benchmarks/scoring_throughput.py                      # tiny model built here
    python benchmarks/scoring_throughput.py --model smollm2-135m-instruct --rows 64
    python benchmarks/scoring_throughput.py --model smollm2-135m-instruct --rows 64 --states prompts+replies

``--states`` adds what the score stage keeps beside the losses: B's prompt states (free: they come out
of B's pass) and B's reply states (one more pass of B, over each reply read as a prompt). The FLOP/s
count only the two models' passes, so with reply states the ratio understates the work done.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import pyarrow as pa
import torch

from pipeline.models.loading import resolve_model
from pipeline.models.precision import bf16_supported
from pipeline.models.tiny import build_tiny_model
from pipeline.scoring.scorer import PairScorer


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    """FLOP/s of an n x n matmul in ``dtype`` on this device."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model name or path (default: a ~3.6M-parameter tiny Llama)")
    p.add_argument("--rows", type=int, default=256)
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--response-len", type=int, default=64)
    p.add_argument("--max-tokens", type=int, default=8192, help="scoring.max_tokens_per_batch")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--states", choices=("none", "prompts", "prompts+replies"), default="none",
                   help="B's states kept beside the losses, as the score stage keeps them")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    bf16 = bf16_supported(use_gpu=False)
    with tempfile.TemporaryDirectory() as d:
        model = args.model or build_tiny_model(os.path.join(d, "tiny"), ["a b c d e f g h"] * 20)
        path = resolve_model(model)
        scorer = PairScorer(path, path, "log_ratio", args.max_tokens, "bf16" if bf16 else "fp32", use_gpu=False, threads=args.threads,
                            prompt_states=args.states != "none", reply_states=args.states == "prompts+replies")
        params = sum(p.numel() for p in scorer.models[0].parameters())
        vocab = scorer.models[0].lm.config.vocab_size
        rng = np.random.default_rng(0)
        n = args.prompt_len + args.response_len
        ids = [rng.integers(3, vocab, n).astype(np.int32) for _ in range(args.rows)]
        batch = pa.table({"input_ids": pa.array(ids, type=pa.list_(pa.int32())),
                          "prompt_len": pa.array([args.prompt_len] * args.rows)})
        scorer(batch.slice(0, min(8, args.rows)))  # warm-up
        t = time.perf_counter()
        scorer(batch)
        seconds = time.perf_counter() - t
    tokens = args.rows * n
    achieved = 2 * 2 * params * tokens / seconds
    dtype = torch.bfloat16 if bf16 else torch.float32
    peak = matmul_peak(dtype)
    print(f"model: {model or 'tiny'} ({params / 1e6:.1f}M parameters), {args.threads} threads, "
          f"scoring precision {'bf16 autocast' if bf16 else 'fp32'}, states kept: {args.states}")
    print(f"rows {args.rows} x {n} tokens: {seconds:.2f}s -> {tokens / seconds:,.0f} tokens/s "
          f"({args.rows / seconds:,.1f} rows/s), each token through models A and B")
    print(f"achieved {achieved / 1e9:.1f} GFLOP/s; {str(dtype).split('.')[-1]} matmul peak "
          f"{peak / 1e9:.1f} GFLOP/s; ratio {achieved / peak:.2f}")


if __name__ == "__main__":
    main()
