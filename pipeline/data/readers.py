"""Input formats: one reader function per format, registered with the file extensions it claims.

A reader takes an open binary file and yields ``(row number, row)`` or ``(row number, reason)``
for a row that cannot be parsed, so every bad row becomes a rejected row naming its file and row.
It raises (``pyarrow.ArrowException``, ``OSError``, ``ValueError``) only when the file as a whole
cannot be read; ``sources.read_piece`` turns that into a one-line error naming the file. A format
may also register a cheap whole-file check (Parquet: its footer) that runs before any Ray work.
A new input format is one decorated function here.
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

RowOrError = tuple[int, "dict[str, Any] | str"]
"""(1-based row number in the file, the row or a reason it could not be parsed)."""

CHUNK_ROWS = 2048
"""Rows handed on at a time: large enough to batch tokenisation, small enough to bound memory."""


RowReader = Callable[[IO[bytes]], Iterator[RowOrError]]
FileCheck = Callable[[IO[bytes]], object]


def opens(f: IO[bytes]) -> bytes:
    """The check every format gets: the file opens and its first byte can be read."""
    return f.read(1)


@dataclass(frozen=True)
class Reader:
    """How to read one format: the row reader, the extensions that select it under ``format: auto``,
    and a cheap check that the file as a whole is readable (raises like the reader does)."""

    read: RowReader
    extensions: tuple[str, ...]
    check: FileCheck = opens


READERS: dict[str, Reader] = {}


def reader(name: str, *extensions: str, check: FileCheck = opens) -> Callable[[RowReader], RowReader]:
    """Register a reader for format ``name`` (``data.format: name``), the extensions it claims and its check."""

    def register(fn: RowReader) -> RowReader:
        READERS[name] = Reader(fn, extensions, check)
        return fn

    return register


@reader("jsonl", ".jsonl", ".json")
def read_jsonl(f: IO[bytes], first_row: int = 1) -> Iterator[RowOrError]:
    """One JSON object per line; blank lines are skipped but still counted in the row numbers."""
    for n, line in enumerate(f, start=first_row):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            yield n, "invalid UTF-8"
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as err:
            yield n, f"invalid JSON ({err.msg})"
            continue
        yield n, obj if isinstance(obj, dict) else "line is not a JSON object"


def _has_surrogates(values: list[str]) -> bool:
    return any(isinstance(v, str) and any("\udc80" <= ch <= "\udcff" for ch in v) for v in values)


@reader("csv", ".csv")
def read_csv(f: IO[bytes]) -> Iterator[RowOrError]:
    """A header line, then one row per record; every value is text."""
    text = io.TextIOWrapper(f, encoding="utf-8", errors="surrogateescape", newline="")
    rows = csv.reader(text)
    header = next(rows, None)
    if header is None:
        return
    for n, values in enumerate(rows, start=1):
        if _has_surrogates(values):
            yield n, "invalid UTF-8"
        elif len(values) != len(header):
            yield n, f"has {len(values)} fields, header has {len(header)}"
        else:
            yield n, dict(zip(header, values))


def _arrow_rows(batches: Iterator[pa.RecordBatch], first_row: int = 1) -> Iterator[RowOrError]:
    n = first_row - 1
    for batch in batches:
        for row in batch.to_pylist():
            n += 1
            yield n, row


@reader("parquet", ".parquet", ".pq", check=pq.read_metadata)  # a truncated file has no footer
def read_parquet(f: IO[bytes]) -> Iterator[RowOrError]:
    """Streamed by record batches, so a large file never sits in memory whole."""
    return _arrow_rows(pq.ParquetFile(f).iter_batches(batch_size=CHUNK_ROWS))


def read_row_groups(f: IO[bytes], start: int, stop: int | None, first_row: int) -> Iterator[RowOrError]:
    """Row groups [``start``, ``stop``) of a Parquet file, its rows numbered from ``first_row``."""
    pf = pq.ParquetFile(f)
    groups = range(start, pf.metadata.num_row_groups if stop is None else stop)
    return _arrow_rows(pf.iter_batches(batch_size=CHUNK_ROWS, row_groups=groups), first_row)


@reader("hf")
def read_hf_arrow(f: IO[bytes]) -> Iterator[RowOrError]:
    """One Arrow stream file of a ``datasets`` dataset saved with ``save_to_disk`` (found by its layout)."""
    return _arrow_rows(iter(ipc.open_stream(f)))


def format_of(path: str, fmt: str) -> str | None:
    """The configured format, or under ``auto`` the one whose reader claims the file's extension."""
    if fmt != "auto":
        return fmt
    ext = posixpath.splitext(path)[1].lower()
    return next((name for name, r in READERS.items() if ext in r.extensions), None)


def extensions() -> str:
    """The extensions ``auto`` recognises, for error messages."""
    return ", ".join(e for r in READERS.values() for e in r.extensions)
