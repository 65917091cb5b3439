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
from pipeline.stages.evaluate import check_harmful_prompts, run_evaluate, run_filtered_finetune, run_filtered_safety_tune, run_replay_finetune
from pipeline.stages.filter import run_filter
from pipeline.stages.finetune import held_out_fraction, run_finetune, run_safety_tune
from pipeline.stages.ingest import check_inputs, run_ingest
from pipeline.stages.report import run_report
from pipeline.stages.score import keeps_reply_states, run_score


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
    """Cheap checks of the outside files it reads, run for every stage of the run before the first
    starts, so a bad file fails in a second, not after hours of finetuning."""
    signature: Callable[[Config], str] | None = None
    """A digest of the outside data it reads, for its fingerprint."""
    uses_ray: bool = True
    enabled: Callable[[Config], bool] | None = None
    """Whether an optional stage is on for this config (the evaluation's stages); None: always on."""


def _evaluating(cfg: Config) -> bool:
    return cfg.evaluation.enabled


def _replaying(cfg: Config) -> bool:
    return cfg.evaluation.enabled and cfg.evaluation.replay


def _holdout(cfg: Config) -> str:
    """The held-out slice a finetune leaves out; empty while evaluation is off (old runs keep their fingerprints)."""
    f = held_out_fraction(cfg)
    return f"holdout={f}:seed={cfg.seed}" if f else ""


def _reply_states(cfg: Config) -> str:
    """Whether the scores hold B's reply states (``filter.corroborate`` asks for them); empty when not, so
    runs scored before they existed keep their fingerprints and a config that asks for them re-scores."""
    return "reply_states" if keeps_reply_states(cfg) else ""


def _harmful_prompts(cfg: Config) -> str:
    return input_signature(cfg.evaluation.harmful_prompts, cfg.data.format)


def _input_data(cfg: Config) -> str:
    return input_signature(cfg.data.input, cfg.data.format) + input_signature(cfg.data.safety, cfg.data.format)


STAGES = (
    Stage("ingest", run_ingest, ("data", "model", "output"), reads=(),
          writes=(layout.INGEST, layout.SAFETY, layout.REJECTED, layout.SAFETY_REJECTED),
          check=check_inputs, signature=_input_data),
    Stage("finetune", run_finetune, ("model", "noisy_finetune", "seed"), reads=(layout.INGEST,), writes=(layout.MODEL_A,),
          signature=_holdout),
    Stage("safety-tune", run_safety_tune, ("model", "safety_finetune", "seed"), reads=(layout.SAFETY, layout.MODEL_A),
          writes=(layout.MODEL_B,)),
    Stage("score", run_score, ("model", "scoring"), reads=(layout.INGEST, layout.MODEL_A, layout.MODEL_B),
          writes=(layout.SCORES,), signature=_reply_states),
    Stage("filter", run_filter, ("filter", "output"), reads=(layout.SCORES, layout.REJECTED),
          writes=(layout.KEPT, layout.DROPPED)),
    Stage("filtered-finetune", run_filtered_finetune, ("model", "noisy_finetune", "seed"), reads=(layout.SCORES, layout.KEPT),
          writes=(layout.MODEL_F,), signature=_holdout, enabled=_evaluating),
    Stage("filtered-safety-tune", run_filtered_safety_tune, ("model", "safety_finetune", "seed"),
          reads=(layout.SAFETY, layout.MODEL_F), writes=(layout.MODEL_FS,), enabled=_evaluating),
    Stage("replay-finetune", run_replay_finetune, ("model", "noisy_finetune", "seed"), reads=(layout.INGEST, layout.SAFETY),
          writes=(layout.MODEL_REPLAY,), signature=_holdout, enabled=_replaying),
    Stage("evaluate", run_evaluate, ("data", "model", "scoring", "evaluation", "seed"),
          reads=(layout.MODEL_A, layout.MODEL_B, layout.MODEL_F, layout.MODEL_FS, layout.MODEL_REPLAY, layout.SCORES, layout.KEPT),
          writes=(layout.EVALUATION,), check=check_harmful_prompts, signature=_harmful_prompts, enabled=_evaluating),
    Stage("report", run_report, ("data", "evaluation"), reads=(layout.KEPT, layout.DROPPED, layout.EVALUATION), writes=(layout.REPORT,),
          uses_ray=False),
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
    signature = stage.signature(cfg) if stage.signature else ""
    if signature:  # the data itself, not only the paths naming it
        tokens.append(signature)
    return hashlib.sha256((cfg.fingerprint(*stage.sections) + "|" + "|".join(tokens)).encode()).hexdigest()[:16]


def execute(stage: Stage, cfg: Config, run: RunDir) -> dict[str, Any]:
    """Start Ray if the stage needs Ray (the first such stage starts it), run it."""
    from pipeline.runtime.ray_env import init_ray

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
    for stage in stages[: last + 1]:
        if stage.check and (stage.enabled is None or stage.enabled(cfg)):
            stage.check(cfg)
    ran = False
    for i, stage in enumerate(stages[: last + 1], start=1):
        head = f"stage {i}/{last + 1} {stage.name}"
        if stage.enabled and not stage.enabled(cfg):  # before its fingerprint: that may read files an off stage never needs
            log(f"{head}: off in this config")
            continue
        fp = fingerprint(cfg, run, stage, stages)
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
