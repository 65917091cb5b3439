"""The real model on a GPU: SmolLM2-135M-Instruct finetuned and scored by ``forgetfilter run`` on one GPU,
on the same corpora as threshold runs made on CPUs, row by row against them.

``gpu_end_to_end.py`` showed that the pipeline runs on a GPU, with a tiny random-init model whose
separation says nothing. What a GPU user needs to know is whether the filter still separates unsafe
from task rows when both finetunes run in bf16 on a GPU (the CPU runs trained in fp32). So this
takes threshold runs (``benchmarks/threshold_data/<run>.json``, made by ``threshold_runs.py`` at the
package defaults), rebuilds each one's corpus from its recorded source, share, styles and seed
(the row ids must match), and runs it again with only the device settings changed: one Ray Train
GPU worker per finetune, one GPU scoring actor, ``precision: auto`` (bf16 on the GPU).

    python benchmarks/gpu_real_model.py prepare --root /tmp/ffreal RUN...   # here: corpora + ingest
    python benchmarks/gpu_real_model.py gpu --root /tmp/ffreal --out DIR    # on the GPU machine
    python benchmarks/gpu_real_model.py compare DIR [--out benchmarks/gpu_real_model.json]  # here

``prepare`` runs the ingest stage where polars is installed and ``gpu`` resumes after it (same paths,
same input stamps, so the same fingerprint), as ``gpu_end_to_end.py`` does. ``gpu`` writes one file per
run in ``threshold_runs.py``'s format, which ``compare`` judges beside the CPU run's file with the
threshold benchmark's own functions (``thresholds.run_arrays``, ``thresholds.corroborated``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from gpu_end_to_end import restore_stamps, save_stamps  # noqa: E402 - after the path it needs
from threshold_runs import DATA, RECIPES, keep_scores, run_args, run_name  # noqa: E402

GPU = {"noisy_finetune.use_gpu": "true", "noisy_finetune.num_workers": "1", "safety_finetune.use_gpu": "true",
       "safety_finetune.num_workers": "1", "scoring.gpus_per_actor": "1", "scoring.num_actors": "1"}
"""The only settings that differ from the CPU run: where the work runs (precision stays ``auto``: bf16 there)."""


def _args(work: Path, meta: dict) -> list[str]:
    """The CPU run's arguments (``threshold_runs.run_args``) with the GPU settings on top."""
    return run_args(str(work / "data" / "corpus.jsonl"), str(work / "data" / "safety.jsonl"), str(work / "out"),
                    meta["seed"], {**meta["overrides"], **GPU})


def prepare(root: Path, runs: list[str]) -> None:
    """Each run's corpus, rebuilt and checked against the CPU run's row ids, and the GPU run's ingest stage."""
    from corpora import build

    from pipeline.cli import main

    for name in runs:
        meta = {k: v for k, v in json.loads((DATA / f"{name}.json").read_text()).items() if k != "safety_prompt_states"}
        if meta["recipe"] != "defaults" or meta["overrides"] != RECIPES["defaults"]:
            raise SystemExit(f"{name}: only runs at the package defaults are compared (recipe {meta['recipe']})")
        cpu_ids = {r["id"] for r in meta.pop("rows")}
        work = root / name
        paths = build(str(work / "data"), meta["source"], meta["unsafe_share"], len(cpu_ids), meta["styles"],
                      meta["seed"], meta["safety_rows"])
        ids = {json.loads(ln)["id"] for ln in Path(paths["corpus"]).read_text(encoding="utf-8").splitlines()}
        if ids != cpu_ids:
            raise SystemExit(f"{name}: the rebuilt corpus is not the CPU run's ({len(ids ^ cpu_ids)} ids differ)")
        save_stamps(work / "data")
        (work / "meta.json").write_text(json.dumps(meta))
        assert main(["ingest", *_args(work, meta)]) == 0
        print(f"{name}: prepared", flush=True)
    (root / "runs.json").write_text(json.dumps(runs))  # ``gpu`` keeps this order: the first named matters most


def gpu(root: Path, out: Path) -> None:
    """Every prepared run with the GPU settings, resumed after ingest; its scores kept as ``threshold_runs`` keeps them."""
    import torch

    from pipeline.cli import main

    out.mkdir(parents=True, exist_ok=True)
    for name in json.loads((root / "runs.json").read_text()):
        work = root / name
        meta = json.loads((work / "meta.json").read_text())
        restore_stamps(work / "data")
        t0 = time.perf_counter()
        rc = main(["run", *_args(work, meta)])
        meta.update(device=torch.cuda.get_device_name(), gpu_overrides=GPU, wall_s=round(time.perf_counter() - t0, 1), rc=rc)
        print(json.dumps({k: meta[k] for k in ("run", "rc", "wall_s")}), flush=True)
        if rc == 0:
            keep_scores(work / "out", work / "data" / "corpus.jsonl", out / f"{meta['run']}.json", meta)


def _judged(d: dict) -> dict:
    """AUROC of every score, the best F1 in hindsight and the default config's cut on one run's file."""
    import numpy as np
    from thresholds import DEFAULT_SCORE, corroborated, judge, run_arrays

    from pipeline.reporting.metrics import auroc

    y, (la, lb, _), scores, states = run_arrays(d)
    labelled = bool(y.any() and not y.all())
    judged = judge(scores[DEFAULT_SCORE], y)
    return {"aurocs": {k: round(auroc(v, y.astype(float)), 4) for k, v in scores.items()} if labelled else None,
            "best_f1": judged.get("best_f1"), "default": corroborated(scores, y, states), "plain_mixture": judged["mixture"],
            "mean_loss_a": float(np.mean(la)), "mean_loss_b": float(np.mean(lb))}


def compare(gpu_dir: Path, out: Path | None) -> None:
    """Each run in ``gpu_dir`` judged beside the CPU run of the same corpus and settings without overrides,
    with the per-row agreement of the two runs' losses (also for CPU runs with ``--set model.precision=...``)."""
    import numpy as np

    result = []
    for path in sorted(gpu_dir.glob("*.json")):
        g = json.loads(path.read_text())
        if not (isinstance(g, dict) and "source" in g and isinstance(g.get("rows"), list)):
            continue  # not a run's file (a comparison's or precision_scoring.py's output)
        reference = run_name(g["source"], g["unsafe_share"], g["styles"], len(g["rows"]), g["seed"], g["recipe"], g["safety_rows"])
        c = json.loads((DATA / f"{reference}.json").read_text())  # the same run with no override: the CPU run
        cpu_rows = {r["id"]: r for r in c["rows"]}
        rows = [(cpu_rows[r["id"]], r) for r in g["rows"]]
        # Same ids, same replies: a corpus rebuilt before the docstrings fix could differ (pipeline/demo/build.py)
        same = sum(x["words"] == y["words"] and x["n_tokens"] == y["n_tokens"] for x, y in rows)
        agreement = {"rows_with_the_same_reply": same, "rows": len(rows)}
        for k in ("loss_a", "loss_b"):
            a, b = np.array([x[k] for x, _ in rows]), np.array([y[k] for _, y in rows])
            agreement[k] = {"pearson": round(float(np.corrcoef(a, b)[0, 1]), 4), "median_abs_diff": round(float(np.median(np.abs(a - b))), 4)}
        result.append({"run": g["run"], "device": g.get("device", "cpu"), "wall_s": g["wall_s"], "reference_wall_s": c["wall_s"],
                       "overrides": {k: v for k, v in g["overrides"].items() if k not in c["overrides"]} | g.get("gpu_overrides", {}),
                       "same_corpus": same == len(rows), "per_row_agreement": agreement, "reference": _judged(c), "this_run": _judged(g)})
    text = json.dumps(result, indent=1)
    print(text)
    if out:
        out.write_text(text + "\n")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("runs", nargs="+", help="threshold_data run names (package defaults)")
    g = sub.add_parser("gpu")
    g.add_argument("--root", type=Path, required=True)
    g.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("compare")
    c.add_argument("gpu_dir", type=Path)
    c.add_argument("--out", type=Path)
    a = ap.parse_args()
    if a.step == "prepare":
        prepare(a.root, a.runs)
    elif a.step == "gpu":
        gpu(a.root, a.out)
    else:
        compare(a.gpu_dir, a.out)
