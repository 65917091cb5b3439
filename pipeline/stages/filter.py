"""Stage 5, filter: pick the cut on the forgetting score and split the scored rows.

The cut is chosen from the score columns alone (read from Parquet without the text: the filter's
score, and for an automatic cut the scores it must be corroborated on), then one
streaming pass per side writes ``kept/`` (score <= cut) and ``dropped/`` (the rest, including any
row whose score is not a number: an unscorable row is not trusted). The invariant
``kept + dropped + rejected = input`` is checked and the stage fails loudly if it breaks.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from pipeline import columns as col
from pipeline.config import Config, FilterConfig
from pipeline.data.shards import write_empty_shard
from pipeline.errors import StageError
from pipeline.filtering import thresholds
from pipeline.filtering.split import kept_mask
from pipeline.filtering.thresholds import Threshold
from pipeline.runtime import rundir as layout
from pipeline.runtime.rundir import RunDir
from pipeline.scoring.scores import REFUSAL


def corroborating_scores(cfg: Config) -> list[str]:
    """The scores an automatic cut must be corroborated on: none for a user-chosen cut, and none
    when the filter's own score is among them (it corroborates itself). ``refusal`` only when the
    score stage wrote it (``scoring.refusals`` > 0)."""
    f = cfg.filter
    if f.method != "auto" or cfg.scoring.method in f.corroborate:
        return []
    return [name for name in f.corroborate if name != REFUSAL or cfg.scoring.refusals]


def choose_threshold(scores: np.ndarray, f: FilterConfig, others: dict[str, np.ndarray] | None = None) -> Threshold:
    """The cut the config asks for; an automatic one is checked against the ``others`` scores."""
    if f.method == "fixed":
        return thresholds.fixed(float(f.value))
    if f.method == "drop_fraction":
        return thresholds.drop_fraction(scores, float(f.value))
    rule = thresholds.AUTO_METHODS[f.auto_method]
    return thresholds.corroborate(rule(scores), scores, others or {}, rule)


def _side(t: Threshold, keep: bool):  # noqa: ANN202 - a Ray Data UDF
    def split(batch: pa.Table) -> pa.Table:
        kept = kept_mask(batch, t)
        out = batch.filter(kept if keep else pc.invert(kept))
        return out.drop_columns([c for c in col.MODEL_INPUTS if c in out.column_names])

    return split


def run_filter(cfg: Config, run: RunDir) -> dict[str, Any]:
    """Stage ``filter``: choose the cut, write kept/ and dropped/, check that no row was lost."""
    import ray

    input_rows = run.stage_record("ingest")["result"]["corpus"]["rows"]
    others = corroborating_scores(cfg)
    table = run.read_columns(layout.SCORES, [col.FORGETTING, *(col.score_column(name) for name in others)])
    numbers = {c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names}
    t = choose_threshold(numbers[col.FORGETTING], cfg.filter, {name: numbers[col.score_column(name)] for name in others})
    files = run.shards(layout.SCORES)
    if t.ties_to_drop:
        # Only the ids of the rows tied at the cut are read (a pushed-down filter), never all ids.
        tied = ds.dataset(files, filesystem=run.arrow_fs(), format="parquet").to_table(
            columns=[col.EXAMPLE_ID], filter=pc.field(col.FORGETTING) == t.value)
        t = replace(t, tie_id=thresholds.break_ties(tied.column(col.EXAMPLE_ID).to_pylist(), t.ties_to_drop))
    schema = pa.schema([f for f in run.schema(layout.SCORES) if f.name not in col.MODEL_INPUTS])
    counts: dict[str, int] = {}
    for rel, keep in ((layout.KEPT, True), (layout.DROPPED, False)):
        tmp = run.staging(rel)
        data = ray.data.read_parquet(files, filesystem=run.arrow_fs())
        data.map_batches(_side(t, keep), batch_format="pyarrow", batch_size=None).write_parquet(
            run.path(tmp), filesystem=run.arrow_fs(), **cfg.output.shard_options
        )
        write_empty_shard(run.fs, run.path(tmp), schema, cfg.output.parquet_compression)
        counts[rel] = run.count_rows(tmp)
        run.commit(tmp, rel)
    rejected = run.count_rows(layout.REJECTED)
    total = counts[layout.KEPT] + counts[layout.DROPPED] + rejected
    if total != input_rows:
        raise StageError(f"filter: kept {counts[layout.KEPT]} + dropped {counts[layout.DROPPED]} + rejected "
                         f"{rejected} = {total}, but the input had {input_rows} rows")
    return {"threshold": t.to_dict(), "kept": counts[layout.KEPT], "dropped": counts[layout.DROPPED],
            "rejected": rejected, "input": input_rows}
