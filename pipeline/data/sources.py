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
from dataclasses import dataclass, replace
from typing import IO

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.data.readers import CHUNK_ROWS, READERS, RowOrError, extensions, format_of, read_jsonl, read_row_groups
from pipeline.errors import InputError

HF_MARKERS = ("state.json", "dataset_dict.json")


@dataclass(frozen=True)
class Piece:
    """One input file, or one part of a large one, and how to read it.

    A part is rows [``start``, ``stop``) of the file: byte offsets of whole lines for JSONL, row
    group indices for Parquet (``stop`` None: to the end). ``first_row`` is the file's row number of
    its first row, so rejected rows still name their file and row.
    """

    url: str
    format: str
    start: int = 0
    stop: int | None = None
    first_row: int = 1

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
    """Stream a piece's rows in chunks; a file that cannot be read at all raises InputError."""
    if piece.format not in READERS:
        raise InputError(piece.url, f"unknown format {piece.format!r}")
    try:
        with fsspec.open(piece.url, "rb") as f:
            if piece.format == "parquet" and (piece.start or piece.stop is not None):
                rows = read_row_groups(f, piece.start, piece.stop, piece.first_row)
            elif piece.format == "jsonl" and (piece.start or piece.stop is not None):
                f.seek(piece.start)
                rows = read_jsonl(_Bounded(f, piece.stop - piece.start), piece.first_row)
            else:
                rows = READERS[piece.format].read(f)
            yield from _chunks(rows)
    except (pa.ArrowException, OSError, ValueError) as err:
        raise _cannot_read(piece, err) from None


class _Bounded:
    """The next ``size`` bytes of a file, iterated by line (a JSONL part ends on a line end)."""

    def __init__(self, f: IO[bytes], size: int) -> None:
        self.f, self.left = f, size

    def __iter__(self) -> Iterator[bytes]:
        while self.left > 0:
            line = self.f.readline()
            if not line:
                return
            self.left -= len(line)
            yield line


PART_WINDOW = 1 << 16
"""Bytes read around a JSONL cut to find the line end it moves to."""


def _line_starts(f: IO[bytes], size: int, part_bytes: int) -> list[int]:
    """Offsets that cut a JSONL file into parts of about ``part_bytes``, each moved to a line start."""
    cuts = [0]
    for want in range(part_bytes, size, part_bytes):
        if want <= cuts[-1]:  # the last cut already moved past this one (a line longer than a part)
            continue
        pos = want
        while pos < size:
            f.seek(pos)
            window = f.read(PART_WINDOW)
            at = window.find(b"\n")
            if at >= 0:
                pos += at + 1
                break
            pos += len(window)
        if cuts[-1] < pos < size:
            cuts.append(pos)
    return [*cuts, size]


def split_large(pieces: list[Piece], part_bytes: int) -> list[Piece]:
    """Cut every JSONL or Parquet file larger than ``part_bytes`` into parts, so one big file
    spreads over all ingest actors instead of one (CSV and Arrow streams stay whole).

    Parquet parts are runs of whole row groups, numbered from the footer. JSONL parts are byte
    ranges of whole lines; their ``first_row`` is left 0 until ``number_lines`` counts the lines
    before each (a pass that only counts newlines, run in parallel by the caller).
    """
    def size(p: Piece) -> int:
        if p.format not in ("jsonl", "parquet"):
            return 0
        fs, path = fsspec.core.url_to_fs(p.url)
        return fs.size(path)

    with ThreadPoolExecutor(max_workers=CHECK_THREADS) as pool:  # one storage request per file: thousands on an object store
        sizes = list(pool.map(size, pieces))
    out: list[Piece] = []
    for p, n_bytes in zip(pieces, sizes):
        fs, path = fsspec.core.url_to_fs(p.url)
        if n_bytes <= part_bytes:  # (sizes: JSONL on disk, Parquet row groups uncompressed)
            out.append(p)
        elif p.format == "parquet":
            with fs.open(path, "rb") as f:
                meta = pq.ParquetFile(f).metadata
            start, rows, first, acc = 0, 0, 1, 0
            for g in range(meta.num_row_groups):
                acc += meta.row_group(g).total_byte_size
                rows += meta.row_group(g).num_rows
                if acc >= part_bytes or g == meta.num_row_groups - 1:
                    out.append(Piece(p.url, p.format, start, g + 1, first))
                    start, first, acc = g + 1, rows + 1, 0
        else:
            with fs.open(path, "rb") as f:
                cuts = _line_starts(f, n_bytes, part_bytes)
            out += [Piece(p.url, p.format, a, b, 1 if a == 0 else 0) for a, b in zip(cuts, cuts[1:])]
    return out


def count_lines(piece: Piece) -> int:
    """Lines in a JSONL part (its newlines; a last line without one counts too)."""
    fs, path = fsspec.core.url_to_fs(piece.url)
    n, left, last = 0, piece.stop - piece.start, b"\n"
    with fs.open(path, "rb") as f:
        f.seek(piece.start)
        while left > 0:
            block = f.read(min(left, 1 << 24))
            if not block:
                break
            n += block.count(b"\n")
            left -= len(block)
            last = block[-1:]
    return n + (last != b"\n")


def number_lines(pieces: list[Piece], counts: dict[int, int]) -> list[Piece]:
    """Give each JSONL part its first row number from the line ``counts`` of the parts before it
    (``counts`` maps a piece's index to its lines; parts of a file are consecutive)."""
    out, next_row = [], 1
    for i, p in enumerate(pieces):
        if p.format == "jsonl" and (p.start or p.stop is not None):
            if p.start == 0:
                next_row = 1
            p = replace(p, first_row=next_row)
            next_row += counts[i]
        out.append(p)
    return out


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

