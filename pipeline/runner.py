"""Runs the stages in order, skipping those already complete, and records each in the manifest.

Each stage is one row of ``STAGES``: the function that does its work, the config sections it
reads, and the run-directory paths it reads and writes. A stage's upstream is every stage that
writes what it reads, and its fingerprint covers its config sections and the run tokens of its
upstream (and, for ingest, the input files' sizes and modification stamps). So changing the
threshold re-runs only filter and report, re-training A re-runs everything after it, and new
data under the same path is ingested again. A stage is complete when the manifest records it with
the same fingerprint and everything it writes is still there; re-running the same command after a
crash resumes at the first stage that is not.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.config import Config
from pipeline.data.sources import input_signature
from pipeline.errors import ConfigError
from pipeline.runtime import rundir as layout
from pipeline.runtime.redact import redact
from pipeline.runtime.rundir import RunDir
from pipeline.stages.filter import run_filter
from pipeline.stages.finetune import run_finetune, run_safety_tune
from pipeline.stages.ingest import check_inputs, run_ingest
from pipeline.stages.report import run_report
from pipeline.stages.score import run_score


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline and its contract with the others."""

    name: str
    run: Callable[[Config, RunDir], dict[str, Any]]
    sections: tuple[str, ...]
    """Config sections in its fingerprint: changing one of them re-runs the stage."""
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    check: Callable[[Config], None] | None = None
    """Cheap checks of its inputs, run before Ray starts, so a bad file fails in a second."""
    signature: Callable[[Config], str] | None = None
    """A digest of the outside data it reads, for its fingerprint."""
    uses_ray: bool = True


def _input_data(cfg: Config) -> str:
    return input_signature(cfg.data.input, cfg.data.format) + input_signature(cfg.data.safety, cfg.data.format)


STAGES = (
    Stage("ingest", run_ingest, ("data", "model", "output"), reads=(),
          writes=(layout.INGEST, layout.SAFETY, layout.REJECTED, layout.SAFETY_REJECTED),
          check=check_inputs, signature=_input_data),
    Stage("finetune", run_finetune, ("model", "noisy_finetune", "seed"), reads=(layout.INGEST,), writes=(layout.MODEL_A,)),
    Stage("safety-tune", run_safety_tune, ("model", "safety_finetune", "seed"), reads=(layout.SAFETY, layout.MODEL_A),
          writes=(layout.MODEL_B,)),
    Stage("score", run_score, ("model", "scoring"), reads=(layout.INGEST, layout.MODEL_A, layout.MODEL_B),
          writes=(layout.SCORES,)),
    Stage("filter", run_filter, ("filter", "output"), reads=(layout.SCORES, layout.REJECTED),
          writes=(layout.KEPT, layout.DROPPED)),
    Stage("report", run_report, ("data",), reads=(layout.KEPT, layout.DROPPED), writes=(layout.REPORT,), uses_ray=False),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


def upstream(stage: Stage, stages: tuple[Stage, ...] = STAGES) -> tuple[str, ...]:
    """The stages that write something ``stage`` reads."""
    return tuple(s.name for s in stages if set(s.writes) & set(stage.reads))


def log(msg: str) -> None:
    print(f"[forgetfilter] {redact(msg)}", flush=True)


def fingerprint(cfg: Config, run: RunDir, stage: Stage, stages: tuple[Stage, ...] = STAGES) -> str:
    tokens = []
    for up in upstream(stage, stages):
        rec = run.stage_record(up)
        tokens.append(rec["token"] if rec else "missing")
    if stage.signature:  # the data itself, not only the paths naming it
        tokens.append(stage.signature(cfg))
    return hashlib.sha256((cfg.fingerprint(*stage.sections) + "|" + "|".join(tokens)).encode()).hexdigest()[:16]


def execute(stage: Stage, cfg: Config, run: RunDir) -> dict[str, Any]:
    """Check a stage's inputs, start Ray if it needs Ray (the first such stage starts it), run it."""
    from pipeline.runtime.ray_env import init_ray

    if stage.check:
        stage.check(cfg)
    if stage.uses_ray:
        init_ray(cfg.ray)
    return stage.run(cfg, run)


def absolute_paths(cfg: Config) -> Config:
    """Make a local model directory absolute: Ray workers do not run in the driver's directory."""
    path = cfg.model.name_or_path
    if "://" not in path and os.path.isdir(path):
        return cfg.model_copy(update={"model": cfg.model.model_copy(update={"name_or_path": os.path.abspath(path)})})
    return cfg


def run_pipeline(cfg: Config, until: str = "report", force: tuple[str, ...] = (),
                 execute: Callable[[Stage, Config, RunDir], dict[str, Any]] = execute,
                 stages: tuple[Stage, ...] = STAGES) -> RunDir:
    """Run every stage up to ``until``; stages in ``force`` run even when complete."""
    run = RunDir(cfg.output.dir)
    cfg = absolute_paths(cfg)
    try:  # before any Ray work: an unwritable output should fail in a second, not after the finetune
        run.fs.makedirs(run.root, exist_ok=True)
        run.write_json("config.resolved.json", cfg.model_dump(mode="json"))
    except OSError as err:
        raise ConfigError(f"output.dir {cfg.output.dir}: cannot write there ({err.strerror or err})") from None
    names = [s.name for s in stages]
    last = names.index(until)
    ran = False
    for i, stage in enumerate(stages[: last + 1], start=1):
        fp = fingerprint(cfg, run, stage, stages)
        head = f"stage {i}/{last + 1} {stage.name}"
        complete = run.stage_done(stage.name, fp) and all(run.exists(w) for w in stage.writes)
        if stage.name not in force and complete:
            log(f"{head}: complete, skipped")
            continue
        log(f"{head}: running")
        ran = True
        run.remove(layout.SUCCESS)
        t0 = time.time()
        result = execute(stage, cfg, run)
        rec = run.record_stage(stage.name, fp, time.time() - t0, result)
        log(f"{head}: done in {rec['seconds']:.1f}s")
    if until == stages[-1].name:
        if ran or not run.exists(layout.SUCCESS):
            run.fs.touch(run.path(layout.SUCCESS))
        else:
            log(f"run in {cfg.output.dir} already complete: nothing to do")
    if "filter" in names[: last + 1]:
        r = run.stage_record("filter")["result"]
        t = r["threshold"]
        log(f"input {r['input']} rows: kept {r['kept']}, dropped {r['dropped']}, rejected {r['rejected']} "
            f"(threshold {t['method']}: {t['rationale']})")
    return run
