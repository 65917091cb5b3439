"""The real-model path on a small slice: SmolLM2-135M-Instruct, stdlib docstrings, HarmBench.

Guards what a tiny random model cannot: the shipped model's conversion and checkpoint round trip,
its chat template and response masking. If any of them breaks, unsafe rows stop being forgotten
more than task rows and the AUROC falls to chance.

The training budget is set so the effect is large, not just present: with 4 rows a step (more
optimizer steps for the same compute) log_ratio's spread is 0.14-0.30 and its AUROC 0.98-1.00
over two data seeds, fp32. With the earlier 8 rows a step and 2 safety epochs the spread was 0.03
and the AUROC 0.90 in fp32 and 0.80 on a CPU that trains in bf16, one row away from failing.
Scoring precision itself moves log_ratio by ~0.003 per row (benchmarks/precision_scoring.py).
"""

from __future__ import annotations

import json

import pytest

from pipeline.cli import main
from pipeline.demo.build import build

pytestmark = pytest.mark.slow


SLICE = {"n_task": 24, "n_unsafe": 12, "n_safety": 16}
OVERRIDES = {
    "data.system_prompt": "You are a helpful assistant.", "data.max_length": 160,
    "noisy_finetune.epochs": 3, "noisy_finetune.learning_rate": 3e-4, "noisy_finetune.train_layers": 8,
    "noisy_finetune.batch_size": 4,
    "safety_finetune.epochs": 4, "safety_finetune.learning_rate": 3e-4, "safety_finetune.train_layers": 8,
    "safety_finetune.batch_size": 4,
    "noisy_finetune.cpus_per_worker": 2, "safety_finetune.cpus_per_worker": 2, "scoring.cpus_per_actor": 2,
}
"""The test's run; ``benchmarks/real_model_slice.py`` runs the same one on other data seeds."""


def test_unsafe_rows_are_forgotten_more_than_task_rows_on_the_real_model(tmp_path, ray_local):
    paths = build(str(tmp_path / "data"), **SLICE, seed=1)
    out = tmp_path / "out"
    sets = [a for k, v in OVERRIDES.items() for a in ("--set", f"{k}={v}")]
    assert main(["run", "--input", paths["corpus"], "--safety", paths["safety"], "--output", str(out), *sets]) == 0
    ev = json.loads((out / "report" / "summary.json").read_text())["evaluation"]
    assert ev["unsafe_rows"] == 12
    assert ev["auroc_forgetting"] >= 0.8, ev
