"""Scoring throughput and MFU on one GPU: the scoring actor's own code on a 1B-class model.

Builds a Llama-3.2-1B-shaped model with random weights (throughput does not depend on the
weights, and nothing is downloaded), saves it as models A and B, and runs ``PairScorer.losses``
(token-budget micro-batches, response positions only through the LM head, bf16 on the GPU unless
``--precision`` says otherwise) on
synthetic rows whose lengths follow a long-tailed chat corpus. Reports real tokens/s, padding
(padded slots / all slots) and MFU = 2 * N * tokens/s / peak, with N the parameters a token
passes through (the input embedding excluded), counted once per model.

    python benchmarks/gpu_scoring.py --out benchmarks/gpu_scoring.json
    python benchmarks/gpu_scoring.py --tiny --rows 64   # a CPU smoke run of the same code
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "H800": 989.0, "A100": 312.0, "A800": 312.0, "L40S": 362.0, "L4": 121.0}
"""Dense bf16 tensor-core peak by device name (vendor data sheets, SXM parts)."""

LLAMA_1B = {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
            "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": True}
TINY = {"hidden_size": 64, "intermediate_size": 192, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 4, "vocab_size": 512, "tie_word_embeddings": True}


def peak_tflops(name: str, override: float | None) -> float | None:
    if override:
        return override
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)


def build_model(out_dir: str, shape: dict) -> tuple[str, int]:
    """A random-weight Llama of ``shape`` with a small tokenizer (only its pad id is used); its N."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from pipeline.models.tiny import build_tiny_model

    tok_dir = build_tiny_model(os.path.join(out_dir, "tok"), ["a b c d e"] * 10, vocab_size=300, hidden_size=8, num_layers=1)
    torch.manual_seed(0)
    cfg = LlamaConfig(**shape, max_position_embeddings=8192, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    n = sum(p.numel() for p in model.parameters()) - model.get_input_embeddings().weight.numel()
    if cfg.tie_word_embeddings:  # the head's matmul still runs: count it
        n += model.get_input_embeddings().weight.numel()
    path = os.path.join(out_dir, "model")
    model.save_pretrained(path, safe_serialization=True)
    for f in os.listdir(tok_dir):
        if "token" in f or f == "special_tokens_map.json":
            os.replace(os.path.join(tok_dir, f), os.path.join(path, f))
    return path, n


def synthetic_rows(n: int, vocab: int, seed: int = 0) -> tuple[list[list[int]], list[int]]:
    """Rows of lognormal length (median ~350 tokens, capped at 2048), prompts ~40% of each."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(350), 0.7, n), 16, 2048).astype(int)
    ids = [rng.integers(3, vocab, size=k).tolist() for k in lengths]
    return ids, [max(1, int(k * 0.4)) for k in lengths]


def padding(lengths: list[int], max_tokens: int) -> float:
    """Padded slots / all slots of the scorer's micro-batches."""
    from pipeline.text.formatting import token_budget_batches

    slots = sum(len(g) * max(lengths[i] for i in g) for g in token_budget_batches(lengths, max_tokens))
    return 1 - sum(lengths) / slots


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--batch-rows", type=int, default=1024, help="rows per scorer call (scoring.batch_size)")
    ap.add_argument("--max-tokens", type=int, nargs="+", default=[32768, 65536, 131072], help="scoring.max_tokens_per_batch values")
    ap.add_argument("--tiny", action="store_true", help="a tiny model on CPU: checks the script, measures nothing")
    ap.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak, if not in BF16_PEAK_TFLOPS")
    ap.add_argument("--precision", choices=["bf16", "tf32", "fp32"], default="bf16",
                    help="on the GPU: bf16 weights (the scoring actors' choice), or fp32 weights with TF32 or fp32 matmuls")
    ap.add_argument("--out")
    args = ap.parse_args()
    import torch

    from pipeline.scoring.scorer import PairScorer

    gpu = torch.cuda.is_available() and not args.tiny
    if args.precision == "tf32":
        torch.set_float32_matmul_precision("high")
    precision = ("bf16" if args.precision == "bf16" else "fp32") if gpu else "fp32"
    device = torch.cuda.get_device_name() if gpu else "cpu"
    peak = peak_tflops(device, args.peak_tflops)
    results = []
    with tempfile.TemporaryDirectory() as d:
        path, n_params = build_model(d, TINY if args.tiny else LLAMA_1B)
        ids, prompt_lens = synthetic_rows(args.rows, (TINY if args.tiny else LLAMA_1B)["vocab_size"])
        for max_tokens in args.max_tokens:
            scorer = PairScorer(path, path, "log_ratio", max_tokens, precision, use_gpu=gpu)
            scorer.losses(ids[: args.batch_rows], prompt_lens[: args.batch_rows])  # warm-up: kernels, allocator
            if gpu:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            for s in range(0, len(ids), args.batch_rows):
                scorer.losses(ids[s: s + args.batch_rows], prompt_lens[s: s + args.batch_rows])
            if gpu:
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
            tokens = sum(len(x) for x in ids)
            flops = 2 * n_params * tokens * 2  # two models
            r = {"max_tokens_per_batch": max_tokens, "rows": len(ids), "tokens": tokens, "seconds": round(seconds, 2),
                 "tokens_per_s": round(tokens / seconds), "rows_per_s": round(len(ids) / seconds, 1),
                 "padding": round(np.mean([padding([len(x) for x in ids[s: s + args.batch_rows]], max_tokens)
                                           for s in range(0, len(ids), args.batch_rows)]), 4),
                 "achieved_tflops": round(flops / seconds / 1e12, 1),
                 "mfu": round(flops / seconds / (peak * 1e12), 3) if peak else None,
                 "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1) if gpu else None}
            print(json.dumps(r), flush=True)
            results.append(r)
            del scorer
            if gpu:
                torch.cuda.empty_cache()
    out = {"device": device, "precision": args.precision if gpu else "fp32", "bf16_peak_tflops": peak, "params_counted": n_params,
           "model": "tiny" if args.tiny else "Llama-3.2-1B shape",
           "results": results}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
