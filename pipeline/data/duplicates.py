"""Duplicate example ids: the first occurrence in input order stays, later ones go to ``rejected/``.

Why: ``example_id`` is the key that joins kept/, dropped/ and the scores back to the input, and
it seeds the training sample; two rows under one id would make the split ambiguous. Without an id
column the id is a hash of the content, so verbatim duplicate examples are caught too (they would
otherwise count twice in the noisy finetune). Nothing is lost: a duplicate lands in ``rejected/``
with a reason naming where its id first appeared.

Ingest actors see one file each, so this is a second, global pass over the staged shards before
they are committed: it reads three small columns of every shard (about 50 bytes a row in the
driver) and rewrites only the shards that hold a duplicate.
"""

from __future__ import annotations

import posixpath
from typing import Any

import fsspec
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import columns as col
from pipeline.data.rows import as_text
from pipeline.data.shards import ShardWriter

KEY_COLUMNS = [col.EXAMPLE_ID, col.SOURCE_FILE, col.SOURCE_ROW]


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


def reject_duplicates(
    fs: fsspec.AbstractFileSystem, valid_dir: str, rejected_dir: str, file_order: dict[str, int], id_column: str,
    internal_columns: tuple[str, ...], rows_per_file: int, compression: str | None,
) -> int:
    """Move every later duplicate from the shards in ``valid_dir`` to ``rejected_dir``; return how many."""
    files = sorted(fs.glob(posixpath.join(valid_dir, "*.parquet")))
    frames = []
    for i, f in enumerate(files):
        with fs.open(f, "rb") as fh:
            t = pq.read_table(fh, columns=KEY_COLUMNS)
        frames.append(pl.from_arrow(t).with_columns(shard=pl.lit(i, dtype=pl.Int32)))
    if not frames:
        return 0
    keys = pl.concat(frames).with_columns(
        file_index=pl.col(col.SOURCE_FILE).replace_strict(file_order, return_dtype=pl.Int64)
    )
    dups = later_duplicates(keys)
    if dups.is_empty():
        return 0
    writer = ShardWriter(fs, rejected_dir, "duplicates", rows_per_file, compression)
    for (shard,), group in dups.group_by("shard", maintain_order=True):
        where = {(r[col.SOURCE_FILE], r[col.SOURCE_ROW]): (r["first_file"], r["first_row"]) for r in group.iter_rows(named=True)}
        path = files[shard]
        with fs.open(path, "rb") as fh:
            table = pq.read_table(fh)
        is_dup = [(f, r) in where for f, r in zip(table.column(col.SOURCE_FILE).to_pylist(), table.column(col.SOURCE_ROW).to_pylist())]
        rejected = []
        for row in table.filter(pa.array(is_dup)).to_pylist():
            first_file, first_row = where[(row[col.SOURCE_FILE], row[col.SOURCE_ROW])]
            out = {k: as_text(v) for k, v in row.items() if k not in internal_columns and k != col.SOURCE_ROW}
            out.update({col.SOURCE_ROW: row[col.SOURCE_ROW],
                        col.REJECT_REASON: duplicate_reason(row, id_column, first_file, first_row)})
            rejected.append(out)
        writer.add(rejected)
        tmp = posixpath.join(posixpath.dirname(path), "." + posixpath.basename(path) + ".inprogress")
        with fs.open(tmp, "wb") as fh:
            pq.write_table(table.filter(pa.array([not d for d in is_dup])), fh, compression=compression)
        fs.mv(tmp, path)
    writer.close()
    return len(dups)
