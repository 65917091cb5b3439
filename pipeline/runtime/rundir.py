"""The output directory: its layout, atomic commits and the manifest of finished stages.

Nothing half-written is ever read as complete: a stage writes into ``<name>.tmp/``, renames it into
place, and only then records itself in ``manifest.json`` (itself replaced atomically). A stage is
"done" only if the manifest says so with the same fingerprint, so a crash at any point leaves
either the old state or the new one, and a re-run resumes from the last finished stage.
"""

from __future__ import annotations

import json
import posixpath
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.errors import ConfigError
from pipeline.runtime.redact import redact

# Layout, relative to the output root.
INGEST = "work/ingest"
SAFETY = "work/safety"
SAFETY_REJECTED = "work/safety_rejected"
MODEL_A = "models/noisy"
MODEL_B = "models/safety"
MODEL_F = "models/filtered"
MODEL_FS = "models/filtered_safety"
MODEL_REPLAY = "models/replay"
"""The evaluation's models: base -> kept rows, that -> safety set, base -> corpus mixed with the safety set."""
EVALUATION = "evaluation"
TRAIN_RUNS = "work/train"
"""Ray Train's checkpoints of the finetune in progress (``<dir>/<stage name>``), for restarts."""
SCORES = "work/scores"
SAFETY_SCORES = "work/safety_scores"
"""The safety set scored like the corpus: its prompt states are the centroid ``filtering.prompts`` compares with."""
KEPT = "kept"
DROPPED = "dropped"
REJECTED = "rejected"
REPORT = "report"
MANIFEST = "manifest.json"
SUCCESS = "_SUCCESS"
"""Written when every stage is complete, for schedulers and downstream jobs that wait on it."""


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return "file" in fs.protocol or "local" in fs.protocol


def arrow_filesystem(fs: fsspec.AbstractFileSystem) -> pafs.FileSystem | None:
    """The filesystem argument Ray Data needs for paths on ``fs``: None locally, an fsspec bridge otherwise."""
    return None if is_local(fs) else pafs.PyFileSystem(pafs.FSSpecHandler(fs))


@dataclass
class RunDir:
    """An output root on any fsspec filesystem that all Ray workers can reach."""

    url: str

    def __post_init__(self) -> None:
        if not self.url:
            raise ConfigError("output.dir: required (where kept/, dropped/, rejected/ and the report go)")
        if self.url.startswith("memory://"):
            raise ConfigError("output.dir: memory:// is private to one process; Ray workers cannot write there")
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.local = is_local(self.fs)

    def path(self, rel: str) -> str:
        return posixpath.join(self.root, rel)

    def uri(self, rel: str) -> str:
        """A path Ray Data and ``fsspec.open`` both accept."""
        p = self.path(rel)
        return p if self.local else self.fs.unstrip_protocol(p)

    def arrow_fs(self) -> pafs.FileSystem | None:
        """Filesystem object for Ray Data: None locally, an fsspec bridge otherwise."""
        return arrow_filesystem(self.fs)

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self.path(rel))

    def remove(self, rel: str) -> None:
        if self.fs.exists(self.path(rel)):
            self.fs.rm(self.path(rel), recursive=True)

    def staging(self, rel: str) -> str:
        """A fresh temporary sibling of ``rel`` to write into before ``commit``."""
        tmp = rel + ".tmp"
        self.remove(tmp)
        self.fs.makedirs(self.path(tmp), exist_ok=True)
        return tmp

    def commit(self, tmp: str, rel: str) -> None:
        """Replace ``rel`` by the finished ``tmp`` (a rename on local and POSIX-like filesystems)."""
        self.remove(rel)
        self.fs.makedirs(posixpath.dirname(self.path(rel)) or "/", exist_ok=True)
        self.fs.mv(self.path(tmp), self.path(rel), recursive=True)

    def write_json(self, rel: str, obj: Any) -> None:
        tmp = f"{rel}.tmp-{uuid.uuid4().hex[:8]}"
        self.fs.makedirs(posixpath.dirname(self.path(rel)) or "/", exist_ok=True)
        with self.fs.open(self.path(tmp), "w") as f:
            f.write(redact(json.dumps(obj, indent=2, sort_keys=True, default=str)))
        self.fs.mv(self.path(tmp), self.path(rel))

    def write_parquet(self, rel: str, table: pa.Table) -> None:
        """One small table as one file, written under a temporary name and renamed."""
        tmp = f"{rel}.tmp-{uuid.uuid4().hex[:8]}"
        self.fs.makedirs(posixpath.dirname(self.path(rel)) or "/", exist_ok=True)
        with self.fs.open(self.path(tmp), "wb") as f:
            pq.write_table(table, f)
        self.fs.mv(self.path(tmp), self.path(rel))

    def read_json(self, rel: str) -> Any:
        with self.fs.open(self.path(rel), "r") as f:
            return json.load(f)

    # -- stage outputs: directories of Parquet shards -------------------------------------------
    def shards(self, rel: str) -> list[str]:
        """The committed shards of a stage output, in name order, as paths on ``self.fs``.

        Hand them to Ray Data together with ``arrow_fs()``, and open them with ``self.fs``.
        """
        return sorted(self.fs.glob(self.path(rel) + "/*.parquet"))

    def count_rows(self, rel: str) -> int:
        """Rows in a directory of shards, from the Parquet footers only."""
        total = 0
        for f in self.shards(rel):
            with self.fs.open(f, "rb") as fh:
                total += pq.ParquetFile(fh).metadata.num_rows
        return total

    def read_columns(self, rel: str, columns: list[str]) -> pa.Table:
        """The named columns (those present) of every shard in ``rel``; Parquet projection, so no text is read."""
        tables = []
        for f in self.shards(rel):
            with self.fs.open(f, "rb") as fh:
                pf = pq.ParquetFile(fh)
                tables.append(pf.read(columns=[c for c in columns if c in pf.schema_arrow.names]))
        return pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({})

    def iter_columns(self, rel: str, columns: list[str]) -> Iterator[pa.Table]:
        """The named columns (those present) of ``rel``, one shard at a time: memory of one shard."""
        for f in self.shards(rel):
            with self.fs.open(f, "rb") as fh:
                pf = pq.ParquetFile(fh)
                yield pf.read(columns=[c for c in columns if c in pf.schema_arrow.names])

    def extreme_rows(self, rel: str, by: str, n: int, largest: bool, columns: list[str]) -> pa.Table:
        """The ``n`` rows of ``rel`` with the largest (or smallest) ``by``, with ``columns`` (those present).

        Reads the ``by`` column of each shard, and the other columns only of a shard that holds a
        candidate, so memory stays at one shard whatever the corpus size. Rows whose ``by`` is null
        or NaN are skipped.
        """
        best: pa.Table | None = None
        for f in self.shards(rel):
            with self.fs.open(f, "rb") as fh:
                pf = pq.ParquetFile(fh)
                key = pf.read(columns=[by]).column(by).to_numpy(zero_copy_only=False).astype(np.float64)
                idx = np.flatnonzero(np.isfinite(key))
                idx = idx[np.argsort(-key[idx] if largest else key[idx], kind="stable")[:n]]
                if not len(idx):
                    continue
                part = pf.read(columns=[c for c in dict.fromkeys([by, *columns]) if c in pf.schema_arrow.names]).take(idx)
            best = part if best is None else pa.concat_tables([best, part], promote_options="permissive")
            order = np.argsort(best.column(by).to_numpy(zero_copy_only=False) * (-1 if largest else 1), kind="stable")
            best = best.take(order[:n])
        return best if best is not None else pa.table({})

    def schema(self, rel: str) -> pa.Schema | None:
        """The schema of the first shard in ``rel`` (None when it has none)."""
        files = self.shards(rel)
        if not files:
            return None
        with self.fs.open(files[0], "rb") as fh:
            return pq.read_schema(fh)

    # -- the manifest ---------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        return self.read_json(MANIFEST) if self.exists(MANIFEST) else {"stages": {}}

    def stage_record(self, stage: str) -> dict[str, Any] | None:
        return self.manifest()["stages"].get(stage)

    def stage_done(self, stage: str, fingerprint: str) -> bool:
        rec = self.stage_record(stage)
        return rec is not None and rec.get("fingerprint") == fingerprint

    def record_stage(self, stage: str, fingerprint: str, seconds: float, result: dict[str, Any]) -> dict[str, Any]:
        """Mark a stage complete; its ``token`` changes on every run so downstream stages re-run."""
        m = self.manifest()
        rec = {
            "fingerprint": fingerprint,
            "token": uuid.uuid4().hex[:12],
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(seconds, 2),
            "result": result,
        }
        m["stages"][stage] = rec
        self.write_json(MANIFEST, m)
        return rec
