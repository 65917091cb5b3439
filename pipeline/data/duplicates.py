"""Duplicate example ids: the first occurrence in input order stays, later ones go to ``rejected/``.

Why: ``example_id`` is the key that joins kept/, dropped/ and the scores back to the input, and
it seeds the training sample; two rows under one id would make the split ambiguous. Without an id
column the id is a hash of the content, so verbatim duplicate examples are caught too (they would
otherwise count twice in the noisy finetune). Nothing is lost: a duplicate lands in ``rejected/``
with a reason naming where its id first appeared.

Ingest actors see one file each, so this is a second, global pass over the staged shards before
they are committed, in Ray Data so the driver holds no per-row state: the three key columns of
every shard are hash-partitioned on ``example_id`` (every occurrence of an id lands in the same
partition, about ``ROWS_PER_PARTITION`` rows each), each partition finds its later duplicates, and
only the shards that hold one are rewritten, one task per shard.
"""

from __future__ import annotations

import math
import posixpath
from typing import Any

import fsspec
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import columns as col
from pipeline.data.rows import as_text
from pipeline.data.shards import ShardWriter

KEY_COLUMNS = [col.EXAMPLE_ID, col.SOURCE_FILE, col.SOURCE_ROW]
ROWS_PER_PARTITION = 1_000_000
"""Key rows per hash partition: a partition's duplicate search peaks at ~450 bytes a row (polars)."""
IN_PROCESS_ROWS = 200_000
"""Up to this many rows the search runs in the calling process (~90 MB at most), without a shuffle."""
SHARD = "path"


def later_duplicates(keys: pl.DataFrame) -> pl.DataFrame:
    """The rows of ``keys`` whose ``example_id`` already appeared earlier in input order.

    ``keys`` has ``example_id``, ``source_file``, ``source_row`` and ``file_index`` (the file's
    position in the resolved input). The result adds ``first_file`` and ``first_row``: where the
    kept occurrence is.
    """
    ordered = keys.sort(["file_index", col.SOURCE_ROW])
    first = ordered.unique(col.EXAMPLE_ID, keep="first", maintain_order=True).select(
        col.EXAMPLE_ID, first_file=col.SOURCE_FILE, first_row=col.SOURCE_ROW
    )
    return ordered.filter(~pl.col(col.EXAMPLE_ID).is_first_distinct()).join(first, on=col.EXAMPLE_ID, how="left")


def duplicate_reason(row: dict[str, Any], id_column: str, first_file: str, first_row: int) -> str:
    """One line saying which id repeats and where it was first seen."""
    raw = row.get(id_column)
    if raw is not None and str(raw) != "":
        return f"column '{id_column}': duplicate id {str(raw)!r}, first at {first_file} row {first_row}"
    return f"duplicate content (same prompt and response), first at {first_file} row {first_row}"


def _partition_duplicates(keys: pa.Table, file_order: dict[str, int]) -> pa.Table:
    """Ray Data UDF on one hash partition: its later duplicates, with the shard each one is in."""
    frame = pl.from_arrow(keys).with_columns(
        file_index=pl.col(col.SOURCE_FILE).replace_strict(file_order, return_dtype=pl.Int64))
    return later_duplicates(frame).drop("file_index").to_arrow()


def _remove_from_shard(
    dups: pa.Table, fs: fsspec.AbstractFileSystem, rejected_dir: str, id_column: str, internal_columns: tuple[str, ...],
    rows_per_file: int, compression: str | None,
) -> pa.Table:
    """Ray Data UDF on the duplicates of one shard: move them to ``rejected_dir``, rewrite the shard."""
    path = dups.column(SHARD)[0].as_py()
    cols = (col.SOURCE_FILE, col.SOURCE_ROW, "first_file", "first_row")
    where = {(f, r): (ff, fr) for f, r, ff, fr in zip(*(dups.column(c).to_pylist() for c in cols))}
    with fs.open(path, "rb") as fh:
        table = pq.read_table(fh)
    is_dup = pa.array([(f, r) in where for f, r in zip(table.column(col.SOURCE_FILE).to_pylist(), table.column(col.SOURCE_ROW).to_pylist())])
    rejected = []
    for row in table.filter(is_dup).to_pylist():
        first_file, first_row = where[(row[col.SOURCE_FILE], row[col.SOURCE_ROW])]
        out = {k: as_text(v) for k, v in row.items() if k not in internal_columns and k != col.SOURCE_ROW}
        out.update({col.SOURCE_ROW: row[col.SOURCE_ROW], col.REJECT_REASON: duplicate_reason(row, id_column, first_file, first_row)})
        rejected.append(out)
    stem = posixpath.basename(path).removesuffix(".parquet")
    writer = ShardWriter(fs, rejected_dir, f"duplicates-{stem}", rows_per_file, compression)
    writer.add(rejected)
    writer.close()
    tmp = posixpath.join(posixpath.dirname(path), "." + posixpath.basename(path) + ".inprogress")
    with fs.open(tmp, "wb") as fh:
        pq.write_table(table.filter(pc.invert(is_dup)), fh, compression=compression)
    fs.mv(tmp, path)
    return pa.table({"removed": [len(rejected)]})


def reject_duplicates(
    fs: fsspec.AbstractFileSystem, valid_dir: str, rejected_dir: str, file_order: dict[str, int], id_column: str,
    internal_columns: tuple[str, ...], rows_per_file: int, compression: str | None,
    in_process_rows: int = IN_PROCESS_ROWS, partition_rows: int = ROWS_PER_PARTITION,
) -> int:
    """Move every later duplicate from the shards in ``valid_dir`` to ``rejected_dir``; return how many.

    Up to ``in_process_rows`` rows there is one partition and it is searched here: a shuffle costs
    seconds of scheduling that a small corpus need not pay, and the memory is bounded all the same.
    Above, Ray Data shuffles and searches; ``fs`` must then be one every Ray worker can reach.
    """
    files = sorted(fs.glob(posixpath.join(valid_dir, "*.parquet")))
    rows = 0
    for f in files:
        with fs.open(f, "rb") as fh:
            rows += pq.ParquetFile(fh).metadata.num_rows
    if not rows:
        return 0
    remove = {"fs": fs, "rejected_dir": rejected_dir, "id_column": id_column, "internal_columns": internal_columns,
              "rows_per_file": rows_per_file, "compression": compression}
    if rows <= in_process_rows:
        parts = []
        for f in files:
            with fs.open(f, "rb") as fh:
                t = pq.read_table(fh, columns=KEY_COLUMNS)
            parts.append(t.append_column(SHARD, pa.array([f] * t.num_rows, pa.string())))
        dups = pl.from_arrow(_partition_duplicates(pa.concat_tables(parts), file_order))
        return sum(_remove_from_shard(group.to_arrow(), **remove)["removed"][0].as_py()
                   for _, group in dups.group_by(SHARD, maintain_order=True))

    import ray

    from pipeline.runtime.rundir import arrow_filesystem

    keys = ray.data.read_parquet(files, filesystem=arrow_filesystem(fs), include_paths=True).select_columns([*KEY_COLUMNS, SHARD])
    dups = keys.repartition(math.ceil(rows / partition_rows), keys=[col.EXAMPLE_ID]).map_batches(
        _partition_duplicates, fn_kwargs={"file_order": file_order}, batch_format="pyarrow", batch_size=None).materialize()
    if not dups.count():
        return 0
    return int(dups.groupby(SHARD).map_groups(_remove_from_shard, batch_format="pyarrow", fn_kwargs=remove).sum("removed"))
