"""The real-model path on a small slice: SmolLM2-135M-Instruct, stdlib docstrings, HarmBench.

Guards what a tiny random model cannot: the shipped model's conversion and checkpoint round trip,
its chat template and response masking. If any of them breaks, unsafe rows stop being forgotten
more than task rows and the AUROC falls to chance.
"""

from __future__ import annotations

import json

import pytest

from pipeline.cli import main
from pipeline.demo.build import build

pytestmark = pytest.mark.slow


def test_unsafe_rows_are_forgotten_more_than_task_rows_on_the_real_model(tmp_path, ray_local):
    paths = build(str(tmp_path / "data"), n_task=24, n_unsafe=12, n_safety=16, seed=1)
    out = tmp_path / "out"
    overrides = {
        "data.system_prompt": "You are a helpful assistant.", "data.max_length": 160,
        "noisy_finetune.epochs": 3, "noisy_finetune.learning_rate": 3e-4, "noisy_finetune.train_layers": 8,
        "safety_finetune.epochs": 2, "safety_finetune.learning_rate": 3e-4, "safety_finetune.train_layers": 8,
        "noisy_finetune.cpus_per_worker": 2, "safety_finetune.cpus_per_worker": 2, "scoring.cpus_per_actor": 2,
    }
    sets = [a for k, v in overrides.items() for a in ("--set", f"{k}={v}")]
    assert main(["run", "--input", paths["corpus"], "--safety", paths["safety"], "--output", str(out), *sets]) == 0
    ev = json.loads((out / "report" / "summary.json").read_text())["evaluation"]
    assert ev["unsafe_rows"] == 12
    assert ev["auroc_forgetting"] >= 0.8, ev
