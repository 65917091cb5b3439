"""The filter stage's split and the report's review list, on small tables (no Ray)."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import columns as col
from pipeline.config import build_config
from pipeline.errors import ConfigError, StageError
from pipeline.filtering import prompts, split, thresholds
from pipeline.filtering.thresholds import REPLY_PROMPTS, SAFETY_PROMPTS
from pipeline.reporting.metrics import auroc
from pipeline.runtime.rundir import RunDir
from pipeline.scoring.scores import compute_scores
from pipeline.stages.filter import (
    _side,
    choose_threshold,
    corroborating_scores,
    fallback_score,
    state_extension,
    state_share,
    votes_asked,
)
from pipeline.stages.report import evaluate, nearest_cut, other_cuts, summarise
from tests.conftest import real_run_states


def _scored(scores: list[float]) -> pa.Table:
    n = len(scores)
    return pa.table({col.EXAMPLE_ID: [f"id-{i:03d}" for i in range(n)], col.FORGETTING: pa.array(scores, pa.float64()),
                     "prompt": [f"p{i}" for i in range(n)], "response": [f"r{i}" for i in range(n)],
                     col.SOURCE_FILE: ["f.jsonl"] * n, col.SOURCE_ROW: list(range(n))})


@pytest.mark.parametrize("fraction", [0.1, 0.35, 0.5])
def test_tied_scores_split_into_exactly_the_requested_count(fraction):
    scores = [0.5] * 60 + [0.9] * 20 + [float("nan")] * 3 + [0.1] * 17
    table = _scored(scores)
    t = thresholds.drop_fraction(np.array(scores), fraction)
    if t.ties_to_drop:
        at = [i for i, s in zip(table.column(col.EXAMPLE_ID).to_pylist(), scores) if s == t.value]
        t = thresholds.Threshold(t.value, t.method, t.rationale, ties_to_drop=t.ties_to_drop,
                                 tie_id=thresholds.break_ties(at, t.ties_to_drop))
    # Two batches, as Ray Data hands them over: the tie-break must not depend on the batching.
    kept = pa.concat_tables([_side(t, True)(table.slice(0, 41)), _side(t, True)(table.slice(41))])
    dropped = pa.concat_tables([_side(t, False)(table.slice(0, 41)), _side(t, False)(table.slice(41))])
    assert kept.num_rows + dropped.num_rows == 100
    assert dropped.num_rows == int(fraction * 97) + 3  # the finite rows asked for, plus the 3 unscorable
    assert set(kept.column(col.EXAMPLE_ID).to_pylist()).isdisjoint(dropped.column(col.EXAMPLE_ID).to_pylist())


def test_the_review_list_holds_the_rows_nearest_the_cut_across_shards(tmp_path):
    run = RunDir(str(tmp_path))
    kept, dropped = [0.1, 0.45, float("nan"), 0.2, 0.44], [0.9, 0.55, 0.7, 0.51]
    for rel, scores in (("kept", kept), ("dropped", dropped)):
        (tmp_path / rel).mkdir()
        t = _scored(scores)
        pq.write_table(t.slice(0, 2), tmp_path / rel / "a.parquet")
        pq.write_table(t.slice(2), tmp_path / rel / "b.parquet")
    cfg = build_config({}, [])
    rows = nearest_cut(run, cfg, col.FORGETTING)
    assert [r["score"] for r in rows if r["side"] == "kept"] == [0.45, 0.44, 0.2, 0.1]
    assert [r["score"] for r in rows if r["side"] == "dropped"] == [0.9, 0.7, 0.55, 0.51]
    first = next(r for r in rows if r["score"] == 0.45)
    assert first["text"] == "p1 -> r1" and first["source_row"] == 1
    top = run.extreme_rows("kept", col.FORGETTING, 2, True, [col.EXAMPLE_ID])
    assert top.column(col.FORGETTING).to_pylist() == [0.45, 0.44]


def test_the_report_streams_shards_yet_its_label_metrics_are_exact(tmp_path):
    run = RunDir(str(tmp_path))
    rng = np.random.default_rng(0)
    score = np.concatenate([rng.normal(0, 0.2, 300), rng.normal(1, 0.3, 60), [np.nan]])
    label = np.array([0] * 300 + [1] * 60 + [1], dtype=float)
    label[::7] = np.nan  # unlabelled rows: in the plot, not in the metrics
    dropped = ~(score <= 0.5)
    for rel, side in (("kept", ~dropped), ("dropped", dropped)):
        (tmp_path / rel).mkdir()
        n = int(side.sum())
        t = _scored(list(score[side])).append_column(col.LOSS_A, pa.array(np.ones(n))).append_column(col.LOSS_B, pa.array(np.ones(n)))
        t = t.append_column("label", pa.array([None if np.isnan(v) else int(v) for v in label[side]], pa.int64()))
        for i, part in enumerate(np.array_split(np.arange(n), 3)):
            pq.write_table(t.take(part), tmp_path / rel / f"{i}.parquet")
    stats, labelled, (edges, counts) = summarise(run, build_config({}, []), col.FORGETTING)
    has = ~np.isnan(label)
    assert labelled.num_rows == has.sum()
    assert counts["all"].sum() == np.isfinite(score).sum() == counts["task"].sum() + counts["unsafe"].sum() + counts["unlabelled"].sum()
    assert counts["unlabelled"].sum() == (~has & np.isfinite(score)).sum()
    assert stats["score_stats"]["mean"] == pytest.approx(np.nanmean(score))
    assert edges[0] == np.nanmin(score) and edges[-1] == np.nanmax(score)
    ev = evaluate(labelled, build_config({}, []))
    assert ev["auroc_forgetting"] == pytest.approx(auroc(score[has], label[has]))
    assert ev["tp"] == int((dropped & has & (label == 1)).sum())


def test_only_an_automatic_cut_on_another_score_is_corroborated():
    both = "filter.corroborate=[delta, seq_logprob_drop]"
    assert corroborating_scores(build_config({})) == []  # the default asks only B's votes
    assert corroborating_scores(build_config({}, [both])) == ["delta", "seq_logprob_drop"]
    three = "filter.corroborate=[delta, seq_logprob_drop, refusal]"
    assert corroborating_scores(build_config({}, [three, "scoring.refusals=4"])) == ["delta", "seq_logprob_drop", "refusal"]
    # With no refusal pass the score stage writes no `refusal` column, so it cannot be asked for.
    assert corroborating_scores(build_config({}, [three])) == ["delta", "seq_logprob_drop"]
    assert corroborating_scores(build_config({}, [both, "scoring.method=delta"])) == []  # it corroborates itself
    assert corroborating_scores(build_config({}, ["filter.corroborate=[]"])) == []
    fixed = build_config({}, [both, "filter.method=fixed", "filter.value=0.5"])
    assert corroborating_scores(fixed) == []
    x = np.r_[np.random.default_rng(0).normal(0.0, 0.05, 240), np.random.default_rng(1).normal(1.0, 0.05, 60)]
    flat = {"delta": np.random.default_rng(2).normal(0.0, 1.0, 300)}
    assert choose_threshold(x, fixed.filter, flat).value == 0.5
    auto = build_config({}, [both]).filter
    assert np.isfinite(choose_threshold(x, auto).value)
    assert not np.isfinite(choose_threshold(x, auto, flat).value)
    with pytest.raises(ConfigError, match="filter.corroborate"):
        build_config({}, ["filter.corroborate=[rouge]"])


def test_the_votes_of_bs_states_corroborate_only_an_automatic_cut_that_asks_for_them():
    assert SAFETY_PROMPTS in votes_asked(build_config({}))  # the default
    asked = build_config({}, ["filter.corroborate=[delta, safety_prompts]"])
    assert votes_asked(asked) == [SAFETY_PROMPTS] and corroborating_scores(asked) == ["delta"]  # no score column of that name
    both = build_config({}, ["filter.corroborate=[reply_prompts, safety_prompts]"])
    assert votes_asked(both) == [REPLY_PROMPTS, SAFETY_PROMPTS] and corroborating_scores(both) == []
    assert not votes_asked(build_config({}, ["filter.corroborate=[delta]"]))
    assert not votes_asked(build_config({}, ["filter.corroborate=[safety_prompts]", "filter.method=fixed", "filter.value=1"]))
    x = np.r_[np.random.default_rng(0).normal(0.0, 0.05, 240), np.random.default_rng(1).normal(1.0, 0.05, 60)]
    flat = {"delta": np.random.default_rng(2).normal(0.0, 1.0, 300)}
    seen = []

    def nearer(value: float) -> float:
        seen.append(value)
        return 0.8

    t = choose_threshold(x, asked.filter, flat, {SAFETY_PROMPTS: nearer})
    assert np.isfinite(t.value) and seen == [t.value]  # asked about the very cut it keeps
    assert not np.isfinite(choose_threshold(x, asked.filter, flat, {SAFETY_PROMPTS: lambda _: 0.2}).value)
    # A cut the rule held back as too weak on the scores' shape is asked about too.
    r = np.random.default_rng(0)
    few = np.r_[r.normal(0.05, 0.05, 15), r.normal(0.35, 0.08, 5)]
    seen.clear()
    t = choose_threshold(few, asked.filter, {}, {SAFETY_PROMPTS: nearer})
    assert np.isfinite(t.value) and seen == [t.value]
    assert not np.isfinite(choose_threshold(few, asked.filter, {}).value)


def test_only_a_cut_the_prompt_vote_backed_is_extended_and_only_when_the_config_asks():
    x = np.r_[np.random.default_rng(0).normal(0.0, 0.05, 240), np.random.default_rng(1).normal(1.0, 0.05, 60)]
    default = build_config({}).filter
    asked = []

    def extension(value: float) -> float:
        asked.append(value)
        return 0.1

    t = choose_threshold(x, default, {}, {SAFETY_PROMPTS: lambda _: 0.9, REPLY_PROMPTS: lambda _: 0.1}, None, extension)
    assert t.value == 0.1 and len(asked) == 1 and asked[0] > 0.1
    assert t.evidence[thresholds.CUT_BEFORE_EXTENSION] == asked[0] and "extended down by the prompt vote" in t.rationale
    assert t.evidence[thresholds.ROWS_ADDED_BY_VOTES] == int(((x > 0.1) & (x <= asked[0])).sum()) > 0
    assert other_cuts(t.to_dict()) == {"cut before the vote extension": asked[0]}  # marked on the report's histogram
    off = build_config({}, ["filter.extend_by_votes=false"]).filter
    assert choose_threshold(x, off, {}, {SAFETY_PROMPTS: lambda _: 0.9}, None, extension).value == asked[0]
    # Backed by the reply vote alone, or not backed: the cut is not the prompt vote's to move.
    asked.clear()
    replies = choose_threshold(x, default, {}, {SAFETY_PROMPTS: lambda _: 0.2, REPLY_PROMPTS: lambda _: 0.9}, None, extension)
    assert np.isfinite(replies.value) and not asked
    withdrawn = choose_threshold(x, default, {}, {SAFETY_PROMPTS: lambda _: 0.2}, None, extension)
    assert not np.isfinite(withdrawn.value) and not asked
    assert other_cuts(withdrawn.to_dict()) == {"withdrawn cut": withdrawn.evidence[thresholds.WITHDRAWN_CUT]}
    # An extension that finds no better cut leaves the value and says so.
    stays = choose_threshold(x, default, {}, {SAFETY_PROMPTS: lambda _: 0.9}, None, lambda value: value)
    assert thresholds.CUT_BEFORE_EXTENSION not in stays.evidence and "the cut stays" in stays.rationale


def test_the_fallback_score_is_cut_without_the_third_component():
    # On another score (the fallback's `delta`) a task sub-type can separate in absolute nats, so the rule there is
    # the two-component one (thresholds.ON_OTHER_SCORES): on unsafe rows in two groups it cuts the far one alone,
    # where on the filter's own score a third component takes the near one too.
    r = np.random.default_rng(0)
    one_mode = r.normal(0.1, 0.05, 320)
    delta = np.r_[r.normal(0.05, 0.04, 160), r.normal(0.4, 0.01, 80), r.normal(0.8, 0.01, 80)]
    t = choose_threshold(one_mode, build_config({}, ["filter.corroborate=[]"]).filter, {}, None, delta)
    assert t.score == "delta" and (delta > t.value).sum() == 80
    assert (delta > thresholds.mixture(delta).value).sum() == 160


def test_where_the_filters_own_score_drops_nothing_the_fallback_score_may_cut_a_minority():
    # Unsafe replies to ordinary prompts: log_ratio shows one mode, delta a clear upper group of 60 of 300.
    r = np.random.default_rng(0)
    one_mode = r.normal(0.1, 0.05, 300)
    delta = np.r_[r.normal(0.0, 0.05, 240), r.normal(1.0, 0.05, 60)]
    cfg = build_config({}, ["filter.fallback=delta", "filter.corroborate=[]"])
    assert fallback_score(cfg) == "delta"
    assert fallback_score(build_config({}, ["filter.fallback=delta", "scoring.method=delta"])) is None
    assert fallback_score(build_config({})) == "delta"  # the default
    assert fallback_score(build_config({}, ["filter.fallback=null"])) is None
    t = choose_threshold(one_mode, cfg.filter, {}, None, delta)
    assert t.score == "delta" and (delta > t.value).sum() == 60 and "Fallback" in t.rationale
    assert np.isinf(choose_threshold(one_mode, cfg.filter).value)  # no fallback column given, no fallback
    # A cut on the filter's own score is left alone.
    own = np.r_[r.normal(0.0, 0.05, 270), r.normal(1.0, 0.05, 30)]
    assert choose_threshold(own, cfg.filter, {}, None, delta).score is None
    # Where the filter's own cut was withdrawn, the fallback's cut must pass the votes too: its own rows are asked.
    default = build_config({}, ["filter.fallback=delta"]).filter
    no = {SAFETY_PROMPTS: lambda _: 0.0}
    withdrawn = choose_threshold(own, default, {}, no, delta)
    assert np.isinf(withdrawn.value) and "withdrawn_cut" in withdrawn.evidence and withdrawn.score is None
    asked = []

    def backs(value: float) -> float:
        asked.append(value)
        return 0.9

    backed = choose_threshold(own, default, {}, no, delta, None, {SAFETY_PROMPTS: backs})
    assert backed.score == "delta" and (delta > backed.value).sum() == 60 and asked == [backed.value]
    assert backed.evidence[f"fallback_{thresholds.SHARE_NEARER_SAFETY}"] == 0.9 and "withdrawn_cut" in backed.evidence
    assert other_cuts(backed.to_dict()) == {}  # its histogram is of delta: the withdrawn log_ratio cut is not marked
    refused = choose_threshold(own, default, {}, no, delta, None, {SAFETY_PROMPTS: lambda _: 0.4})
    assert np.isinf(refused.value) and refused.evidence[f"fallback_{thresholds.SHARE_NEARER_SAFETY}"] == 0.4
    assert "not backed either" in refused.rationale
    # A majority upper group on the fallback score (a task sub-type B forgot) is not cut.
    majority = np.r_[r.normal(0.0, 0.05, 120), r.normal(1.0, 0.05, 180)]
    held = choose_threshold(one_mode, cfg.filter, {}, None, majority)
    assert np.isinf(held.value) and held.evidence["fallback_rows_on_delta"] == 180
    # The split and the report read the column the cut is on.
    table = _scored(list(one_mode)).append_column(col.score_column("delta"), pa.array(delta))
    dropped = _side(t, False)(table)
    assert dropped.num_rows == 60 and min(dropped.column(col.score_column("delta")).to_pylist()) > t.value
    assert split.threshold_from_record(t.to_dict()).score == "delta"


def _states_column(x: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1).astype(np.float32)), x.shape[1])


def test_each_vote_reads_its_own_states_and_a_run_without_them_stops_with_one_line(tmp_path):
    # Unsafe replies after ordinary prompts: the cut's prompts lie with the kept rows', its replies with the safety prompts.
    r = np.random.default_rng(0)
    safety = r.normal(3.0, 0.3, (20, 8))
    forgetting = np.r_[np.zeros(40), np.ones(10)]
    prompt = r.normal(0.0, 0.3, (50, 8))
    reply = np.r_[r.normal(0.0, 0.3, (40, 8)), r.normal(3.0, 0.3, (10, 8))]
    run = RunDir(str(tmp_path))
    for rel in ("work/scores", "work/safety_scores"):
        (tmp_path / rel).mkdir(parents=True)
    pq.write_table(pa.table({"prompt_state": _states_column(safety)}), tmp_path / "work/safety_scores/a.parquet")
    t = pa.table({col.FORGETTING: forgetting, col.PROMPT_STATE: _states_column(prompt)})
    pq.write_table(t, tmp_path / "work/scores/a.parquet")
    assert state_share(run, SAFETY_PROMPTS)(0.5) == 0.0
    with pytest.raises(StageError, match="reply_prompts.*no reply_state column") as err:
        state_share(run, REPLY_PROMPTS)
    assert "\n" not in str(err.value)
    pq.write_table(t.append_column(col.REPLY_STATE, _states_column(reply)), tmp_path / "work/scores/a.parquet")
    assert state_share(run, REPLY_PROMPTS)(0.5) == 1.0 and state_share(run, SAFETY_PROMPTS)(0.5) == 0.0
    # The extension reads the prompt states: below a cut at 1.5 the ten unsafe rows' prompts vote with the kept rows'.
    assert state_extension(run)(1.5) == 1.5


@pytest.mark.parametrize("run, unsafe_dropped, task_dropped", [
    ("calendar-10pct-varied-320rows-seed15-defaults-safety80", 31, 0),  # 32 unsafe rows
    ("calendar-00pct-varied-320rows-seed12-defaults-safety80", 0, 0),  # clean: delta's cut of 70 rows is refused
])
def test_after_a_withdrawn_cut_on_a_real_calendar_corpus_the_fallback_must_pass_the_votes(run, unsafe_dropped, task_dropped):
    # Both real: log_ratio's cut takes a calendar sub-type the safety finetune disturbed and is withdrawn;
    # delta then cuts the unsafe rows alone (10%) or that sub-type again (clean), and the votes tell which.
    d = real_run_states(run)
    s = {k.removeprefix("score_"): v for k, v in compute_scores(d["loss_a"], d["loss_b"], d["n_tokens"]).items()}
    columns = {SAFETY_PROMPTS: d["prompt_state"], REPLY_PROMPTS: d["reply_state"]}
    safety = d["safety_prompt_states"]

    def votes(x: np.ndarray) -> dict:
        return {n: (lambda v, c=c: prompts.cut_share([(x, c)], v, safety)) for n, c in columns.items()}

    t = choose_threshold(s["log_ratio"], build_config({}).filter, {}, votes(s["log_ratio"]), s["delta"], None, votes(s["delta"]))
    assert thresholds.WITHDRAWN_CUT in t.evidence
    drop = s[t.score or "log_ratio"] > t.value
    y = d["label"]
    assert int((drop & y).sum()) == unsafe_dropped and int((drop & ~y).sum()) == task_dropped
