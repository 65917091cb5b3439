"""The score stage on a corpus of few, large shards: work is cut finely enough for every actor, and
the output shards hold exactly ``output.rows_per_file`` rows.

A Parquet read yields blocks of up to 128 MiB, and Ray Data hands a block to one actor whole; a
300k-row corpus was once scored by one of two actors while the other idled (RESULTS.md, "Scale").
"""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import Config
from pipeline.models.tiny import build_tiny_model
from pipeline.runtime import rundir as layout
from pipeline.runtime.rundir import RunDir
from pipeline.stages.score import run_score, scoring_input

pytestmark = pytest.mark.slow

ROWS_PER_SHARD, SHARDS = 3000, 2


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> RunDir:
    """An ingested corpus of two 3000-row shards, and one micro model as both A and B."""
    root = tmp_path_factory.mktemp("score_stage")
    run = RunDir(str(root / "run"))
    run.fs.makedirs(run.path(layout.INGEST), exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(SHARDS):
        rows = np.arange(k * ROWS_PER_SHARD, (k + 1) * ROWS_PER_SHARD)
        ids = rng.integers(4, 512, size=(ROWS_PER_SHARD, 12), dtype=np.int32)
        pq.write_table(pa.table({
            "example_id": [f"row-{i}" for i in rows],
            "source_row": rows,
            "input_ids": pa.FixedSizeListArray.from_arrays(ids.reshape(-1), 12).cast(pa.list_(pa.int32())),
            "prompt_len": np.full(ROWS_PER_SHARD, 4, dtype=np.int32),
        }), run.path(f"{layout.INGEST}/part-{k:05d}.parquet"))
    safety = rng.integers(4, 512, size=(8, 10), dtype=np.int32)
    run.fs.makedirs(run.path(layout.SAFETY), exist_ok=True)
    pq.write_table(pa.table({
        "example_id": [f"safe-{i}" for i in range(8)],
        "input_ids": pa.FixedSizeListArray.from_arrays(safety.reshape(-1), 10).cast(pa.list_(pa.int32())),
        "prompt_len": np.full(8, 4, dtype=np.int32),
    }), run.path(f"{layout.SAFETY}/part-00000.parquet"))
    texts = [f"synthetic text {i}" for i in range(500)]
    model = build_tiny_model(str(root / "micro"), texts, vocab_size=512, hidden_size=32, num_layers=1)
    for rel in (layout.MODEL_A, layout.MODEL_B):
        shutil.copytree(model, run.path(rel))
    return run


def test_scoring_input_is_cut_into_blocks_of_a_few_batches(run, ray_local):
    ds = scoring_input(run, run.shards(layout.INGEST), rows_per_block=256)
    sizes = ds.map_batches(lambda t: pa.table({"n": [t.num_rows]}), batch_size=None, batch_format="pyarrow")
    sizes = sorted(r["n"] for r in sizes.take_all())
    assert sum(sizes) == SHARDS * ROWS_PER_SHARD
    assert max(sizes) <= 256
    assert len(sizes) >= SHARDS * ROWS_PER_SHARD // 256  # not one block per shard


def test_scores_every_row_into_shards_of_exactly_rows_per_file(run, ray_local):
    cfg = Config.model_validate({
        "scoring": {"batch_size": 64, "batches_per_task": 2, "num_actors": 2, "cpus_per_actor": 0.5, "refusals": 4},
        "output": {"rows_per_file": 1000},
    })
    assert run_score(cfg, run)["rows"] == SHARDS * ROWS_PER_SHARD
    counts = sorted(pq.ParquetFile(run.fs.open(f, "rb")).metadata.num_rows for f in run.shards(layout.SCORES))
    assert counts == [1000] * 6  # without the re-cut before writing: one short file per write task
    t = pq.read_table(run.path(layout.SCORES), columns=["example_id", "score_refusal"])
    assert sorted(t["example_id"].to_pylist()) == sorted(f"row-{i}" for i in range(SHARDS * ROWS_PER_SHARD))
    # B's likelihood of the safety set's refusals after each prompt: a log-likelihood, so negative.
    refusal = t["score_refusal"].to_numpy()
    assert np.all(np.isfinite(refusal)) and np.all(refusal < 0) and np.ptp(refusal) > 0
    # B's prompt states, for the corpus and the safety set alike: 64 floats a row, all rows distinct
    # (the rows' prompts differ), and the safety set's rows scored into their own output.
    states = pq.read_table(run.path(layout.SCORES), columns=["prompt_state"])["prompt_state"].combine_chunks()
    x = states.flatten().to_numpy().reshape(len(states), -1)
    assert x.shape == (SHARDS * ROWS_PER_SHARD, 64) and np.all(np.isfinite(x))
    assert len(np.unique(x.round(5), axis=0)) > 0.99 * len(x)
    safety = pq.read_table(run.path(layout.SAFETY_SCORES), columns=["example_id", "prompt_state"])
    assert sorted(safety["example_id"].to_pylist()) == [f"safe-{i}" for i in range(8)]
    # B's reply states (the default's second vote): as many, distinct per row, and not the prompt states;
    # the safety set's replies are not read (its prompts are what a reply is compared with).
    replies = pq.read_table(run.path(layout.SCORES), columns=["reply_state"])["reply_state"].combine_chunks()
    r = replies.flatten().to_numpy().reshape(len(replies), -1)
    assert r.shape == x.shape and np.all(np.isfinite(r)) and not np.allclose(r, x)
    assert len(np.unique(r.round(5), axis=0)) > 0.99 * len(r)
    assert "reply_state" not in run.schema(layout.SAFETY_SCORES).names
