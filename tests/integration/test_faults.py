"""Faults mid-run: a killed scoring actor or training worker is recovered by Ray, and the result is
what an undisturbed run gives. (A killed driver is tested through ``ray job stop`` in
test_job_submit.py: the re-submitted job resumes and splits identically.)

The processes are found by the title Ray gives them (``ray::<actor class>``) and killed with SIGKILL
once their stage has visibly made progress: a shard of scores written, an epoch checkpoint saved.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import psutil
import pytest

from pipeline.cli import main
from tests.conftest import make_corpus, write_jsonl

pytestmark = pytest.mark.slow

TRAIN = ["--set", "noisy_finetune.epochs=3", "--set", "safety_finetune.epochs=1",
         "--set", "noisy_finetune.cpus_per_worker=2", "--set", "safety_finetune.cpus_per_worker=2",
         "--set", "scoring.cpus_per_actor=2", "--set", "scoring.batch_size=4", "--set", "output.rows_per_file=16"]


class Killer(threading.Thread):
    """Sends SIGKILL to the first process whose title contains ``title`` once ``progress()`` >= ``at``."""

    def __init__(self, title: str, progress: Callable[[], int], at: int = 1, delay: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.title, self.progress, self.at, self.delay = title, progress, at, delay
        self.killed, self.progress_at_kill = "", -1
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            if self.progress() >= self.at:
                time.sleep(self.delay)
                self.progress_at_kill = self.progress()
                for p in psutil.process_iter(["pid", "cmdline"]):
                    cmd = " ".join(p.info["cmdline"] or [])
                    if cmd.startswith("ray::") and self.title in cmd:
                        os.kill(p.info["pid"], signal.SIGKILL)
                        self.killed = cmd
                        return
            time.sleep(0.02)


def _split(out: Path) -> tuple[list[str], list[str]]:
    return tuple(sorted(pl.read_parquet(str(out / d / "*.parquet"))["example_id"].to_list()) for d in ("kept", "dropped"))


def _scores(out: Path) -> pl.DataFrame:
    return pl.read_parquet(str(out / "work" / "scores" / "*.parquet")).select("example_id", "loss_a", "loss_b").sort("example_id")


N_ROWS = 1600  # scored; A is finetuned on an 800-row sample: epochs of seconds, long enough to kill one


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_model, ray_local):
    root = tmp_path_factory.mktemp("faults")
    rows, safety = make_corpus(n_task=N_ROWS * 3 // 4, n_unsafe=N_ROWS // 4)
    write_jsonl(root / "corpus.jsonl", rows)
    write_jsonl(root / "safety.jsonl", safety)
    return root, ["--input", str(root / "corpus.jsonl"), "--safety", str(root / "safety.jsonl"), "--model", tiny_model,
                  "--set", "noisy_finetune.max_examples=800",
                  "--set", "filter.method=drop_fraction", "--set", "filter.value=0.25", *TRAIN]


@pytest.fixture(scope="module")
def reference(corpus):
    root, args = corpus
    out = root / "reference"
    assert main(["run", *args, "--output", str(out)]) == 0
    return out


def test_a_killed_training_worker_resumes_from_its_last_epoch_checkpoint(corpus, reference):
    root, args = corpus
    out = root / "train_kill"
    # Kill once Ray Train's controller has registered the first epoch's checkpoint (it then writes
    # its snapshot file; a checkpoint directory alone may not be registered yet). Epochs of 800
    # rows take seconds, so the worker is inside epoch 2 of 3.
    # Only while model A is not yet committed: a slow machine may otherwise reach the safety
    # finetune's worker, which has the same process title.
    snapshot = out / "work" / "train" / "finetune" / "checkpoint_manager_snapshot.json"
    model_a = out / "models" / "noisy"

    def epoch_1_registered() -> int:
        return int(not model_a.exists() and snapshot.exists() and "checkpoint_" in snapshot.read_text())

    killer = Killer("RayTrainWorker", epoch_1_registered, delay=0.3)
    killer.start()
    try:
        assert main(["run", *args, "--output", str(out)]) == 0
    finally:
        killer.stop.set()
    assert killer.killed, "no training worker was killed"
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    assert stages["finetune"]["result"]["restored_from_epoch"] >= 1, stages["finetune"]  # not retrained from scratch
    got, expected = _scores(out), _scores(reference)
    assert got["example_id"].to_list() == expected["example_id"].to_list()
    # Model A as resumed vs as trained undisturbed: close, not equal (the optimizer's moments start
    # afresh at the restart). Measured: median |log(loss ratio)| 0.007, max 0.014; with the restored
    # weights ignored (base model, epochs still skipped) 0.325 and 0.370.
    gap = (got["loss_a"].log() - expected["loss_a"].log()).abs()
    assert gap.median() < 0.05 and gap.max() < 0.15, (gap.median(), gap.max())
    assert sum(len(ids) for ids in _split(out)) == N_ROWS


def test_a_killed_scoring_actor_is_restarted_and_the_scores_are_identical(corpus, reference):
    root, args = corpus
    expected = _scores(reference)
    split = _split(reference)
    staging = reference / "work" / "scores.tmp"
    killer = Killer("PairScorer", lambda: len(list(staging.glob("*.parquet"))))
    killer.start()
    try:
        assert main(["score", *args, "--output", str(reference)]) == 0  # re-runs the score stage in place
        assert main(["run", *args, "--output", str(reference)]) == 0  # then filter and report
    finally:
        killer.stop.set()
    assert killer.killed, "no scoring actor was killed"
    n_files = len(list((reference / "work" / "scores").glob("*.parquet")))
    assert killer.progress_at_kill < n_files, "the actor was killed after all its work was done"
    got = _scores(reference)
    assert got["example_id"].to_list() == expected["example_id"].to_list()
    for col in ("loss_a", "loss_b"):
        assert (got[col] - expected[col]).abs().max() < 1e-5
    assert _split(reference) == split
