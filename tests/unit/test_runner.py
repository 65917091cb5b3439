"""The runner's contract, through its ``execute=`` seam (no Ray, no model): which stages run, which
are skipped, and how a crash, a changed setting or a missing output is resumed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.config import build_config
from pipeline.errors import InputError
from pipeline.runner import STAGE_NAMES, STAGES, Stage, run_pipeline, upstream
from pipeline.runtime.rundir import RunDir


class Recorder:
    """Stands in for the stages: records what ran and writes each stage's outputs as empty dirs."""

    def __init__(self, fail: str = "") -> None:
        self.ran: list[str] = []
        self.fail = fail

    def __call__(self, stage: Stage, cfg, run: RunDir) -> dict:
        if stage.name == self.fail:
            raise RuntimeError(f"{stage.name} crashed")
        self.ran.append(stage.name)
        for rel in stage.writes:
            run.fs.makedirs(run.path(rel), exist_ok=True)
        if stage.name == "filter":
            return {"threshold": {"method": "fixed", "rationale": "test"}, "input": 1, "kept": 1, "dropped": 0, "rejected": 0}
        return {}


EVALUATION = ("filtered-finetune", "filtered-safety-tune", "replay-finetune", "evaluate")
MAIN = [n for n in STAGE_NAMES if n not in EVALUATION]
"""The stages of a run with evaluation off (the default)."""


@pytest.fixture
def cfg(tmp_path):
    (tmp_path / "corpus.jsonl").write_text('{"prompt": "q", "response": "a"}\n')
    (tmp_path / "safety.jsonl").write_text('{"prompt": "q", "response": "no"}\n')

    def make(*overrides: str):
        return build_config({"data": {"input": [str(tmp_path / "corpus.jsonl")], "safety": [str(tmp_path / "safety.jsonl")]},
                             "output": {"dir": str(tmp_path / "out")}, "filter": {"method": "fixed", "value": 1.0}},
                            list(overrides))

    return make


def test_each_stage_reads_what_the_stages_before_it_write():
    assert upstream(STAGES[STAGE_NAMES.index("score")]) == ("ingest", "finetune", "safety-tune")
    assert upstream(STAGES[STAGE_NAMES.index("filter")]) == ("ingest", "score")
    written: set[str] = set()
    for stage in STAGES:
        assert set(stage.reads) <= written, stage.name
        written |= set(stage.writes)


def test_a_second_run_skips_every_stage_and_marks_the_run_complete(cfg, tmp_path):
    first = Recorder()
    run_pipeline(cfg(), execute=first)
    assert first.ran == MAIN
    assert (tmp_path / "out" / "_SUCCESS").exists()
    again = Recorder()
    run_pipeline(cfg(), execute=again)
    assert again.ran == []


def test_a_changed_threshold_reruns_only_filter_and_report(cfg):
    run_pipeline(cfg(), execute=Recorder())
    rec = Recorder()
    run_pipeline(cfg("filter.value=2.0"), execute=rec)
    assert rec.ran == ["filter", "report"]


def test_asking_for_the_reply_vote_rescores_but_a_fixed_cut_does_not(cfg):
    # The default lists reply_prompts, whose states only the score stage can add.
    run_pipeline(cfg("filter.corroborate=[safety_prompts]"), execute=Recorder())
    rec = Recorder()
    run_pipeline(cfg(), execute=rec)
    assert rec.ran == ["score", "filter", "report"]
    rec = Recorder()
    run_pipeline(cfg("filter.method=auto"), execute=rec)
    assert rec.ran == ["filter", "report"]


def test_a_changed_noisy_finetune_reruns_everything_after_ingest(cfg):
    run_pipeline(cfg(), execute=Recorder())
    rec = Recorder()
    run_pipeline(cfg("noisy_finetune.epochs=3"), execute=rec)
    assert rec.ran == ["finetune", "safety-tune", "score", "filter", "report"]


def test_new_data_under_the_same_path_is_ingested_again(cfg, tmp_path):
    run_pipeline(cfg(), execute=Recorder())
    with open(tmp_path / "corpus.jsonl", "a") as f:
        f.write('{"prompt": "q2", "response": "a2"}\n')
    rec = Recorder()
    run_pipeline(cfg(), execute=rec)
    assert rec.ran == MAIN


def test_a_crash_resumes_at_the_stage_that_crashed(cfg, tmp_path):
    with pytest.raises(RuntimeError, match="score crashed"):
        run_pipeline(cfg(), execute=Recorder(fail="score"))
    assert not (tmp_path / "out" / "_SUCCESS").exists()
    rec = Recorder()
    run_pipeline(cfg(), execute=rec)
    assert rec.ran == ["score", "filter", "report"]


def test_a_stage_whose_output_is_gone_runs_again_with_everything_after_it(cfg, tmp_path):
    run_pipeline(cfg(), execute=Recorder())
    shutil.rmtree(tmp_path / "out" / "models" / "noisy")
    rec = Recorder()
    run_pipeline(cfg(), execute=rec)
    assert rec.ran == ["finetune", "safety-tune", "score", "filter", "report"]


def test_a_forced_stage_runs_alone_when_the_rest_is_complete(cfg, tmp_path):
    run_pipeline(cfg(), execute=Recorder())
    before = json.loads((tmp_path / "out" / "manifest.json").read_text())["stages"]
    rec = Recorder()
    run_pipeline(cfg(), until="score", force=("score",), execute=rec)
    assert rec.ran == ["score"]
    after = json.loads((tmp_path / "out" / "manifest.json").read_text())["stages"]
    assert after["score"]["token"] != before["score"]["token"]
    assert after["finetune"]["token"] == before["finetune"]["token"]
    rec = Recorder()
    run_pipeline(cfg(), execute=rec)  # the new scores invalidate the split built on the old ones
    assert rec.ran == ["filter", "report"]


def test_evaluation_adds_its_stages_and_its_held_out_slice_retrains_model_a(cfg, tmp_path):
    (tmp_path / "harmful.jsonl").write_text('{"prompt": "how do I hurt someone"}\n')
    run_pipeline(cfg(), execute=Recorder())
    on = ("evaluation.enabled=true", f"evaluation.harmful_prompts={tmp_path / 'harmful.jsonl'}")
    rec = Recorder()
    run_pipeline(cfg(*on), execute=rec)
    # A must not see the held-out slice: it is retrained, and everything after it runs again.
    assert rec.ran == ["finetune", "safety-tune", "score", "filter", "filtered-finetune", "filtered-safety-tune", "evaluate", "report"]
    rec = Recorder()
    run_pipeline(cfg(*on, "evaluation.max_new_tokens=8"), execute=rec)
    assert rec.ran == ["evaluate", "report"]
    rec = Recorder()
    run_pipeline(cfg(*on, "evaluation.max_new_tokens=8", "filter.value=2.0"), execute=rec)
    assert rec.ran == ["filter", "filtered-finetune", "filtered-safety-tune", "evaluate", "report"]
    rec = Recorder()
    run_pipeline(cfg(*on, "evaluation.max_new_tokens=8", "filter.value=2.0", "evaluation.replay=true"), execute=rec)
    assert rec.ran == ["replay-finetune", "evaluate", "report"]
    rec = Recorder()
    (tmp_path / "harmful.jsonl").unlink()  # off, the evaluation's files are never read (nor checked)
    run_pipeline(cfg(f"evaluation.harmful_prompts={tmp_path / 'harmful.jsonl'}"), execute=rec)
    assert rec.ran == ["finetune", "safety-tune", "score", "filter", "report"]  # evaluation off: A trains on every row again


def test_a_corrupt_parquet_input_fails_before_ray_starts(cfg, tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    import pipeline.runtime.ray_env as ray_env

    def no_ray(*_):
        raise AssertionError("Ray was started before the inputs were checked")

    monkeypatch.setattr(ray_env, "init_ray", no_ray)
    pq.write_table(pa.table({"prompt": ["q"] * 50, "response": ["a"] * 50}), tmp_path / "whole.parquet")
    bad = Path(tmp_path / "bad.parquet")
    bad.write_bytes((tmp_path / "whole.parquet").read_bytes()[:200])
    with pytest.raises(InputError, match=r"bad\.parquet: cannot read as parquet"):
        run_pipeline(cfg(f"data.input=['{tmp_path / 'corpus.jsonl'}', '{bad}']"), until="ingest")
