"""Duplicate ids: first occurrence in input order kept, later ones rejected with where the first is."""

from __future__ import annotations

import fsspec
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.data.duplicates import later_duplicates, reject_duplicates


def test_later_duplicates_follow_input_order_not_shard_order():
    keys = pl.DataFrame({
        "example_id": ["a", "b", "a", "c", "a"],
        "source_file": ["f2", "f1", "f1", "f1", "f2"],
        "source_row": [0, 5, 9, 1, 3],
        "file_index": [1, 0, 0, 0, 1],
    })
    dups = later_duplicates(keys)
    assert dups.select("source_file", "source_row", "first_file", "first_row").rows() == [("f2", 0, "f1", 9), ("f2", 3, "f1", 9)]


def _shard(path, rows):
    pq.write_table(pa.Table.from_pylist(rows), path)


@pytest.mark.parametrize("in_process_rows", [1_000, 2], ids=["in-process", "ray-data-shuffle"])
def test_duplicates_move_to_rejected_and_every_row_stays_somewhere(tmp_path, in_process_rows, request):
    if in_process_rows == 2:
        request.getfixturevalue("ray_local")
    fs = fsspec.filesystem("file")
    valid, rejected = tmp_path / "valid", tmp_path / "rejected"
    valid.mkdir()
    rejected.mkdir()

    def row(i, file, n, id_=None):
        return {"prompt": f"p{i}", "response": "r", "id": id_, "example_id": id_ or f"h{i}", "source_file": file,
                "source_row": n, "input_ids": [1, 2], "prompt_len": 1}

    _shard(valid / "part-00000-0000.parquet", [row(0, "a.jsonl", 0, "x"), row(1, "a.jsonl", 1), row(1, "a.jsonl", 2)])
    _shard(valid / "part-00001-0000.parquet", [row(2, "b.jsonl", 0, "x"), row(3, "b.jsonl", 1)])
    n = reject_duplicates(fs, str(valid), str(rejected), {"a.jsonl": 0, "b.jsonl": 1}, "id", ("input_ids", "prompt_len"), 100, None,
                          in_process_rows=in_process_rows, partition_rows=2)
    assert n == 2
    left = pl.read_parquet(str(valid / "*.parquet"))
    assert sorted(left["source_row"].to_list()) == [0, 1, 1] and left["example_id"].n_unique() == 3
    rej = pl.read_parquet(str(rejected / "*.parquet")).sort("source_file")
    assert rej["reject_reason"].to_list() == [
        "duplicate content (same prompt and response), first at a.jsonl row 1",
        "column 'id': duplicate id 'x', first at a.jsonl row 0",
    ]
    assert "input_ids" not in rej.columns and rej["source_row"].to_list() == [2, 0]


def test_no_duplicates_rewrites_nothing(tmp_path):
    fs = fsspec.filesystem("file")
    _shard(tmp_path / "s.parquet", [{"example_id": "a", "source_file": "f", "source_row": 0}])
    before = (tmp_path / "s.parquet").stat().st_mtime_ns
    assert reject_duplicates(fs, str(tmp_path), str(tmp_path / "r"), {"f": 0}, "id", (), 10, None) == 0
    assert (tmp_path / "s.parquet").stat().st_mtime_ns == before
