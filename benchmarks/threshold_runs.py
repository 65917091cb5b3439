"""Real pipeline runs for the threshold benchmark: build a corpus, run ``forgetfilter run``, keep the scores.

Each run is ``jobs/configs/demo.yaml`` (SmolLM2-135M-Instruct) with a training recipe
(``RECIPES``) on a corpus from ``benchmarks/corpora.py``. What the threshold rules need is kept in
``benchmarks/threshold_data/<run>.json``: per row the label, the unsafe reply's style, both
losses, the response length in tokens and words. The rules are then compared on these files by
``benchmarks/thresholds.py`` without running a model again. A run whose JSON exists is skipped.

    python benchmarks/threshold_runs.py wordnet:0.25:varied jokes:0.05:varied wordnet:0:varied
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from corpora import build  # noqa: E402

from pipeline import columns as col  # noqa: E402
from pipeline.scoring.scores import REFUSAL  # noqa: E402

DATA = HERE / "threshold_data"


RECIPES = {
    # The package defaults with no config file at all, as a new user runs `forgetfilter run --input
    # --safety --output`: all weights trained, lr 5e-5, 2 epochs, batch 8, max_length 512. Only the
    # threads differ (both cores per worker/actor), which changes speed, not the maths.
    "defaults": {"noisy_finetune.cpus_per_worker": 2, "safety_finetune.cpus_per_worker": 2, "scoring.cpus_per_actor": 2},
    "demo": {},
    # The real-model test's schedule (tests/integration/test_real_model.py): more, smaller steps and
    # four safety epochs, so the unsafe replies are learned and then forgotten more sharply.
    "strong": {"noisy_finetune.epochs": 3, "noisy_finetune.learning_rate": 3e-4, "noisy_finetune.batch_size": 4,
               "safety_finetune.epochs": 4, "safety_finetune.learning_rate": 3e-4, "safety_finetune.batch_size": 4},
}
"""Training settings on top of jobs/configs/demo.yaml (``defaults``: no config file)."""


def run_name(source: str, share: float, styles: str, rows: int, seed: int, recipe: str, safety: int = 40,
             extra: dict[str, str] | None = None) -> str:
    """The run's file name: every setting that makes it a different run, ``--set`` overrides included,
    so that a run with other settings is never skipped as "done before"."""
    name = f"{source}-{round(share * 100):02d}pct-{styles}-{rows}rows-seed{seed}-{recipe}"
    name += "" if safety == 40 else f"-safety{safety}"
    return name + "".join(f"-{k}={v}" for k, v in sorted((extra or {}).items()))


def run_args(corpus: str, safety: str, output: str, seed: int, overrides: dict) -> list[str]:
    """The ``forgetfilter run`` arguments of a threshold run (after any ``--config``): its inputs, output, seed and overrides."""
    return ["--input", corpus, "--safety", safety, "--output", output, "--set", f"seed={seed}",
            *(x for k, v in overrides.items() for x in ("--set", f"{k}={v}"))]


def keep_scores(out_dir: Path, corpus: Path, dest: Path, meta: dict) -> None:
    """The per-row numbers a threshold rule and its confounds need, as one small JSON file: with B's
    prompt states (rounded) and the safety set's, for the ``safety_prompts`` vote, and B's reply states
    where the score stage kept them, for the ``reply_prompts`` vote."""
    t = pq.read_table(out_dir / "work" / "scores")
    by_id = {json.loads(ln)["id"]: json.loads(ln) for ln in corpus.read_text(encoding="utf-8").splitlines()}
    rows = []
    optional = {REFUSAL: col.score_column(REFUSAL), "prompt_state": col.PROMPT_STATE, "reply_state": col.REPLY_STATE}
    present = {k: c for k, c in optional.items() if c in t.column_names}
    for r in t.select(["id", col.LOSS_A, col.LOSS_B, col.N_RESPONSE_TOKENS, *present.values()]).to_pylist():
        src = by_id[r["id"]]
        rows.append({"id": r["id"], "label": src["label"], "style": src["source"].split(":")[-1] if src["label"] else "task",
                     "loss_a": r[col.LOSS_A], "loss_b": r[col.LOSS_B], "n_tokens": r[col.N_RESPONSE_TOKENS],
                     "words": len(src["response"].split())} | {k: rounded(r[c]) for k, c in present.items()})
    safety = out_dir / "work" / "safety_scores"
    extra = {"safety_prompt_states": [rounded(x) for x in pq.read_table(safety, columns=[col.PROMPT_STATE])[col.PROMPT_STATE].to_pylist()]
             } if safety.exists() else {}
    # What the finetunes computed in, as run (``auto`` depends on the machine): files made before this
    # was kept do not say, and runs in DeepSpeed's bf16 mode (before 2026-12-04) learnt less.
    stages = json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))["stages"]
    extra["training_precision"] = "bf16 autocast over fp32 weights" if stages["finetune"]["result"]["bf16"] else "fp32"
    dest.write_text(json.dumps({**meta, **extra, "rows": rows}, indent=None) + "\n", encoding="utf-8")


def rounded(x: float | list[float]) -> float | list[float]:
    """Prompt states to 5 significant digits (the JSON stays small; distances do not change)."""
    return [float(f"{v:.5g}") for v in x] if isinstance(x, list) else x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("specs", nargs="+", help="source:unsafe_share:styles, e.g. wordnet:0.25:varied")
    ap.add_argument("--rows", type=int, default=160)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="strong")
    ap.add_argument("--safety", type=int, default=40, help="refusal rows in the safety set")
    ap.add_argument("--work", default="runs/threshold")
    ap.add_argument("--data", type=Path, default=DATA,
                    help="where the run's JSON goes (another folder keeps side experiments out of the threshold benchmark)")
    ap.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                    help="a further config override on top of the recipe (kept in the run's JSON), e.g. evaluation.enabled=false")
    a = ap.parse_args()
    extra = dict(kv.split("=", 1) for kv in a.extra)
    overrides = RECIPES[a.recipe] | extra
    a.data.mkdir(exist_ok=True)
    for spec in a.specs:
        source, share, styles = spec.split(":")
        name = run_name(source, float(share), styles, a.rows, a.seed, a.recipe, a.safety, extra)
        dest = a.data / f"{name}.json"
        if dest.exists():
            print(f"{name}: done before, skipped", flush=True)
            continue
        work = Path(a.work) / name
        paths = build(str(work / "data"), source, float(share), a.rows, styles, a.seed, a.safety)
        t0 = time.time()
        config = [] if a.recipe == "defaults" else ["--config", "jobs/configs/demo.yaml"]
        cmd = [sys.executable, "-m", "pipeline", "run", *config,
               *run_args(paths["corpus"], paths["safety"], str(work / "out"), a.seed, overrides)]
        subprocess.run(cmd, check=True, cwd=HERE.parent)
        meta = {"run": name, "source": source, "unsafe_share": float(share), "styles": styles, "seed": a.seed,
                "model": "smollm2-135m-instruct", "config": " ".join(config[1:]) or "defaults", "recipe": a.recipe,
                "safety_rows": a.safety,
                "overrides": overrides, "wall_s": round(time.time() - t0)}
        keep_scores(work / "out", Path(paths["corpus"]), dest, meta)
        print(f"{name}: {meta['wall_s']} s", flush=True)


if __name__ == "__main__":
    main()
