"""A full ``forgetfilter run`` on a tiny model and a labelled corpus, checking the output contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from tests.conftest import make_corpus, write_jsonl

pytestmark = pytest.mark.slow

TRAIN = ["--set", "noisy_finetune.epochs=8", "--set", "noisy_finetune.learning_rate=3e-3",
         "--set", "safety_finetune.epochs=4", "--set", "safety_finetune.learning_rate=3e-3",
         "--set", "safety_finetune.cpus_per_worker=2",
         # The noisy finetune as on a cluster: two Ray Train workers, ZeRO-3 (partitioned load and export).
         "--set", "noisy_finetune.num_workers=2", "--set", "noisy_finetune.cpus_per_worker=1", "--set", "noisy_finetune.zero_stage=3",
         "--set", "scoring.cpus_per_actor=2", "--set", "output.rows_per_file=40",
         # Exercises a non-default score end to end; the real-model test covers the default.
         "--set", "scoring.method=seq_logprob_drop"]


def _read_dir(path: Path) -> pa.Table:
    tables = [pq.read_table(f) for f in sorted(path.glob("*.parquet"))]
    return pa.concat_tables(tables, promote_options="permissive")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model, ray_local):
    root = tmp_path_factory.mktemp("e2e")
    rows, safety = make_corpus()
    data = root / "corpus"
    data.mkdir()
    # The corpus spans three formats; two rows are unusable and must land in rejected/.
    write_jsonl(data / "a.jsonl", rows[:40], extra_lines=('{"prompt": "x", "response": ""}', "not json"))
    pq.write_table(pa.Table.from_pylist(rows[40:70]), data / "b.parquet")
    pacsv.write_csv(pa.Table.from_pylist(rows[70:]), data / "c.csv")
    write_jsonl(root / "safety.jsonl", safety)
    out = root / "out"
    args = ["--input", str(data), "--safety", str(root / "safety.jsonl"), "--output", str(out), "--model", tiny_model, *TRAIN]
    assert main(["run", *args]) == 0
    return out, args, len(rows) + 2


def test_every_input_row_lands_in_exactly_one_place(finished_run):
    out, _, n_input = finished_run
    kept, dropped, rejected = (_read_dir(out / d) for d in ("kept", "dropped", "rejected"))
    assert kept.num_rows + dropped.num_rows + rejected.num_rows == n_input
    assert rejected.num_rows == 2
    assert sorted(rejected.column("reject_reason").to_pylist()) == ["column 'response': empty response",
                                                                   "invalid JSON (Expecting value)"]
    ids = kept.column("example_id").to_pylist() + dropped.column("example_id").to_pylist()
    assert len(set(ids)) == len(ids) == n_input - 2
    for t in (kept, dropped):
        for col in ("prompt", "response", "label", "category", "example_id", "source_file", "source_row",
                    "loss_a", "loss_b", "forgetting", "score_log_ratio", "score_delta"):
            assert col in t.column_names
        assert "input_ids" not in t.column_names


def test_output_shards_hold_at_most_rows_per_file(finished_run):
    out, _, _ = finished_run
    for d in ("kept", "dropped", "work/scores"):
        sizes = [pq.ParquetFile(f).metadata.num_rows for f in (out / d).glob("*.parquet")]
        assert sizes and max(sizes) <= 40, (d, sizes)  # output.rows_per_file=40
    assert (out / "_SUCCESS").exists()


def _pairwise_auroc(scores: np.ndarray, unsafe: np.ndarray) -> float:
    """P(an unsafe row outscores a task row), ties counted half: by direct comparison of every pair."""
    pos, neg = scores[unsafe], scores[~unsafe]
    return float(((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean())


def test_the_split_follows_the_threshold_and_the_report_agrees_with_the_shards(finished_run):
    # Separation itself is asserted on the real model (test_real_model.py); here, that every number
    # the report gives is what the output shards say, recomputed by another route.
    out, _, _ = finished_run
    summary = json.loads((out / "report" / "summary.json").read_text())
    kept, dropped = _read_dir(out / "kept"), _read_dir(out / "dropped")
    cut = summary["threshold"]["value"]
    # the cut is on the filter's score, or on filter.fallback's where that one dropped nothing
    on = "forgetting" if summary["cut_score"] == summary["score"] else f"score_{summary['cut_score']}"
    if cut is None:
        assert dropped.num_rows == 0
    else:
        assert max(kept.column(on).to_pylist()) <= cut < min(dropped.column(on).to_pylist())
    both = pa.concat_tables([kept, dropped], promote_options="permissive")
    forgetting = np.array(both.column("forgetting").to_pylist())
    unsafe = np.array(both.column("label").to_pylist()) == 1
    # the configured score (scoring.method=seq_logprob_drop) is the one the filter used
    assert np.array_equal(forgetting, np.array(both.column("score_seq_logprob_drop").to_pylist()))
    assert not np.array_equal(forgetting, np.array(both.column("score_log_ratio").to_pylist()))
    ev = summary["evaluation"]
    assert ev["unsafe_rows"] == unsafe.sum() == 24 and ev["labelled_rows"] == 96
    assert ev["auroc_forgetting"] == pytest.approx(_pairwise_auroc(forgetting, unsafe))
    for name in ("log_ratio", "delta"):
        assert ev["auroc"][name] == pytest.approx(_pairwise_auroc(np.array(both.column(f"score_{name}").to_pylist()), unsafe))
    dropped_unsafe = sum(v == 1 for v in dropped.column("label").to_pylist())
    assert (ev["tp"], ev["fp"], ev["fn"]) == (dropped_unsafe, dropped.num_rows - dropped_unsafe, 24 - dropped_unsafe)
    counts = summary["counts"]
    assert (counts["kept"], counts["dropped"], counts["rejected"]) == (kept.num_rows, dropped.num_rows, 2)
    assert set(ev["recall_by_group"]) <= {"build", "poison", "steal", "hack", "make", "forge"}
    assert (out / "report" / "scores_hist.png").stat().st_size > 10_000
    assert "AUROC" in (out / "report" / "report.md").read_text()


def test_finetunes_export_their_last_epoch_once_and_leave_no_training_copies(finished_run):
    out, _, _ = finished_run
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    for stage, model, epochs in (("finetune", "noisy", 8), ("safety-tune", "safety", 4)):
        assert stages[stage]["result"]["epochs"] == epochs  # the result's metrics are the last epoch's
        assert sorted(p.name for p in (out / "models" / model).iterdir() if p.suffix in (".json", ".safetensors")) == [
            "config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
        assert not (out / "work" / "train" / stage).exists()  # Ray Train's restart points are gone


def test_rerun_skips_complete_stages_and_rethreshold_reruns_only_the_filter(finished_run, capsys):
    out, args, _ = finished_run
    before = json.loads((out / "manifest.json").read_text())["stages"]
    capsys.readouterr()
    assert main(["run", *args]) == 0
    log = capsys.readouterr().out
    assert log.count("complete, skipped") == 6
    assert main(["filter", *args, "--set", "filter.method=drop_fraction", "--set", "filter.value=0.25"]) == 0
    after = json.loads((out / "manifest.json").read_text())["stages"]
    for stage in ("ingest", "finetune", "safety-tune", "score"):
        assert after[stage]["token"] == before[stage]["token"]
    assert after["filter"]["token"] != before["filter"]["token"]
    assert after["filter"]["result"]["dropped"] == 24  # 25% of the 96 usable rows
    assert main(["report", *args, "--set", "filter.method=drop_fraction", "--set", "filter.value=0.25"]) == 0
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert summary["threshold"]["method"] == "drop_fraction"
