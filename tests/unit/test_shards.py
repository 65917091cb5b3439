"""Shard writing: bounded files, nothing visible before it is complete, and an empty side still readable."""

from __future__ import annotations

import fsspec
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.data.shards import REJECTED_SCHEMA, ShardWriter, write_empty_shard


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


def test_an_empty_side_gets_one_zero_row_shard_with_the_columns(tmp_path):
    fs = fsspec.filesystem("file")
    assert write_empty_shard(fs, str(tmp_path), REJECTED_SCHEMA, "zstd")
    df = pl.read_parquet(str(tmp_path / "*.parquet"))
    assert df.height == 0 and df.columns == ["source_file", "source_row", "reject_reason"]


def test_a_side_with_rows_gets_no_extra_shard(tmp_path):
    fs = fsspec.filesystem("file")
    pq.write_table(pa.table({"x": [1]}), tmp_path / "part-0000.parquet")
    assert write_empty_shard(fs, str(tmp_path), REJECTED_SCHEMA, None) == ""
    assert [p.name for p in tmp_path.iterdir()] == ["part-0000.parquet"]
