"""Runs the stages in order, skipping those already complete, and records each in the manifest.

A stage's fingerprint covers the config sections it reads and the run tokens of the stages it
consumes (and, for ingest, the input files' sizes and modification stamps), so changing the
threshold re-runs only filter and report, re-training A re-runs everything after it, and new
data under the same path is ingested again. Re-running the same command after a crash resumes at the first stage that
did not finish.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

from pipeline.config import Config
from pipeline.errors import ConfigError, StageError
from pipeline.runtime.redact import redact
from pipeline.runtime import rundir as layout
from pipeline.runtime.rundir import RunDir


@dataclass(frozen=True)
class Stage:
    name: str
    sections: tuple[str, ...]
    upstream: tuple[str, ...]


STAGES = (
    Stage("ingest", ("data", "model", "output"), ()),
    Stage("finetune", ("model", "noisy_finetune", "seed"), ("ingest",)),
    Stage("safety-tune", ("model", "safety_finetune", "seed"), ("ingest", "finetune")),
    Stage("score", ("model", "scoring"), ("ingest", "safety-tune")),
    Stage("filter", ("filter", "output"), ("score",)),
    Stage("report", ("data",), ("filter",)),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


def log(msg: str) -> None:
    print(f"[forgetfilter] {redact(msg)}", flush=True)


def fingerprint(cfg: Config, run: RunDir, stage: Stage) -> str:
    tokens = []
    for up in stage.upstream:
        rec = run.stage_record(up)
        tokens.append(rec["token"] if rec else "missing")
    if stage.name == "ingest":  # the data itself, not only the paths naming it
        from pipeline.data.sources import input_signature

        tokens += [input_signature(cfg.data.input, cfg.data.format), input_signature(cfg.data.safety, cfg.data.format)]
    return hashlib.sha256((cfg.fingerprint(*stage.sections) + "|" + "|".join(tokens)).encode()).hexdigest()[:16]


def _execute(name: str, cfg: Config, run: RunDir) -> dict[str, Any]:
    """Run one stage's work (Ray is started lazily by the first stage that needs it)."""
    from pipeline.runtime.ray_env import init_ray

    if name != "report":
        init_ray(cfg.ray)
    if name == "ingest":
        from pipeline.stages.ingest import run_ingest

        return run_ingest(cfg, run)
    if name in ("finetune", "safety-tune"):
        from pipeline.stages.finetune import finetune
        from pipeline.stages.ingest import parquet_files

        if name == "finetune":
            return finetune(cfg, run, cfg.noisy_finetune, cfg.model.name_or_path,
                            parquet_files(run, layout.INGEST), layout.MODEL_A, "noisy-finetune")
        return finetune(cfg, run, cfg.safety_finetune, run.uri(layout.MODEL_A),
                        parquet_files(run, layout.SAFETY), layout.MODEL_B, "safety-finetune")
    if name == "score":
        from pipeline.stages.score import run_score

        return run_score(cfg, run)
    if name == "filter":
        from pipeline.stages.filter import run_filter

        return run_filter(cfg, run, run.stage_record("ingest")["result"]["corpus"]["rows"])
    from pipeline.stages.report import run_report

    done = run.manifest()["stages"]
    seconds = {k: done[k]["seconds"] for k in STAGE_NAMES if k in done}
    return run_report(cfg, run, run.stage_record("filter")["result"], seconds)


def absolute_paths(cfg: Config) -> Config:
    """Make a local model directory absolute: Ray workers do not run in the driver's directory."""
    path = cfg.model.name_or_path
    if "://" not in path and os.path.isdir(path):
        return cfg.model_copy(update={"model": cfg.model.model_copy(update={"name_or_path": os.path.abspath(path)})})
    return cfg


def run_pipeline(cfg: Config, until: str = "report", force: tuple[str, ...] = (),
                 execute: Callable[[str, Config, RunDir], dict[str, Any]] = _execute) -> RunDir:
    """Run every stage up to ``until``; stages in ``force`` run even when complete."""
    run = RunDir(cfg.output.dir)
    cfg = absolute_paths(cfg)
    try:  # before any Ray work: an unwritable output should fail in a second, not after the finetune
        run.fs.makedirs(run.root, exist_ok=True)
        run.write_json("config.resolved.json", cfg.model_dump(mode="json"))
    except OSError as err:
        raise ConfigError(f"output.dir {cfg.output.dir}: cannot write there ({err.strerror or err})") from None
    last = STAGE_NAMES.index(until)
    ran = False
    for i, stage in enumerate(STAGES[: last + 1], start=1):
        fp = fingerprint(cfg, run, stage)
        head = f"stage {i}/{last + 1} {stage.name}"
        if stage.name not in force and run.stage_done(stage.name, fp):
            log(f"{head}: complete, skipped")
            continue
        for up in stage.upstream:
            if run.stage_record(up) is None:
                raise StageError(f"{stage.name}: needs stage '{up}' first")
        log(f"{head}: running")
        ran = True
        run.remove(layout.SUCCESS)
        t0 = time.time()
        result = execute(stage.name, cfg, run)
        rec = run.record_stage(stage.name, fp, time.time() - t0, result)
        log(f"{head}: done in {rec['seconds']:.1f}s")
    if until == "report":
        if ran or not run.exists(layout.SUCCESS):
            run.fs.touch(run.path(layout.SUCCESS))
        else:
            log(f"run in {cfg.output.dir} already complete: nothing to do")
    if until in ("filter", "report"):
        r = run.stage_record("filter")["result"]
        t = r["threshold"]
        log(f"input {r['input']} rows: kept {r['kept']}, dropped {r['dropped']}, rejected {r['rejected']} "
            f"(threshold {t['method']}: {t['rationale']})")
    return run
