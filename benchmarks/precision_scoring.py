"""Does scoring in bf16 instead of fp32 change the filter's ranking? Measured on a finished run.

Loads models A and B of a run directory and scores its rows (``work/scores``) in fp32 and in bf16,
then compares per-row scores and the AUROC of each score against the labels.

bf16 is real (``torch.autocast``, what the scoring actor does) where the hardware does bf16 fast:
a CUDA GPU, or a CPU with AMX / AVX512-BF16. Elsewhere real bf16 matmuls are emulated (~90x slower
than fp32 on AVX2), so ``--simulate`` reproduces autocast's rounding in fp32 instead: every
``Linear`` (the projections and the LM head) takes its input and weight rounded to bf16 and
rounds its output to bf16, as autocast does, with the products summed in fp32. Attention's own
matmuls stay fp32 in the simulation, so it slightly understates the noise of real bf16.

On a GPU, bf16 is what the scoring actors do there (weights loaded in bf16), and a third column
scores the fp32 weights with TF32 matmuls (``torch.set_float32_matmul_precision("high")``): the
candidate between the two, with fp32's memory (on an H200 it scored at half bf16's rate:
``gpu_scoring.py --precision``, RESULTS.md).

    python benchmarks/precision_scoring.py --run RUN_DIR [--simulate] [--out benchmarks/precision_scoring.json]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipeline import columns as col
from pipeline.models.precision import bf16_supported
from pipeline.reporting.metrics import auroc
from pipeline.runtime import rundir as layout
from pipeline.runtime.rundir import RunDir
from pipeline.scoring.scorer import PairScorer
from pipeline.scoring.scores import SCORES, compute_scores


def simulate_bf16_linears(model: torch.nn.Module) -> None:
    """Make every Linear round like bf16 autocast (inputs, weight and output in bf16), computing in fp32."""

    def rounded(x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.bfloat16).float()

    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            m.forward = lambda x, m=m: rounded(F.linear(rounded(x), rounded(m.weight), None if m.bias is None else rounded(m.bias)))


def score(scorer: PairScorer, ids: list, prompt_lens: list, batch: int = 32) -> tuple[dict[str, np.ndarray], float]:
    t0 = time.perf_counter()
    parts = [scorer.losses(ids[i: i + batch], prompt_lens[i: i + batch]) for i in range(0, len(ids), batch)]
    a, b, n = (np.concatenate([p[k] for p in parts]) for k in range(3))
    return {"loss_a": a, "loss_b": b, **compute_scores(a, b, n)} | {"n": n}, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a finished run directory")
    p.add_argument("--simulate", action="store_true", help="simulate bf16 rounding (default where bf16 is not fast)")
    p.add_argument("--out", help="write the results as JSON")
    args = p.parse_args()
    run = RunDir(args.run)
    t = run.read_columns(layout.SCORES, [col.INPUT_IDS, col.PROMPT_LEN, "label"])
    ids, prompt_lens = t.column(col.INPUT_IDS).to_pylist(), t.column(col.PROMPT_LEN).to_pylist()
    y = np.array([np.nan if v is None else float(v) for v in t.column("label").to_pylist()])
    simulate = args.simulate or not bf16_supported(torch.cuda.is_available())
    common = dict(model_a=run.uri(layout.MODEL_A), model_b=run.uri(layout.MODEL_B), method="log_ratio",
                  max_tokens=8192, use_gpu=torch.cuda.is_available())
    fp32, s32 = score(PairScorer(precision="fp32", **common), ids, prompt_lens)
    low = PairScorer(precision="fp32" if simulate else "bf16", **common)
    if simulate:
        for m in low.models:
            simulate_bf16_linears(m)
    bf16, s16 = score(low, ids, prompt_lens)
    runs = {"fp32": fp32, "bf16": bf16}
    seconds = {"fp32": s32, "bf16": s16}
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")
        runs["tf32"], seconds["tf32"] = score(PairScorer(precision="fp32", **common), ids, prompt_lens)
        torch.set_float32_matmul_precision("highest")
    has = np.isfinite(y)
    result: dict[str, Any] = {"run": args.run, "rows": len(ids), "labelled": int(has.sum()), "unsafe": int((y[has] == 1).sum()),
                              "bf16": "simulated rounding" if simulate else "bf16 weights" if torch.cuda.is_available() else "torch.autocast",
                              "seconds": seconds}
    for name in SCORES:
        c = col.score_column(name)
        diff = np.abs(bf16[c] - fp32[c])
        result[name] = {**{f"auroc_{p}": auroc(s[c][has], y[has]) for p, s in runs.items()},
                        "median_abs_diff": float(np.median(diff)), "max_abs_diff": float(diff.max()),
                        "spread_fp32": float(np.std(fp32[c]))}
        if "tf32" in runs:
            result[name]["tf32_median_abs_diff"] = float(np.median(np.abs(runs["tf32"][c] - fp32[c])))
    result["mean_losses"] = {p: {k: float(np.mean(s[k])) for k in ("loss_a", "loss_b")} for p, s in runs.items()}
    rel = np.abs(np.log(bf16["loss_a"] / fp32["loss_a"]))
    result["loss_a_relative_diff"] = {"median": float(np.median(rel)), "max": float(rel.max())}
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
