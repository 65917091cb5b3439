"""Resolving user paths into input files ("pieces") and reading them row by row.

Reading is ours rather than Ray Data's built-in readers so every row carries its file and row
number: a bad row becomes a rejected row with a reason that names where it came from, and a bad
file becomes a one-line error naming the file, instead of a worker stack trace. Ray Data still
schedules the pieces in parallel (see ``pipeline.stages.ingest``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import posixpath
from dataclasses import dataclass
from typing import Any, Iterator

import fsspec
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from pipeline.errors import InputError

EXTENSIONS = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv"}
HF_MARKERS = ("state.json", "dataset_dict.json")
CHUNK_ROWS = 2048
"""Rows handed on at a time: large enough to batch tokenisation, small enough to bound memory."""

RowOrError = tuple[int, "dict[str, Any] | str"]
"""(1-based row number in the file, the row or a reason it could not be parsed)."""


@dataclass(frozen=True)
class Piece:
    """One input file and how to read it."""

    url: str
    format: str

    @property
    def shared(self) -> bool:
        """Whether Ray workers in other processes can open it (memory:// lives in one process)."""
        return not self.url.startswith("memory://")


def _url(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """Local files as plain absolute paths, everything else as a full URL."""
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return path if "file" in protocols else fs.unstrip_protocol(path)


def _format_of(path: str, fmt: str) -> str | None:
    if fmt != "auto":
        return fmt
    return EXTENSIONS.get(posixpath.splitext(path)[1].lower())


def _hf_arrow_files(fs: fsspec.AbstractFileSystem, root: str) -> list[str]:
    """Arrow files of a ``datasets`` dataset (or every split of a DatasetDict) saved to disk."""
    if fs.exists(posixpath.join(root, "dataset_dict.json")):
        splits = json.loads(fs.cat_file(posixpath.join(root, "dataset_dict.json")))["splits"]
        return [f for s in splits for f in _hf_arrow_files(fs, posixpath.join(root, s))]
    state = json.loads(fs.cat_file(posixpath.join(root, "state.json")))
    return [posixpath.join(root, d["filename"]) for d in state["_data_files"]]


def resolve(paths: list[str], fmt: str = "auto") -> list[Piece]:
    """Expand files, directories, globs and fsspec URLs into a sorted list of pieces.

    Raises InputError for a path that matches nothing or a file of unknown format.
    """
    pieces: list[Piece] = []
    for raw in paths:
        fs, path = fsspec.core.url_to_fs(raw)
        if any(c in path for c in "*?["):
            matches = sorted(fs.glob(path))
            if not matches:
                raise InputError(raw, "no file matches this pattern")
        elif fs.isdir(path):
            if fmt in ("auto", "hf") and any(fs.exists(posixpath.join(path, m)) for m in HF_MARKERS):
                pieces += [Piece(_url(fs, f), "hf") for f in _hf_arrow_files(fs, path)]
                continue
            matches = sorted(f for f in fs.find(path) if _format_of(f, fmt) and not posixpath.basename(f).startswith((".", "_")))
            if not matches:
                raise InputError(raw, "directory holds no .parquet, .jsonl, .json or .csv file")
        elif fs.isfile(path):
            matches = [path]
        else:
            raise InputError(raw, "path does not exist")
        for m in matches:
            f = _format_of(m, fmt)
            if f is None:
                raise InputError(_url(fs, m), "unknown file format (use .parquet, .jsonl, .csv or set data.format)")
            pieces.append(Piece(_url(fs, m), f))
    return pieces


def _chunks(rows: Iterator[RowOrError]) -> Iterator[list[RowOrError]]:
    chunk: list[RowOrError] = []
    for r in rows:
        chunk.append(r)
        if len(chunk) >= CHUNK_ROWS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _jsonl_rows(f: io.BufferedIOBase) -> Iterator[RowOrError]:
    for n, line in enumerate(f, start=1):
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


def _csv_rows(f: io.BufferedIOBase) -> Iterator[RowOrError]:
    text = io.TextIOWrapper(f, encoding="utf-8", errors="surrogateescape", newline="")
    reader = csv.reader(text)
    header = next(reader, None)
    if header is None:
        return
    for n, values in enumerate(reader, start=1):
        if _has_surrogates(values):
            yield n, "invalid UTF-8"
        elif len(values) != len(header):
            yield n, f"has {len(values)} fields, header has {len(header)}"
        else:
            yield n, dict(zip(header, values))


def _arrow_rows(batches: Iterator[pa.RecordBatch]) -> Iterator[RowOrError]:
    n = 0
    for batch in batches:
        for row in batch.to_pylist():
            n += 1
            yield n, row


def read_piece(piece: Piece) -> Iterator[list[RowOrError]]:
    """Stream a file's rows in chunks; a file that cannot be read at all raises InputError."""
    try:
        with fsspec.open(piece.url, "rb") as f:
            if piece.format == "jsonl":
                yield from _chunks(_jsonl_rows(f))
            elif piece.format == "csv":
                yield from _chunks(_csv_rows(f))
            elif piece.format == "parquet":
                yield from _chunks(_arrow_rows(pq.ParquetFile(f).iter_batches(batch_size=CHUNK_ROWS)))
            elif piece.format == "hf":
                yield from _chunks(_arrow_rows(iter(ipc.open_stream(f))))
            else:
                raise InputError(piece.url, f"unknown format {piece.format!r}")
    except InputError:
        raise
    except (pa.ArrowException, OSError, ValueError) as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(piece.url, f"cannot read as {piece.format}: {detail}") from None


def input_signature(paths: list[str], fmt: str = "auto") -> str:
    """A digest of what the inputs hold now: every resolved file's URL, size and modification stamp.

    Part of the ingest stage's fingerprint, so new data under the same path (a nightly drop that
    overwrote yesterday's files) is ingested again instead of reusing the old result.
    """
    h = hashlib.sha256()
    for piece in resolve(paths, fmt):
        fs, path = fsspec.core.url_to_fs(piece.url)
        info = fs.info(path)
        stamp = next((info[k] for k in ("mtime", "LastModified", "ETag", "etag", "md5Hash", "created") if k in info), "")
        h.update(f"{piece.url}\0{info.get('size')}\0{stamp}\n".encode())
    return h.hexdigest()[:16]

