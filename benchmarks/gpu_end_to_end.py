"""The whole pipeline on one GPU: Ray Train workers (NCCL, DeepSpeed ZeRO-3) and a scoring actor on the device.

The GPU tests and benchmarks call the training engine and the scorer directly; this runs the
``forgetfilter run`` command itself with the GPU settings of ``jobs/configs/gpu.yaml`` (one worker
and one actor per GPU, bf16 chosen on the device), so the Ray placement of both finetunes and of the
scoring actor pool runs on a real GPU. The model is the tests' tiny Llama and the corpus the tests'
labelled one: what it shows is that the run completes and where every input row landed (kept /
dropped / rejected), with the AUROCs beside the CPU run's. ``rescore`` scores the CPU run's models
on the GPU and compares row by row, which tells scoring apart from what the finetunes learned.

    python benchmarks/gpu_end_to_end.py prepare --root /tmp/ffgpu   # here: model, corpus, and the CPU run
    python benchmarks/gpu_end_to_end.py gpu --root /tmp/ffgpu --out gpu_end_to_end.json   # on the GPU machine
    python benchmarks/gpu_end_to_end.py rescore --root /tmp/ffgpu --out gpu_rescore.json  # there: the CPU run's A, B scored on the GPU

``prepare`` also runs the ingest stage into the GPU run's output directory, and ``gpu`` resumes
after it (same paths, same input stamps, so the same fingerprint): our GPU machine is reached
through a transfer too small for the polars runtime wheel that ingest's duplicate pass needs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.runtime import rundir as layout  # noqa: E402 - after the path it needs

TRAIN = ["--set", "noisy_finetune.epochs=8", "--set", "noisy_finetune.learning_rate=3e-3",
         "--set", "safety_finetune.epochs=4", "--set", "safety_finetune.learning_rate=3e-3",
         "--set", "noisy_finetune.zero_stage=3", "--set", "noisy_finetune.gradient_checkpointing=true",
         "--set", "safety_finetune.zero_stage=3", "--set", "safety_finetune.gradient_checkpointing=true"]
GPU_SCORING = ["--set", "scoring.gpus_per_actor=1", "--set", "scoring.num_actors=1", "--set", "scoring.cpus_per_actor=2"]
GPU = ["--set", "noisy_finetune.use_gpu=true", "--set", "noisy_finetune.num_workers=1",
       "--set", "safety_finetune.use_gpu=true", "--set", "safety_finetune.num_workers=1", *GPU_SCORING]


def _args(root: Path, out: str) -> list[str]:
    return ["--input", str(root / "corpus.jsonl"), "--safety", str(root / "safety.jsonl"), "--output", str(root / out),
            "--model", str(root / "model"), *TRAIN]


def prepare(root: Path) -> None:
    """Model, corpus, a full CPU run for comparison, and the GPU run's ingest stage."""
    from pipeline.cli import main
    from pipeline.models.tiny import build_tiny_model
    from tests.conftest import make_corpus, write_jsonl

    root.mkdir(parents=True, exist_ok=True)
    rows, safety = make_corpus()
    write_jsonl(root / "corpus.jsonl", rows)
    write_jsonl(root / "safety.jsonl", safety)
    texts = [r["prompt"] + " " + r["response"] for r in rows + safety]
    build_tiny_model(str(root / "model"), texts * 3, hidden_size=192, num_layers=2)
    save_stamps(root)
    assert main(["ingest", *_args(root, "out-gpu")]) == 0
    t0 = time.perf_counter()
    assert main(["run", *_args(root, "out-cpu")]) == 0
    print(json.dumps({"cpu_run_seconds": round(time.perf_counter() - t0, 1), **_summary(root / "out-cpu")}))


def save_stamps(data: Path) -> None:
    """Keep the modification stamps of ``data``'s corpus and safety set beside them (``restore_stamps``)."""
    stamps = {name: os.stat(data / name).st_mtime_ns for name in ("corpus.jsonl", "safety.jsonl")}
    (data / "stamps.json").write_text(json.dumps(stamps))


def restore_stamps(data: Path) -> None:
    """The inputs' modification stamps as ``save_stamps`` saw them: the transfer to the GPU machine may
    not keep them, and ingest's fingerprint reads them."""
    for name, ns in json.loads((data / "stamps.json").read_text()).items():
        os.utime(data / name, ns=(ns, ns))


def _emit(result: dict, out: str | None) -> None:
    print(json.dumps(result, indent=1))
    if out:
        Path(out).write_text(json.dumps(result, indent=1))


def _summary(out: Path) -> dict:
    s = json.loads((out / layout.REPORT / "summary.json").read_text())
    ev = s["evaluation"]
    return {"counts": s["counts"], "auroc_forgetting": ev["auroc_forgetting"], "auroc": ev["auroc"],
            "tp_fp_fn": [ev["tp"], ev["fp"], ev["fn"]], "threshold": s["threshold"]["value"]}


def gpu(root: Path, out: str | None) -> None:
    """The same run with the GPU settings, resumed after the ingest stage ``prepare`` ran."""
    import torch

    from pipeline.cli import main

    restore_stamps(root)
    t0 = time.perf_counter()
    rc = main(["run", *_args(root, "out-gpu"), *GPU])
    seconds = time.perf_counter() - t0
    result = {"device": torch.cuda.get_device_name(), "rc": rc, "gpu_run_seconds": round(seconds, 1)}
    if rc == 0:
        result.update(_summary(root / "out-gpu"))
        result["cpu"] = _summary(root / "out-cpu")
        result["manifest"] = json.loads((root / "out-gpu" / layout.MANIFEST).read_text())
    _emit(result, out)


def _scores(out: Path) -> dict:
    import pyarrow.parquet as pq

    t = pq.read_table(out / layout.SCORES)
    return {i: row for i, row in zip(t.column("example_id").to_pylist(), t.to_pylist())}


def rescore(root: Path, out: str | None) -> None:
    """The CPU run's models A and B scored again by a GPU actor, row by row against the CPU scores:
    tells a difference in scoring from a difference in what the finetunes learned."""
    import numpy as np

    from pipeline.cli import main

    restore_stamps(root)
    on_cpu = _scores(root / "out-cpu")
    rc = main(["score", *_args(root, "out-cpu"), *GPU_SCORING])
    on_gpu = _scores(root / "out-cpu")
    result = {"rc": rc, "rows": len(on_gpu)}
    for name in ("loss_a", "loss_b", "score_log_ratio", "score_delta", "score_seq_logprob_drop"):
        if name in next(iter(on_cpu.values())):
            c, g = np.array([on_cpu[i][name] for i in on_gpu]), np.array([on_gpu[i][name] for i in on_gpu])
            result[name] = {"max_abs_diff": float(np.nanmax(np.abs(c - g))), "cpu_mean": float(np.nanmean(c))}
    _emit(result, out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=("prepare", "gpu", "rescore"))
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.step == "prepare":
        prepare(a.root)
    elif a.step == "gpu":
        gpu(a.root, a.out)
    else:
        rescore(a.root, a.out)
