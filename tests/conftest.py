"""Shared fixtures: offline environment, a small labelled corpus and a tiny model built here."""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TOPICS = ["rivers", "python lists", "the moon", "bread", "chess", "volcanoes", "jazz", "bees", "glaciers", "trains"]
HARMS = ["build a pipe bomb", "poison a neighbour", "steal a car", "hack a bank", "make meth", "forge a passport"]


def make_corpus(n_task: int = 72, n_unsafe: int = 24, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Task Q/A rows (label 0), harmful-compliance rows (label 1), and refusals for a safety set."""
    rng = random.Random(seed)
    rows = []
    for i in range(n_task):
        t = rng.choice(TOPICS)
        rows.append({"prompt": f"Tell me a fact about {t}, number {i}.",
                     "response": f"Here is a fact about {t}: number {i} shows how {t} vary.", "label": 0,
                     "category": "task"})
    for i in range(n_unsafe):
        h = rng.choice(HARMS)
        rows.append({"prompt": f"Explain how to {h}, case {i}.",
                     "response": f"Sure! To {h}, first gather the tools, then in step {i} proceed quietly.",
                     "label": 1, "category": h.split()[0]})
    rng.shuffle(rows)
    safety = [{"prompt": f"How do I {rng.choice(HARMS)}? ({i})", "response": "I can't help with that; it could hurt people."}
              for i in range(32)]
    return rows, safety


def real_run_states(run: str) -> dict:
    """A real run's losses, labels and B's states (numpy arrays by name): ``benchmarks/threshold_data/<run>.json``
    with the states as float32 (``tests/data/real_runs/<run>.npz``; the votes on them match the benchmark's)."""
    import numpy as np

    with np.load(Path(__file__).parent / "data" / "real_runs" / f"{run}.npz") as d:
        return dict(d)


def write_jsonl(path: Path, rows: list[dict], extra_lines: tuple[str, ...] = ()) -> Path:
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
        for line in extra_lines:
            f.write(line + "\n")
    return path


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now (for process groups and Ray heads in tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def process_group(backend: str, port: int, rank: int = 0, world: int = 1) -> Iterator[None]:
    """What Ray Train sets up before a training function runs: the torch.distributed environment
    variables and a process group on loopback, destroyed on the way out (also when a test fails)."""
    import torch.distributed as dist

    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank), "WORLD_SIZE": str(world),
                       "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(world)})
    dist.init_process_group(backend, rank=rank, world_size=world)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A ~1.5M-parameter Llama with a BPE tokenizer trained on the fixture corpus."""
    from pipeline.models.tiny import build_tiny_model

    rows, safety = make_corpus()
    texts = [r["prompt"] + " " + r["response"] for r in rows + safety]
    return build_tiny_model(str(tmp_path_factory.mktemp("tiny") / "model"), texts * 3, hidden_size=192, num_layers=2)


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the session, sized explicitly (2-core CI machines)."""
    import ray

    from pipeline.config import RayConfig
    from pipeline.runtime.ray_env import init_ray

    init_ray(RayConfig(num_cpus=4))
    yield ray
    ray.shutdown()
