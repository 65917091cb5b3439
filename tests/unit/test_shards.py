"""Shard writing: bounded files, nothing visible before it is complete, and an empty side still readable."""

from __future__ import annotations

import fsspec
import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from pipeline import columns as col
from pipeline.data.shards import REJECTED_SCHEMA, ShardWriter, rejected_schema, write_empty_shard


def test_shard_writer_bounds_every_file_and_keeps_every_row(tmp_path):
    fs = fsspec.filesystem("file")
    w = ShardWriter(fs, str(tmp_path), "part", rows_per_file=4, compression="zstd")
    for start in range(0, 10, 3):
        w.add([{"i": i, "note": None} for i in range(start, min(start + 3, 10))])
    files = w.close()
    sizes = [pq.ParquetFile(f).metadata.num_rows for f in files]
    assert sizes == [4, 4, 2]
    assert pl.read_parquet(str(tmp_path / "*.parquet"))["i"].to_list() == list(range(10))
    assert not list(tmp_path.glob(".*inprogress"))


@pytest.mark.parametrize("compression", ["zstd", None])
def test_an_empty_side_loads_with_pyarrow_polars_and_datasets(tmp_path, compression):
    fs = fsspec.filesystem("file")
    schema = pa.schema([("id", pa.string()), ("prompt", pa.string()), ("forgetting", pa.float64())])
    assert write_empty_shard(fs, str(tmp_path), schema, compression)
    assert pads.dataset(str(tmp_path)).to_table().schema == schema
    df = pl.read_parquet(str(tmp_path / "*.parquet"))
    assert df.height == 0 and df.columns == ["id", "prompt", "forgetting"]
    # A zero-row row group made datasets fail with "BatchSize must be greater than 0"; with none,
    # streaming reads it. (Non-streaming load_dataset refuses every zero-row split by its own rule.)
    import datasets

    stream = datasets.load_dataset("parquet", data_dir=str(tmp_path), split="train", streaming=True)
    assert list(stream) == [] and list(stream.features) == ["id", "prompt", "forgetting"]


def test_an_empty_rejected_side_has_the_inputs_own_columns_as_text():
    valid = pa.schema([("id", pa.int64()), ("prompt", pa.string()), ("label", pa.int64()), (col.EXAMPLE_ID, pa.string()),
                       (col.SOURCE_FILE, pa.string()), (col.SOURCE_ROW, pa.int64()),
                       (col.INPUT_IDS, pa.list_(pa.int32())), (col.PROMPT_LEN, pa.int64())])
    schema = rejected_schema(valid, col.INGEST_ADDED)
    assert schema.names == ["id", "prompt", "label", *REJECTED_SCHEMA.names]
    assert {schema.field(c).type for c in ("id", "prompt", "label")} == {pa.string()}  # as a rejected row's values
    assert rejected_schema(None, col.INGEST_ADDED) == REJECTED_SCHEMA


def test_a_side_with_rows_gets_no_extra_shard(tmp_path):
    fs = fsspec.filesystem("file")
    pq.write_table(pa.table({"x": [1]}), tmp_path / "part-0000.parquet")
    assert write_empty_shard(fs, str(tmp_path), REJECTED_SCHEMA, None) == ""
    assert [p.name for p in tmp_path.iterdir()] == ["part-0000.parquet"]
