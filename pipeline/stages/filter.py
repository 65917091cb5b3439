"""Stage 5, filter: pick the cut on the forgetting score and split the scored rows.

The cut is chosen from the score columns alone (read from Parquet without the text: the filter's
score, and for an automatic cut the scores it must be corroborated on), then one
streaming pass per side writes ``kept/`` (score <= cut) and ``dropped/`` (the rest, including any
row whose score is not a number: an unscorable row is not trusted). The invariant
``kept + dropped + rejected = input`` is checked and the stage fails loudly if it breaks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from pipeline import columns as col
from pipeline.config import Config, FilterConfig
from pipeline.data.shards import write_empty_shard
from pipeline.errors import StageError
from pipeline.filtering import prompts, thresholds
from pipeline.filtering.split import kept_mask
from pipeline.filtering.thresholds import REPLY_PROMPTS, SAFETY_PROMPTS, VOTES, Threshold
from pipeline.runtime import rundir as layout
from pipeline.runtime.rundir import RunDir
from pipeline.scoring.scores import REFUSAL


def corroborating_scores(cfg: Config) -> list[str]:
    """The scores an automatic cut must be corroborated on: none for a user-chosen cut, and none
    when the filter's own score is among them (it corroborates itself). ``refusal`` only when the
    score stage wrote it (``scoring.refusals`` > 0). The votes of B's states are no scores (``votes_asked``)."""
    f = cfg.filter
    if f.method != "auto" or cfg.scoring.method in f.corroborate:
        return []
    return [name for name in f.corroborate if name not in VOTES and (name != REFUSAL or cfg.scoring.refusals)]


def votes_asked(cfg: Config) -> list[str]:
    """The votes of B's states (``thresholds.VOTES``) that may corroborate an automatic cut (``filtering.prompts``)."""
    f = cfg.filter
    if f.method != "auto" or cfg.scoring.method in f.corroborate:
        return []
    return [name for name in f.corroborate if name in VOTES]


STATE_COLUMNS = {SAFETY_PROMPTS: col.PROMPT_STATE, REPLY_PROMPTS: col.REPLY_STATE}
"""Each vote's column of row states in the scores; both are compared with the safety set's prompt states."""


def fallback_score(cfg: Config) -> str | None:
    """The score an automatic cut falls back on (``filter.fallback``), unless it is the filter's own."""
    f = cfg.filter
    return f.fallback if f.method == "auto" and f.fallback != cfg.scoring.method else None


def choose_threshold(scores: np.ndarray, f: FilterConfig, others: dict[str, np.ndarray] | None = None,
                     votes: dict[str, Callable[[float], float]] | None = None,
                     fallback: np.ndarray | None = None, extension: Callable[[float], float] | None = None,
                     fallback_votes: dict[str, Callable[[float], float]] | None = None) -> Threshold:
    """The cut the config asks for; an automatic one is checked against the ``others`` scores and the ``votes``
    (name -> a function from a cut value to the share of the cut's rows that vote for the safety prompts);
    a cut the prompt vote backed is moved down by ``extension`` (a function from that cut's value to the
    extended one, ``filtering.prompts.vote_extension``) if ``filter.extend_by_votes``; where the rule found
    no cut, ``fallback`` (the ``filter.fallback`` score's column) may make it, where the rule's cut was withdrawn
    only if one of the ``fallback_votes`` (the same votes, on a cut of that column) backs it. On scores other than
    the filter's own the rule is ``thresholds.ON_OTHER_SCORES``'s where it has one."""
    if f.method == "fixed":
        return thresholds.fixed(float(f.value))
    if f.method == "drop_fraction":
        return thresholds.drop_fraction(scores, float(f.value))
    rule = thresholds.AUTO_METHODS[f.auto_method]
    other = thresholds.ON_OTHER_SCORES.get(f.auto_method, rule)
    t = rule(scores)
    cut = thresholds.proposed_cut(t)
    shares = {name: share(cut) for name, share in (votes or {}).items()} if cut is not None else {}
    t = thresholds.corroborate(t, scores, others or {}, other, shares)
    if extension is not None and f.extend_by_votes and thresholds.extendable(t):
        t = thresholds.extend_by_votes(t, scores, extension(t.value))
    if fallback is None or f.fallback is None:
        return t
    return thresholds.fall_back(t, f.fallback, fallback, other, fallback_votes)


def _state_batches(run: RunDir, name: str, score: str = col.FORGETTING
                   ) -> tuple[Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]], np.ndarray]:
    """For the vote ``name``: a function that streams (``score`` column, states) batches one shard at a time,
    and the safety set's prompt states.

    A run scored before those states were kept has none: the check then fails loudly rather than
    quietly skipping a safeguard the config asks for.
    """
    column, have = STATE_COLUMNS[name], run.schema(layout.SCORES)
    if have is None or column not in have.names or not run.exists(layout.SAFETY_SCORES):
        raise StageError(f"filter: filter.corroborate asks for {name}, but this run's scores have no {column} column "
                         "(scored by an older version or another config): remove work/scores and work/safety_scores "
                         "and run again")
    safety = _states(run.read_columns(layout.SAFETY_SCORES, [col.PROMPT_STATE]), col.PROMPT_STATE)

    def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return ((t.column(score).to_numpy(zero_copy_only=False), _states(t, column))
                for t in run.iter_columns(layout.SCORES, [score, column]))

    return batches, safety


def state_share(run: RunDir, name: str, score: str = col.FORGETTING) -> Callable[[float], float]:
    """``choose_threshold``'s vote ``name`` for a run, on cuts of the ``score`` column, from the scores' states
    (``_state_batches``)."""
    batches, safety = _state_batches(run, name, score)
    return lambda value: prompts.cut_share(batches(), value, safety)


def state_extension(run: RunDir) -> Callable[[float], float]:
    """``choose_threshold``'s ``extension`` for a run: ``prompts.vote_extension`` on the rows' prompt states."""
    batches, safety = _state_batches(run, SAFETY_PROMPTS)
    return lambda value: prompts.vote_extension(batches, value, safety)


def _states(t: pa.Table, column: str) -> np.ndarray:
    """A fixed-size-list column of states as a [rows, k] float array."""
    c = t.column(column).combine_chunks()
    return c.flatten().to_numpy(zero_copy_only=False).reshape(len(c), -1)


def _side(t: Threshold, keep: bool):  # noqa: ANN202 - a Ray Data UDF
    def split(batch: pa.Table) -> pa.Table:
        kept = kept_mask(batch, t)
        out = batch.filter(kept if keep else pc.invert(kept))
        return out.drop_columns([c for c in col.INTERNAL if c in out.column_names])

    return split


def run_filter(cfg: Config, run: RunDir) -> dict[str, Any]:
    """Stage ``filter``: choose the cut, write kept/ and dropped/, check that no row was lost."""
    import ray

    input_rows = run.stage_record("ingest")["result"]["corpus"]["rows"]
    others, fallback = corroborating_scores(cfg), fallback_score(cfg)
    needed = {col.FORGETTING, *(col.score_column(name) for name in [*others, *([fallback] if fallback else [])])}
    table = run.read_columns(layout.SCORES, sorted(needed))
    numbers = {c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names}
    t = choose_threshold(numbers[col.FORGETTING], cfg.filter, {name: numbers[col.score_column(name)] for name in others},
                         {name: state_share(run, name) for name in votes_asked(cfg)},
                         numbers[col.score_column(fallback)] if fallback else None,
                         state_extension(run) if SAFETY_PROMPTS in votes_asked(cfg) else None,
                         {name: state_share(run, name, col.score_column(fallback)) for name in votes_asked(cfg)}
                         if fallback else None)
    files = run.shards(layout.SCORES)
    if t.ties_to_drop:
        # Only the ids of the rows tied at the cut are read (a pushed-down filter), never all ids.
        tied = ds.dataset(files, filesystem=run.arrow_fs(), format="parquet").to_table(
            columns=[col.EXAMPLE_ID], filter=pc.field(col.FORGETTING) == t.value)
        t = replace(t, tie_id=thresholds.break_ties(tied.column(col.EXAMPLE_ID).to_pylist(), t.ties_to_drop))
    schema = pa.schema([f for f in run.schema(layout.SCORES) if f.name not in col.INTERNAL])
    counts: dict[str, int] = {}
    for rel, keep in ((layout.KEPT, True), (layout.DROPPED, False)):
        tmp = run.staging(rel)
        data = ray.data.read_parquet(files, filesystem=run.arrow_fs())
        data.map_batches(_side(t, keep), batch_format="pyarrow", batch_size=None).write_parquet(
            run.path(tmp), filesystem=run.arrow_fs(), **cfg.output.shard_options
        )
        write_empty_shard(run.fs, run.path(tmp), schema, cfg.output.parquet_compression)
        counts[rel] = run.count_rows(tmp)
        run.commit(tmp, rel)
    rejected = run.count_rows(layout.REJECTED)
    total = counts[layout.KEPT] + counts[layout.DROPPED] + rejected
    if total != input_rows:
        raise StageError(f"filter: kept {counts[layout.KEPT]} + dropped {counts[layout.DROPPED]} + rejected "
                         f"{rejected} = {total}, but the input had {input_rows} rows")
    return {"threshold": t.to_dict(), "kept": counts[layout.KEPT], "dropped": counts[layout.DROPPED],
            "rejected": rejected, "input": input_rows}
