"""Stage 1, ingest: read, validate and tokenise the corpus and the safety set.

Input files are spread over a Ray Data actor pool (each actor loads the tokenizer once); every
actor streams its files chunk by chunk and writes its own shards, so the driver only ever holds
per-file counts. Usable rows keep every input column plus ``example_id``, ``source_file``,
``source_row`` and the tokens (``input_ids``, ``prompt_len``) that training and scoring reuse;
unusable rows go to the rejected directory with a ``reject_reason``. A second pass over the staged
shards moves every later duplicate of an ``example_id`` to rejected as well (data/duplicates.py).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from pipeline import columns as col
from pipeline.config import Config
from pipeline.data.duplicates import reject_duplicates
from pipeline.data.rows import Usable, as_text, check_row
from pipeline.data.shards import ShardWriter, rejected_schema, write_empty_shard
from pipeline.data.sources import Piece, check_readable, count_lines, number_lines, read_piece, resolve, split_large
from pipeline.errors import ConfigError, InputError, StageError
from pipeline.models.loading import load_tokenizer, resolve_model
from pipeline.runtime import rundir as layout
from pipeline.runtime.redact import redact
from pipeline.runtime.rundir import RunDir
from pipeline.text.formatting import encode_batch


def ingest_piece(
    piece: Piece, index: int, cfg: Config, tokenizer: Any, fs: Any, valid_dir: str, rejected_dir: str
) -> dict[str, int]:
    """Read one file, write its usable and rejected rows as shards, return their counts."""
    d = cfg.data
    prefix = f"part-{index:05d}"
    valid = ShardWriter(fs, valid_dir, prefix, cfg.output.rows_per_file, cfg.output.parquet_compression)
    rejected = ShardWriter(fs, rejected_dir, prefix, cfg.output.rows_per_file, cfg.output.parquet_compression)
    n_rows = 0

    def reject(row: dict[str, Any] | None, n: int, reason: str) -> dict[str, Any]:
        out = {k: as_text(v) for k, v in (row or {}).items()}
        out.update({col.SOURCE_FILE: redact(piece.url), col.SOURCE_ROW: n, col.REJECT_REASON: reason})
        return out

    for chunk in read_piece(piece):
        n_rows += len(chunk)
        usable: list[tuple[int, dict[str, Any], Usable]] = []
        bad: list[dict[str, Any]] = []
        for n, row in chunk:
            if isinstance(row, str):
                bad.append(reject(None, n, row))
                continue
            checked = check_row(row, d)
            if isinstance(checked, str):
                bad.append(reject(row, n, checked))
            else:
                usable.append((n, row, checked))
        encoded = encode_batch(tokenizer, [u.chat for _, _, u in usable], d.max_length, d.overlength == "truncate")
        good: list[dict[str, Any]] = []
        for (n, row, u), enc in zip(usable, encoded):
            if isinstance(enc, str):
                bad.append(reject(row, n, enc))
                continue
            out = dict(row)
            out[d.label_column] = u.label
            out.update({
                col.EXAMPLE_ID: u.example_id, col.SOURCE_FILE: redact(piece.url), col.SOURCE_ROW: n,
                col.INPUT_IDS: np.asarray(enc.input_ids, dtype=np.int32), col.PROMPT_LEN: enc.prompt_len,
            })
            good.append(out)
        valid.add(good)
        rejected.add(bad)
    valid.close()
    rejected.close()
    return {"rows": n_rows, "valid": valid.rows, "rejected": rejected.rows}


PIECE_FIELDS = ("index", "url", "format", "start", "stop", "first_row")


def _items(pieces: list[Piece]) -> list[dict[str, Any]]:
    """Pieces as rows for Ray Data (a stop of -1: to the end)."""
    return [{"index": i, "url": p.url, "format": p.format, "start": p.start, "stop": -1 if p.stop is None else p.stop,
             "first_row": p.first_row} for i, p in enumerate(pieces)]


def _line_counts(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Ray Data UDF: lines in each JSONL part."""
    pieces = [Piece(str(u), "jsonl", int(a), int(b)) for u, a, b in zip(batch["url"], batch["start"], batch["stop"])]
    return {"index": batch["index"], "lines": np.array([count_lines(p) for p in pieces], dtype=np.int64)}


def plan_pieces(files: list[Piece], part_bytes: int) -> list[Piece]:
    """The pieces ingest reads: large files cut into parts, JSONL parts numbered by counting lines
    (in parallel on Ray when the files are reachable from the workers)."""
    import ray

    pieces = split_large(files, part_bytes)
    parts = [it for it in _items(pieces) if it["format"] == "jsonl" and it["stop"] >= 0]
    if not parts:
        return pieces
    if all(p.shared for p in pieces):
        rows = ray.data.from_items(parts, override_num_blocks=len(parts)).map_batches(_line_counts, batch_size=1, num_cpus=0.5).take_all()
        counts = {int(r["index"]): int(r["lines"]) for r in rows}
    else:
        counts = {it["index"]: count_lines(pieces[it["index"]]) for it in parts}
    return number_lines(pieces, counts)


class IngestActor:
    """Ray Data actor: loads the tokenizer once, then ingests the files it is handed."""

    def __init__(self, cfg_json: dict[str, Any], valid_dir: str, rejected_dir: str, out_url: str) -> None:
        self.cfg = Config.model_validate(cfg_json)
        self.tokenizer = load_tokenizer(resolve_model(self.cfg.model.name_or_path), self.cfg.model.trust_remote_code)
        self.run = RunDir(out_url)
        self.valid_dir, self.rejected_dir = valid_dir, rejected_dir

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"index": [], "rows": [], "valid": [], "rejected": [], "error": []}
        for i, url, fmt, start, stop, first in zip(*(batch[k] for k in PIECE_FIELDS)):
            piece = Piece(str(url), str(fmt), int(start), None if int(stop) < 0 else int(stop), int(first))
            try:
                counts = ingest_piece(piece, int(i), self.cfg, self.tokenizer, self.run.fs, self.valid_dir, self.rejected_dir)
                error = ""
            except InputError as err:  # reported by the driver as a one-line error
                counts, error = {"rows": 0, "valid": 0, "rejected": 0}, str(err)
            out["index"].append(int(i))
            out["error"].append(error)
            for k in ("rows", "valid", "rejected"):
                out[k].append(counts[k])
        return out


def ingest_set(cfg: Config, run: RunDir, paths: list[str], valid_rel: str, rejected_rel: str, what: str) -> dict[str, int]:
    """Ingest one dataset (corpus or safety set) into ``valid_rel`` and ``rejected_rel``."""
    import ray

    files = resolve(paths, cfg.data.format)
    pieces = plan_pieces(files, cfg.data.part_bytes)
    valid_tmp, rejected_tmp = run.staging(valid_rel), run.staging(rejected_rel)
    vdir, rdir = run.path(valid_tmp), run.path(rejected_tmp)
    cfg_json = cfg.model_dump(mode="json")
    if all(p.shared for p in pieces):
        items = _items(pieces)
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        results = ds.map_batches(
            IngestActor,
            fn_constructor_kwargs={"cfg_json": cfg_json, "valid_dir": vdir, "rejected_dir": rdir, "out_url": run.url},
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=min(cfg.data.ingest_workers, len(pieces))),
            num_cpus=0.5,
        ).take_all()
    else:  # memory:// and other process-private inputs: read them here, one file at a time
        actor = IngestActor(cfg_json, vdir, rdir, run.url)
        results = []
        for item in _items(pieces):
            b = actor({k: np.array([v]) for k, v in item.items()})
            results += [dict(zip(b, vals)) for vals in zip(*b.values())]
    errors = sorted((r["index"], r["error"]) for r in results if r["error"])
    if errors:
        raise InputError(*errors[0][1].split(": ", 1)) if ": " in errors[0][1] else StageError(errors[0][1])
    totals = {k: int(sum(r[k] for r in results)) for k in ("rows", "valid", "rejected")}
    dups = reject_duplicates(run.fs, vdir, rdir, {redact(p.url): i for i, p in enumerate(files)}, cfg.data.id_column,
                             col.MODEL_INPUTS, cfg.output.rows_per_file, cfg.output.parquet_compression)
    totals["valid"] -= dups
    totals["rejected"] += dups
    totals["duplicates"] = dups
    if totals["rows"] != totals["valid"] + totals["rejected"]:
        raise StageError(f"ingest of {what}: {totals['rows']} rows read but {totals['valid']} + {totals['rejected']} written")
    if totals["valid"] == 0:
        # Nothing to train on, but the user needs the reasons: they are committed before the error.
        why = ""
        if totals["rejected"]:
            reason, n = most_common_reason(run, rejected_tmp)
            run.commit(rejected_tmp, rejected_rel)
            why = f"; most common reason: {reason} ({n} rows); every reason in {run.uri(rejected_rel)}"
        first = paths[0] if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} more)"
        raise InputError(first, f"data.{what} has no usable row ({totals['rows']} read, {totals['rejected']} rejected{why})")
    write_empty_shard(run.fs, rdir, rejected_schema(run.schema(valid_tmp), col.INGEST_ADDED), cfg.output.parquet_compression)
    run.commit(valid_tmp, valid_rel)
    run.commit(rejected_tmp, rejected_rel)
    totals["files"], totals["pieces"] = len(files), len(pieces)
    return totals


def most_common_reason(run: RunDir, rejected_rel: str) -> tuple[str, int]:
    """The reason most rejected rows share, and how many share it (what to fix first)."""
    reasons: Counter[str] = Counter()
    for table in run.iter_columns(rejected_rel, [col.REJECT_REASON]):
        reasons.update(table.column(col.REJECT_REASON).to_pylist())
    return reasons.most_common(1)[0]


def check_inputs(cfg: Config) -> None:
    """Before Ray starts: every input path resolves, every file opens, every Parquet footer parses."""
    for what, paths in (("input", cfg.data.input), ("safety", cfg.data.safety)):
        if not paths:
            raise ConfigError(f"data.{what}: no input given")
        check_readable(resolve(paths, cfg.data.format))


def run_ingest(cfg: Config, run: RunDir) -> dict[str, Any]:
    """Ingest the noisy corpus and the safety set."""
    corpus = ingest_set(cfg, run, cfg.data.input, layout.INGEST, layout.REJECTED, "input")
    safety = ingest_set(cfg, run, cfg.data.safety, layout.SAFETY, layout.SAFETY_REJECTED, "safety")
    return {"corpus": corpus, "safety": safety}
