"""Writing Parquet shards of bounded size under deterministic names, committed atomically."""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import columns as col

if TYPE_CHECKING:
    import pyarrow.fs as pafs
    from ray.data import Dataset

    from pipeline.config import OutputConfig


def normalise_types(table: pa.Table) -> pa.Table:
    """Give all-null columns a string type, so shards written from different chunks can be read together."""
    for i, field in enumerate(table.schema):
        if pa.types.is_null(field.type):
            table = table.set_column(i, pa.field(field.name, pa.string()), table.column(i).cast(pa.string()))
    return table


REJECTED_SCHEMA = pa.schema([(col.SOURCE_FILE, pa.string()), (col.SOURCE_ROW, pa.int64()), (col.REJECT_REASON, pa.string())])
"""The columns every rejected row has (its own columns, as text, come beside them)."""


def write_empty_shard(fs: fsspec.AbstractFileSystem, directory: str, schema: pa.Schema, compression: str | None) -> str:
    """Write a zero-row shard carrying ``schema`` into ``directory`` if it has no shard yet.

    A side of the split can be empty (a clean corpus drops nothing). Readers such as
    ``polars.read_parquet("dropped/*.parquet")`` or ``ray.data.read_parquet`` fail on a directory
    with no file, so an empty side still gets one file with the right columns. It has no row group
    at all: a row group of zero rows makes ``datasets`` fail with "BatchSize must be greater than 0".
    """
    if fs.glob(posixpath.join(directory, "*.parquet")):
        return ""
    final = posixpath.join(directory, "empty-0000.parquet")
    tmp = posixpath.join(directory, ".empty-0000.parquet.inprogress")
    with fs.open(tmp, "wb") as f:
        pq.ParquetWriter(f, schema, compression=compression or "none").close()
    fs.mv(tmp, final)
    return final


def rejected_schema(valid: pa.Schema | None, added: tuple[str, ...]) -> pa.Schema:
    """The columns of a rejected row: the input's own columns (as text), then where it came from and why.

    ``valid`` is the schema of the usable rows, ``added`` the columns ingest put there; what is left
    are the input's columns, so an empty rejected/ still has ``id``, ``prompt``... like a full one.
    """
    own = [pa.field(f.name, pa.string()) for f in (valid or []) if f.name not in added and f.name not in REJECTED_SCHEMA.names]
    return pa.schema([*own, *REJECTED_SCHEMA])


class ShardWriter:
    """Buffers rows and writes ``<prefix>-<k>.parquet`` files of at most ``rows_per_file`` rows.

    Each file is written under a temporary name and renamed when complete, so a reader of the
    directory never sees a partial file.
    """

    def __init__(self, fs: fsspec.AbstractFileSystem, directory: str, prefix: str, rows_per_file: int, compression: str | None) -> None:
        self.fs, self.directory, self.prefix = fs, directory, prefix
        self.rows_per_file, self.compression = rows_per_file, compression
        self.buffer: list[dict[str, Any]] = []
        self.files: list[str] = []
        self.rows = 0

    def add(self, rows: list[dict[str, Any]]) -> None:
        self.buffer.extend(rows)
        while len(self.buffer) >= self.rows_per_file:
            self._flush(self.buffer[: self.rows_per_file])
            self.buffer = self.buffer[self.rows_per_file:]

    def close(self) -> list[str]:
        if self.buffer:
            self._flush(self.buffer)
            self.buffer = []
        return self.files

    def _flush(self, rows: list[dict[str, Any]]) -> None:
        table = normalise_types(pa.Table.from_pylist(rows))
        name = f"{self.prefix}-{len(self.files):04d}.parquet"
        final = posixpath.join(self.directory, name)
        tmp = posixpath.join(self.directory, f".{name}.inprogress")
        with self.fs.open(tmp, "wb") as f:
            pq.write_table(table, f, compression=self.compression)
        self.fs.mv(tmp, final)
        self.files.append(final)
        self.rows += len(rows)


def write_dataset_shards(ds: Dataset, directory: str, filesystem: pafs.FileSystem | None, output: OutputConfig) -> None:
    """Write a Ray Dataset as Parquet shards of exactly ``output.rows_per_file`` rows (the last fewer).

    ``write_parquet``'s row bounds apply per write task, and a task gets whatever blocks are
    ready: small blocks (the scoring actors' output) left one short file per task, 17 files for
    10 at 100k rows. Re-cutting into blocks of exactly one shard first gives one full file per task.
    """
    ds = ds.repartition(target_num_rows_per_block=output.rows_per_file, strict=True)
    ds.write_parquet(directory, filesystem=filesystem, **output.shard_options)
