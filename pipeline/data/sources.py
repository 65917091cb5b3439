"""Resolving user paths into input files ("pieces") and reading them row by row.

Reading is ours rather than Ray Data's built-in readers so every row carries its file and row
number: a bad row becomes a rejected row with a reason that names where it came from, and a bad
file becomes a one-line error naming the file, instead of a worker stack trace. Ray Data still
schedules the pieces in parallel (see ``pipeline.stages.ingest``).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import fsspec
import pyarrow as pa

from pipeline.data.readers import CHUNK_ROWS, READERS, RowOrError, extensions, format_of
from pipeline.errors import InputError

HF_MARKERS = ("state.json", "dataset_dict.json")


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
            matches = sorted(f for f in fs.find(path) if format_of(f, fmt) and not posixpath.basename(f).startswith((".", "_")))
            if not matches:
                raise InputError(raw, f"directory holds no file of a known format ({extensions()})")
        elif fs.isfile(path):
            matches = [path]
        else:
            raise InputError(raw, "path does not exist")
        for m in matches:
            f = format_of(m, fmt)
            if f is None:
                raise InputError(_url(fs, m), f"unknown file format (use {extensions()} or set data.format)")
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


def _cannot_read(piece: Piece, err: Exception) -> InputError:
    detail = str(err).splitlines()[0] if str(err) else type(err).__name__
    return InputError(piece.url, f"cannot read as {piece.format}: {detail}")


def read_piece(piece: Piece) -> Iterator[list[RowOrError]]:
    """Stream a file's rows in chunks; a file that cannot be read at all raises InputError."""
    if piece.format not in READERS:
        raise InputError(piece.url, f"unknown format {piece.format!r}")
    try:
        with fsspec.open(piece.url, "rb") as f:
            yield from _chunks(READERS[piece.format].read(f))
    except (pa.ArrowException, OSError, ValueError) as err:
        raise _cannot_read(piece, err) from None


CHECK_THREADS = 16
"""Files checked at once: the checks wait on storage (object stores answer in tens of ms), not CPU."""


def _check_one(piece: Piece) -> InputError | None:
    try:
        with fsspec.open(piece.url, "rb") as f:
            READERS[piece.format].check(f)
    except (pa.ArrowException, OSError, ValueError) as err:
        return _cannot_read(piece, err)
    return None


def check_readable(pieces: list[Piece]) -> None:
    """Cheap checks before any Ray work: every file opens, and passes its format's check (Parquet: the footer parses).

    A truncated or corrupt Parquet file is found in milliseconds from its footer, so the user gets
    the one-line error at once instead of after the cluster has started. The files are checked
    concurrently (thousands of shards on an object store would otherwise cost minutes of start-up);
    the first bad one in input order is reported. Row-level problems are still found while reading.
    """
    with ThreadPoolExecutor(max_workers=CHECK_THREADS) as pool:
        for error in pool.map(_check_one, pieces):
            if error:
                raise error


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

