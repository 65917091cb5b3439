"""Stage 5, filter: pick the cut on the forgetting score and split the scored rows.

The cut is chosen from the score column alone (read from Parquet without the text), then one
streaming pass per side writes ``kept/`` (score <= cut) and ``dropped/`` (the rest, including any
row whose score is not a number: an unscorable row is not trusted). The invariant
``kept + dropped + rejected = input`` is checked and the stage fails loudly if it breaks.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.config import Config, FilterConfig
from pipeline.data.shards import write_empty_shard
from pipeline.errors import StageError
from pipeline.filtering import thresholds
from pipeline.filtering.thresholds import Threshold
from pipeline.runtime import rundir as layout
from pipeline.runtime.rundir import RunDir
from pipeline.stages.ingest import INTERNAL_COLUMNS, parquet_files
from pipeline.stages.score import count_rows


def read_columns(run: RunDir, rel: str, columns: list[str]) -> pa.Table:
    """A few columns of every shard in ``rel`` (Parquet column projection: the text is not read)."""
    tables = []
    for f in parquet_files(run, rel):
        with run.fs.open(f, "rb") as fh:
            pf = pq.ParquetFile(fh)
            present = [c for c in columns if c in pf.schema_arrow.names]
            tables.append(pf.read(columns=present))
    return pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({})


def choose_threshold(scores: np.ndarray, f: FilterConfig) -> Threshold:
    """The cut the config asks for."""
    if f.method == "fixed":
        return thresholds.fixed(float(f.value))
    if f.method == "drop_fraction":
        return thresholds.drop_fraction(scores, float(f.value))
    return thresholds.AUTO_METHODS[f.auto_method](scores)


def _side(threshold: float, keep: bool):  # noqa: ANN202 - a Ray Data UDF
    def split(batch: pa.Table) -> pa.Table:
        score = batch.column("forgetting")
        kept = pc.fill_null(pc.less_equal(score, pa.scalar(threshold, pa.float64())), False)
        mask = kept if keep else pc.invert(kept)
        out = batch.filter(mask)
        return out.drop_columns([c for c in INTERNAL_COLUMNS if c in out.column_names])

    return split


def run_filter(cfg: Config, run: RunDir, input_rows: int) -> dict[str, Any]:
    import ray

    scores = read_columns(run, layout.SCORES, ["forgetting"]).column("forgetting").to_numpy(zero_copy_only=False)
    t = choose_threshold(scores, cfg.filter)
    value = t.value if math.isfinite(t.value) else float(np.finfo(np.float64).max)
    files = parquet_files(run, layout.SCORES)
    with run.fs.open(files[0], "rb") as fh:
        schema = pq.read_schema(fh)
    schema = pa.schema([f for f in schema if f.name not in INTERNAL_COLUMNS])
    counts: dict[str, int] = {}
    for rel, keep in ((layout.KEPT, True), (layout.DROPPED, False)):
        tmp = run.staging(rel)
        ds = ray.data.read_parquet(files, filesystem=run.arrow_fs())
        ds.map_batches(_side(value, keep), batch_format="pyarrow", batch_size=None).write_parquet(
            run.path(tmp), filesystem=run.arrow_fs(), **cfg.output.shard_options
        )
        write_empty_shard(run.fs, run.path(tmp), schema, cfg.output.parquet_compression)
        counts[rel] = count_rows(run, tmp)
        run.commit(tmp, rel)
    rejected = count_rows(run, layout.REJECTED)
    total = counts[layout.KEPT] + counts[layout.DROPPED] + rejected
    if total != input_rows:
        raise StageError(f"filter: kept {counts[layout.KEPT]} + dropped {counts[layout.DROPPED]} + rejected "
                         f"{rejected} = {total}, but the input had {input_rows} rows")
    return {"threshold": t.to_dict(), "kept": counts[layout.KEPT], "dropped": counts[layout.DROPPED],
            "rejected": rejected, "input": input_rows}
