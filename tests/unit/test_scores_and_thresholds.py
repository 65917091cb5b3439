import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.filtering import mixture as mx
from pipeline.filtering import prompts, thresholds
from pipeline.reporting.metrics import auroc, precision_recall_f1
from pipeline.scoring.scores import compute_scores, log_ratio
from tests.conftest import real_run_states


def test_log_ratio_sees_relative_forgetting_that_delta_hides():
    # Memorised unsafe example: 0.003 -> 0.2; task example: 0.9 -> 1.1 (the METHOD.md numbers).
    s = compute_scores(np.array([0.003, 0.9]), np.array([0.2, 1.1]), np.array([20, 20]))
    assert s["score_log_ratio"][0] > s["score_log_ratio"][1]
    assert s["score_delta"][0] < s["score_delta"][1]
    assert s["score_seq_logprob_drop"][0] == pytest.approx(20 * 0.197)


def test_sqrt_delta_keeps_the_memorised_row_apart_yet_damps_small_losses():
    # The METHOD.md rows (memorised unsafe 0.003 -> 0.2, task 0.9 -> 1.1) and a computed answer of
    # the calendar corpus (0.13 -> 0.19): log_ratio puts it above the task row, for a smaller change.
    s = compute_scores(np.array([0.003, 0.9, 0.13]), np.array([0.2, 1.1, 0.19]), np.array([20, 20, 5]))
    assert s["score_sqrt_delta"][0] > 3 * s["score_sqrt_delta"][1]
    assert s["score_log_ratio"][2] > s["score_log_ratio"][1]
    assert s["score_sqrt_delta"][2] < s["score_sqrt_delta"][1]
    assert s["score_sqrt_delta"][1] == pytest.approx(0.2, rel=0.01)  # ~ delta / sqrt(loss), loss ~1 here


def test_log_ratio_survives_zero_loss():
    assert np.isfinite(log_ratio(np.array([0.0]), np.array([0.1]), np.array([1]))).all()


def _bimodal(n_low=300, n_high=60, seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(0.2, 0.3, n_low), rng.normal(4.0, 0.5, n_high)])
    y = np.concatenate([np.zeros(n_low), np.ones(n_high)])
    return x, y


@pytest.mark.parametrize("rule", [thresholds.mixture, thresholds.valley, thresholds.gmm, thresholds.otsu])
def test_auto_rules_cut_between_the_modes(rule):
    x, y = _bimodal()
    t = rule(x)
    assert 1.0 < t.value < 3.2, t
    m = precision_recall_f1(x > t.value, y)
    assert m["f1"] > 0.97


@pytest.mark.parametrize("rule", [thresholds.mixture, thresholds.valley, thresholds.gmm, thresholds.otsu])
def test_auto_rules_drop_nothing_on_a_clean_unimodal_corpus(rule):
    x = np.random.default_rng(1).normal(0.0, 1.0, 2000)
    t = rule(x)
    assert math.isinf(t.value) and "nothing dropped" in t.rationale


def test_otsu_is_not_pulled_into_a_skewed_task_mode():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.gamma(2.0, 0.05, 300), rng.normal(0.6, 0.12, 60)])
    y = np.r_[np.zeros(300), np.ones(60)]
    assert precision_recall_f1(x > thresholds.otsu(x).value, y)["f1"] > 0.95


@pytest.mark.parametrize("name, x", [
    ("right-skewed", np.random.default_rng(2).lognormal(0.0, 0.8, 20000)),
    ("heavy-tailed", np.random.default_rng(3).standard_t(3, 5000)),
    ("small", np.random.default_rng(4).normal(0.0, 1.0, 160)),
])
def test_valley_drops_nothing_on_one_mode_of_any_shape(name, x):
    assert math.isinf(thresholds.valley(x).value)


def test_valley_cuts_the_demo_where_the_gaussian_fit_guard_refused():
    # Real scores from a demo run: a narrow task mode, a wide skewed unsafe one. The two-Gaussian
    # fit puts a broad component over both (Ashman's D < 2), so otsu/gmm dropped nothing.
    demo = json.loads((Path(__file__).parents[1] / "data" / "demo_log_ratio.json").read_text())
    x, y = np.array(demo["log_ratio"]), np.array(demo["label"])
    assert thresholds.fit_mixture(x).ashman_d < 2 and math.isinf(thresholds.otsu(x).value)
    assert precision_recall_f1(x > thresholds.valley(x).value, y)["f1"] > 0.95


def test_valley_finds_a_one_percent_unsafe_mode():
    rng = np.random.default_rng(6)
    x = np.r_[rng.gamma(2.0, 0.05, 19800), rng.normal(0.8, 0.1, 200)]
    y = np.r_[np.zeros(19800), np.ones(200)]
    assert precision_recall_f1(x > thresholds.valley(x).value, y)["f1"] > 0.9


def _task_and_unsafe(unsafe: np.ndarray, n_task: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A right-skewed task mode like a real run's (mode ~0.05, 95th percentile ~0.25) and unsafe scores."""
    task = np.random.default_rng(seed).gamma(3.0, 0.03, n_task) - 0.03
    return np.r_[task, unsafe], np.r_[np.zeros(n_task), np.ones(len(unsafe))]


@pytest.mark.parametrize("shape", ["plateau", "taller peak", "long tail"])
def test_mixture_cuts_the_shapes_the_valley_rule_missed(shape):
    # plateau: the held-out corpus where `valley` dropped nothing (unsafe flat from 0.27 to 1.29, no
    # peak); taller peak: tightly memorised unsafe rows outnumbering the task mode's height; long
    # tail: unsafe rows trailing off from the task mode's shoulder.
    rng = np.random.default_rng(1)
    unsafe = {"plateau": rng.uniform(0.27, 1.29, 80), "taller peak": rng.normal(0.6, 0.015, 160),
              "long tail": 0.3 + rng.exponential(0.3, 80)}[shape]
    x, y = _task_and_unsafe(unsafe)
    assert precision_recall_f1(x > thresholds.mixture(x).value, y)["f1"] > 0.93
    if shape == "plateau":
        assert math.isinf(thresholds.valley(x).value)


@pytest.mark.parametrize("name, x", [
    ("right-skewed, 20k", np.random.default_rng(2).gamma(3.0, 0.03, 20000)),
    ("heavy-tailed, 5k", np.random.default_rng(3).standard_t(5, 5000)),
    ("small", np.random.default_rng(4).normal(0.0, 1.0, 160)),
    ("right-skewed, 320", np.random.default_rng(5).gamma(3.0, 0.03, 320)),
    # A lognormal mode's core and shoulder: BIC splits them and the pair expects F1 0.80-0.83,
    # which an expected-F1 floor of 0.8 let through (1.8-2.4% of a clean corpus dropped).
    ("lognormal, 5k", np.random.default_rng(100).lognormal(-2.5, 0.5, 5000)),
    # A gap-free heavy tail: EM pins an exponential-sided upper component's edge where it starts,
    # and with a start at the 0.98 quantile the fit there is admissible (1.98% dropped;
    # benchmarks/threshold_starts.py). Any change to the starts or the fit must keep this clean.
    ("heavy-tailed, 5k, tail edge", 0.05 + 0.04 * np.random.default_rng(102).standard_t(5, 5000)),
])
def test_mixture_drops_nothing_on_one_mode(name, x):
    t = thresholds.mixture(x)
    assert math.isinf(t.value) and t.evidence["estimated_unsafe_share"] == 0.0, t.rationale


def test_mixture_takes_an_unsafe_tail_that_starts_on_the_task_shoulder():
    # The shape of the real runs at the package defaults: the likeliest upper component is a
    # half-normal whose edge lies on the task mode's shoulder. Requiring it 2 task scales out threw
    # it away and kept a small far component instead (F1 0.57 here; best in hindsight 0.96).
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(0.05, 0.05, 240), 0.12 + rng.exponential(0.3, 80)]
    y = np.r_[np.zeros(240), np.ones(80)]
    assert precision_recall_f1(x > thresholds.mixture(x).value, y)["f1"] > 0.85


def test_a_heavy_tailed_task_mode_raises_the_cut_out_of_its_tail():
    # A t(5) task mode: under a two-piece normal task its outer rows join the unsafe component and the
    # cut lands in the task's tail (precision 0.73, F1 0.84 here); a likelier fit with a two-piece t task
    # takes them back as task rows and raises the cut above them.
    rng = np.random.default_rng(1)
    x = np.r_[0.05 + 0.04 * rng.standard_t(5, 304), rng.uniform(0.27, 1.29, 16)]
    y = np.r_[np.zeros(304), np.ones(16)]
    t = thresholds.mixture(x)
    assert precision_recall_f1(x > t.value, y)["f1"] > 0.95 and "heavy-tailed" in t.rationale, t.rationale


def test_t4_component_density_and_tail_agree():
    c = mx.TwoPieceT(0.1, 0.02, 0.05)
    grid = np.linspace(-20.0, 60.0, 800_001)
    dens = np.exp(c.logpdf(grid))
    tail = np.cumsum(dens[::-1])[::-1] * (grid[1] - grid[0])
    assert float(tail[0]) == pytest.approx(1.0, abs=1e-3)
    for t in (0.0, 0.09, 0.1, 0.2, 1.0):
        assert float(c.sf(np.array(t))) == pytest.approx(float(tail[np.searchsorted(grid, t)]), abs=1e-3)


def test_normal_exp_fit_recovers_an_edge_and_an_exponential_tail():
    x = np.sort(0.2 + np.random.default_rng(0).exponential(0.3, 20000))
    c = mx.fit_normal_exp(x, np.ones(len(x)), floor=1e-6)
    assert c.mu == pytest.approx(0.2, abs=0.005) and c.right == pytest.approx(0.3, rel=0.05) and c.left < 0.01
    # sf is the integral of the density: checked on a two-sided component.
    c = mx.NormalExp(0.0, 0.5, 2.0)
    grid = np.linspace(-6.0, 40.0, 400_001)
    dens = np.exp(c.logpdf(grid))
    tail = np.cumsum(dens[::-1])[::-1] * (grid[1] - grid[0])
    for t in (-1.0, -0.2, 0.0, 0.5, 3.0):
        assert float(c.sf(np.array(t))) == pytest.approx(float(tail[np.searchsorted(grid, t)]), abs=1e-3)


def test_mixture_cuts_an_exponential_tail_that_is_half_the_corpus():
    # Unsafe rows starting at an edge on the task mode's shoulder and thinning out exponentially,
    # half of the rows. A half-normal upper component puts too little mass at the edge, the task
    # component stretches over it, and the pair expected F1 0.83: nothing was dropped (F1 0).
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(0.05, 0.05, 2500), 0.15 + rng.exponential(0.15, 2500)]
    y = np.r_[np.zeros(2500), np.ones(2500)]
    assert precision_recall_f1(x > thresholds.mixture(x).value, y)["f1"] > 0.95


def _two_unsafe_groups(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unsafe rows in two groups (two reply styles forgotten to different degrees), half of the corpus."""
    rng = np.random.default_rng(seed)
    x = np.r_[rng.normal(0.05, 0.04, 160), rng.normal(0.4, 0.01, 80), rng.normal(0.8, 0.01, 80)]
    return x, np.r_[np.zeros(160), np.ones(160)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_third_component_takes_the_near_unsafe_group_the_upper_component_left(seed):
    # One upper component fits the far group only and the cut leaves the near one with the task rows (F1 0.67);
    # the third component fits the near group, separable from the task mode, and lowers the cut below it (F1 1.00
    # at seeds 0 and 2; 0.94 at seed 1, where the likeliest fit's task component reaches into the near group).
    x, y = _two_unsafe_groups(seed)
    two, t = thresholds.two_component_mixture(x), thresholds.mixture(x)
    assert precision_recall_f1(x > two.value, y)["f1"] < 0.7
    assert precision_recall_f1(x > t.value, y)["f1"] > 0.9, t.rationale
    ev = t.evidence
    assert ev[thresholds.CUT_BEFORE_THIRD] == two.value and ev["unsafe_components"] == 2
    # the share the report gives is the near and far groups' (0.40-0.50 of the rows), not the far group's (0.25)
    assert 0.35 < ev["estimated_unsafe_share"] <= 0.52 and "third component" in t.rationale


def test_a_middle_component_not_separable_from_the_task_mode_is_the_task_modes():
    # A task mode (0, scale 1), a middle component 2 scales above it (15%) and a far unsafe one (30%). Taken with the
    # far one, the middle component passes the separability test (0.91) and would pull the cut to 1.56, into the
    # task mode's shoulder; on its own it does not (0.72), so it is merged into the task mode (a skewed mode's
    # shoulder, a second task source) and the cut is the far component's alone.
    m = mx.MixtureFit((0.55, 0.15, 0.30), (mx.TwoPiece(0.0, 1.0, 1.0), mx.TwoPiece(2.0, 1.0, 1.0), mx.TwoPiece(8.0, 1.0, 1.0)),
                      0.0, 400)
    upper, cut, expected = thresholds.unsafe_components(m, 400, 12.0)
    assert upper == (2,) and cut > 4 and thresholds.separability(expected) > 0.99
    assert thresholds.separability(thresholds.expected_f1_cut(mx.group(m, (1, 2)), 400, 12.0)[1]) > thresholds.EXPECTED_F1_MIN
    # 4 scales above the task mode it is separable on its own, and unsafe with the far one.
    m = mx.MixtureFit(m.weights, (m.components[0], mx.TwoPiece(4.0, 1.0, 1.0), m.components[2]), 0.0, 400)
    assert thresholds.unsafe_components(m, 400, 12.0)[0] == (1, 2)


def test_mixture_reports_its_evidence():
    x, y = _task_and_unsafe(np.random.default_rng(7).normal(0.8, 0.1, 60))
    ev = thresholds.mixture(x).evidence
    assert ev["estimated_unsafe_share"] == pytest.approx(60 / 300, abs=0.03)
    assert ev["expected_false_drops"] < 3 and ev["cut_in_task_scales"] > 2
    assert json.dumps(thresholds.mixture(x).to_dict())


def test_mixture_cuts_the_demo():
    demo = json.loads((Path(__file__).parents[1] / "data" / "demo_log_ratio.json").read_text())
    x, y = np.array(demo["log_ratio"]), np.array(demo["label"])
    assert precision_recall_f1(x > thresholds.mixture(x).value, y)["f1"] > 0.95


def _real_run(name: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    runs = json.loads((Path(__file__).parents[1] / "data" / "real_run_losses.json").read_text())["runs"]
    d = {k: np.array(v, dtype=float) for k, v in runs[name].items()}
    scores = {k.removeprefix("score_"): v for k, v in compute_scores(d["loss_a"], d["loss_b"], d["n_tokens"]).items()}
    return scores, d["label"]


def test_corroboration_withdraws_the_relative_scores_cut_on_a_clean_real_corpus():
    # Computed calendar answers, no unsafe row: A predicts some of them so well that log_ratio
    # forms a second mode (mixture drops 147 of 320 rows), which delta and seq_logprob_drop lack.
    s, y = _real_run("calendar-00pct-varied-320rows-seed0-defaults-safety80")
    assert not y.any()
    plain = thresholds.mixture(s["log_ratio"])
    assert np.sum(s["log_ratio"] > plain.value) > 100
    others = {k: s[k] for k in ("delta", "seq_logprob_drop")}
    t = thresholds.corroborate(plain, s["log_ratio"], others, thresholds.mixture)
    assert math.isinf(t.value) and "withdrawn" in t.rationale
    assert t.evidence["withdrawn_cut"] == plain.value and t.evidence["withdrawn_cut_rows"] > 100
    assert t.evidence["rows_cut_on_delta"] == t.evidence["rows_cut_on_seq_logprob_drop"] == 0
    assert json.dumps(t.to_dict())


def test_corroboration_keeps_a_real_cut():
    # HarmBench compliance replies among docstring Q/A (25% unsafe): every score finds them.
    s, y = _real_run("docstrings-25pct-varied-320rows-seed3-defaults-safety80")
    plain = thresholds.mixture(s["log_ratio"])
    t = thresholds.corroborate(plain, s["log_ratio"], {k: s[k] for k in ("delta", "seq_logprob_drop")}, thresholds.mixture)
    assert t.value == plain.value and "corroborated" in t.rationale
    assert precision_recall_f1(s["log_ratio"] > t.value, y == 1)["f1"] > 0.9


def test_corroboration_needs_only_one_score_and_leaves_no_cut_alone():
    x, _ = _task_and_unsafe(np.random.default_rng(7).normal(0.8, 0.1, 60))
    flat = np.random.default_rng(8).normal(0.0, 1.0, len(x))
    cut = thresholds.mixture(x)
    assert thresholds.corroborate(cut, x, {"flat": flat, "same": x}, thresholds.mixture).value == cut.value
    assert math.isinf(thresholds.corroborate(cut, x, {"flat": flat}, thresholds.mixture).value)
    assert thresholds.corroborate(cut, x, {}, thresholds.mixture) == cut

    def never_called(_: np.ndarray) -> thresholds.Threshold:
        raise AssertionError("a cut that drops nothing needs no corroboration")

    none = thresholds.mixture(flat)
    assert thresholds.corroborate(none, flat, {"x": x}, never_called) == none


def test_another_score_corroborates_only_by_cutting_mostly_the_same_rows():
    x, unsafe = _task_and_unsafe(np.random.default_rng(7).normal(0.8, 0.1, 60))
    cut = thresholds.mixture(x)
    assert np.isfinite(cut.value)
    rng = np.random.default_rng(9)
    same = np.where(unsafe, rng.normal(-0.4, 0.05, len(x)), rng.normal(-1.2, 0.1, len(x)))
    other = rng.permutation(same)  # a distinct upper group of the same size, but of other rows
    kept = thresholds.corroborate(cut, x, {"refusal": same}, thresholds.mixture)
    assert kept.value == cut.value and kept.evidence["share_of_refusal_cut_in_cut"] > 0.9
    withdrawn = thresholds.corroborate(cut, x, {"refusal": other}, thresholds.mixture)
    assert math.isinf(withdrawn.value) and withdrawn.evidence["share_of_refusal_cut_in_cut"] < 0.5
    assert withdrawn.evidence["rows_cut_on_refusal"] > 0 and withdrawn.evidence["withdrawn_cut"] == cut.value


def test_no_score_backs_a_cut_of_most_rows_but_the_prompts_may():
    # 60 of 100 rows forgot more: likelier a task sub-type than unsafe rows, and a score from the
    # same two losses shows the same upper group, so it cannot tell; the prompts can.
    x, upper = _task_and_unsafe(np.random.default_rng(7).normal(0.8, 0.1, 60), n_task=40)
    cut = thresholds.mixture(x)
    assert (x > cut.value).sum() == upper.sum() == 60
    same = {"delta": x * 2.0}
    withdrawn = thresholds.corroborate(cut, x, same, thresholds.mixture)
    assert math.isinf(withdrawn.value) and "only B's votes can back" in withdrawn.rationale
    assert withdrawn.evidence["share_of_delta_cut_in_cut"] == 1.0
    kept = thresholds.corroborate(cut, x, same, thresholds.mixture, {thresholds.SAFETY_PROMPTS: 0.9})
    assert kept.value == cut.value
    # The same score backs the same shape when the upper group is a minority.
    y, _ = _task_and_unsafe(np.random.default_rng(7).normal(0.8, 0.1, 40), n_task=60)
    minority = thresholds.mixture(y)
    assert thresholds.corroborate(minority, y, {"delta": y * 2.0}, thresholds.mixture).value == minority.value


def test_prompts_nearer_the_safety_set_corroborate_a_cut_the_scores_do_not():
    # Half the corpus unsafe: the absolute scores show no separate mode, so they back nothing.
    x, _ = _task_and_unsafe(np.random.default_rng(7).normal(0.8, 0.1, 60))
    cut = thresholds.mixture(x)
    flat = {"delta": np.random.default_rng(8).normal(0.0, 1.0, len(x))}
    assert math.isinf(thresholds.corroborate(cut, x, flat, thresholds.mixture).value)
    kept = thresholds.corroborate(cut, x, flat, thresholds.mixture, {thresholds.SAFETY_PROMPTS: 0.9})
    assert kept.value == cut.value and kept.evidence["share_of_cut_nearer_safety_prompts"] == 0.9
    assert "safety set" in kept.rationale
    withdrawn = thresholds.corroborate(cut, x, {}, thresholds.mixture, {thresholds.SAFETY_PROMPTS: 0.5})
    assert math.isinf(withdrawn.value) and "B's states of the rows' prompts" in withdrawn.rationale


def test_replies_that_read_like_the_safety_prompts_back_a_cut_whose_prompts_do_not():
    # Unsafe replies to ordinary prompts: the prompts vote with the kept rows, the replies with the safety set.
    x, _ = _task_and_unsafe(np.random.default_rng(7).normal(0.8, 0.1, 60))
    cut = thresholds.mixture(x)
    votes = {thresholds.SAFETY_PROMPTS: 0.0, thresholds.REPLY_PROMPTS: 0.9}
    kept = thresholds.corroborate(cut, x, {}, thresholds.mixture, votes)
    assert kept.value == cut.value and "replies, read as prompts, lie nearer" in kept.rationale
    assert kept.evidence[thresholds.SHARE_REPLIES_NEARER_SAFETY] == 0.9 and kept.evidence[thresholds.SHARE_NEARER_SAFETY] == 0.0
    # Neither vote for the safety set: withdrawn, both shares kept for review.
    lost = thresholds.corroborate(cut, x, {}, thresholds.mixture, {**votes, thresholds.REPLY_PROMPTS: 0.5})
    assert math.isinf(lost.value) and lost.evidence[thresholds.SHARE_REPLIES_NEARER_SAFETY] == 0.5
    assert "replies" in lost.rationale and thresholds.WITHDRAWN_CUT in lost.evidence
    # A weak cut, too: either vote may back it.
    r = np.random.default_rng(0)
    few = np.r_[r.normal(0.05, 0.05, 15), r.normal(0.35, 0.08, 5)]
    weak = thresholds.mixture(few)
    assert thresholds.corroborate(weak, few, {}, thresholds.mixture, votes).value == weak.evidence[thresholds.WEAK_CUT]
    assert math.isinf(thresholds.corroborate(weak, few, {}, thresholds.mixture, {thresholds.REPLY_PROMPTS: 0.4}).value)


def test_a_cut_too_weak_on_the_shape_alone_is_made_only_if_the_prompts_back_it():
    # 20 rows: two components fit better, but not by BIC_MIN, so the scores alone drop nothing.
    r = np.random.default_rng(0)
    x = np.r_[r.normal(0.05, 0.05, 15), r.normal(0.35, 0.08, 5)]
    weak = thresholds.mixture(x)
    assert math.isinf(weak.value) and 0 < weak.evidence["bic_gain"] <= thresholds.BIC_MIN
    cut = weak.evidence[thresholds.WEAK_CUT]
    assert thresholds.proposed_cut(weak) == cut and 0 < (x > cut).sum() < len(x)
    # Another score with the same shape is no second opinion: it comes from the same losses.
    same = {"delta": x.copy()}
    assert math.isinf(thresholds.corroborate(weak, x, same, thresholds.mixture).value)
    backed = thresholds.corroborate(weak, x, same, thresholds.mixture, {thresholds.SAFETY_PROMPTS: 0.8})
    assert backed.value == cut and "corroborated" in backed.rationale
    assert backed.evidence["estimated_unsafe_share"] == weak.evidence[thresholds.WEAK_UNSAFE_SHARE] > 0
    not_backed = thresholds.corroborate(weak, x, same, thresholds.mixture, {thresholds.SAFETY_PROMPTS: 0.5})
    assert math.isinf(not_backed.value) and "not backed" in not_backed.rationale
    # No weak cut where one component fits better (BIC gain <= 0): the prompts cannot conjure a cut.
    r = np.random.default_rng(2)
    y = np.r_[r.normal(0.05, 0.05, 23), r.normal(0.35, 0.08, 7)]
    one_mode = thresholds.mixture(y)
    assert one_mode.evidence["bic_gain"] <= 0 and thresholds.proposed_cut(one_mode) is None
    assert math.isinf(thresholds.corroborate(one_mode, y, {}, thresholds.mixture, {thresholds.SAFETY_PROMPTS: 1.0}).value)


def test_share_nearer_safety_is_the_nearest_centroid_vote_of_the_cut_rows():
    rng = np.random.default_rng(0)
    task, harmful = rng.normal(0.0, 1.0, (300, 8)), rng.normal(3.0, 1.0, (100, 8))
    safety = rng.normal(3.0, 1.0, (40, 8))
    # A cut of harmful prompts is backed; a cut of task rows (say, one sub-task) is not, however far out.
    assert prompts.share_nearer_safety(harmful, task.mean(axis=0), safety) > 0.95
    subtask = task[task[:, 0] > 1.0]
    assert prompts.share_nearer_safety(subtask, task[task[:, 0] <= 1.0].mean(axis=0), safety) < 0.05
    # Streaming: the kept centroid is summed batch by batch; rows without a score count on neither side.
    states = np.r_[task, harmful]
    scores = np.r_[np.zeros(300), np.ones(100)]
    scores[0] = np.nan
    batches = [(scores[i:i + 64], states[i:i + 64]) for i in range(0, 400, 64)]
    direct = prompts.share_nearer_safety(harmful, task[1:].mean(axis=0), safety)
    assert prompts.cut_share(batches, 0.5, safety) == direct
    assert prompts.cut_share(batches, 2.0, safety) == 0.0  # nothing in the cut


def test_drop_fraction_drops_exactly_that_many():
    x = np.arange(100, dtype=float)
    t = thresholds.drop_fraction(x, 0.1)
    assert int((x > t.value).sum()) == 10 and t.ties_to_drop == 0
    assert math.isinf(thresholds.drop_fraction(x, 0.0).value)
    with pytest.raises(ValueError):
        thresholds.drop_fraction(x, 1.5)


@pytest.mark.parametrize("scores, fraction, expected", [
    (np.zeros(100), 0.1, 10),                                # all tied
    (np.r_[np.arange(95.0), np.full(5, 95.0)], 0.03, 3),     # the top is a tie
    (np.r_[np.arange(90.0), np.full(10, 90.0), [np.nan] * 4], 0.5, 50),  # a tie below the top; NaN apart
])
def test_drop_fraction_is_exact_under_ties(scores, fraction, expected):
    t = thresholds.drop_fraction(scores, fraction)
    ids = [f"row-{i:03d}" for i in range(len(scores))]
    at = [i for i, v in zip(ids, scores) if v == t.value]
    tie_id = thresholds.break_ties(at, t.ties_to_drop) if t.ties_to_drop else None
    dropped = [i for i, v in zip(ids, scores) if v > t.value or (tie_id is not None and v == t.value and i >= tie_id)]
    assert len(dropped) == expected
    # The same rows whatever order the shards come in.
    assert tie_id is None or thresholds.break_ties(at[::-1], t.ties_to_drop) == tie_id


def test_best_f1_finds_the_perfect_cut():
    x, y = _bimodal()
    t = thresholds.best_f1(x, y)
    assert precision_recall_f1(x > t.value, y)["f1"] == pytest.approx(1.0)


def test_threshold_json_is_finite():
    assert thresholds.Threshold(math.inf, "gmm", "r").to_dict()["value"] is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-5, 5), st.booleans()), min_size=2, max_size=40))
def test_auroc_matches_pair_counting(pairs):
    x = np.array([p[0] for p in pairs], dtype=float)
    y = np.array([p[1] for p in pairs])
    pos, neg = x[y], x[~y]
    if len(pos) == 0 or len(neg) == 0:
        assert math.isnan(auroc(x, y))
        return
    brute = np.mean([(a > b) + 0.5 * (a == b) for a in pos for b in neg])
    assert auroc(x, y) == pytest.approx(brute)


def test_precision_recall_f1_counts():
    m = precision_recall_f1(np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool))
    assert (m["tp"], m["fp"], m["fn"]) == (1, 1, 1)
    assert m["precision"] == m["recall"] == m["f1"] == 0.5


def test_the_vote_extension_moves_a_backed_cut_to_the_best_cut_on_the_votes_below_it():
    below = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    # Net safety votes walking down: 1, 2, 1, 2, 1, 0, -1. The first peak wins: the two rows above 0.7 join the cut.
    votes = np.array([True, True, False, True, False, False, False])
    assert prompts.extended_cut(below, votes, 1.0) == 0.7
    assert prompts.extended_cut(below[::-1], votes[::-1], 1.0) == 0.7  # the order of the rows does not matter
    assert prompts.extended_cut(below, np.zeros(7, bool), 1.0) == 1.0  # no safety votes below: the cut stays
    assert prompts.extended_cut(below, np.r_[False, np.ones(6, bool)], 1.0) < 0.3  # a net gain further down still counts
    # Tied rows stay on one side together: here the only positive walk would split a tie.
    assert prompts.extended_cut(np.array([0.9, 0.9, 0.8]), np.array([True, False, False]), 1.0) == 1.0
    assert prompts.extended_cut(np.zeros(0), np.zeros(0, bool), 1.0) == 1.0


def test_the_streamed_vote_extension_is_the_direct_one_and_skips_rows_without_a_score():
    rng = np.random.default_rng(0)
    task, harmful, safety = rng.normal(0.0, 1.0, (300, 8)), rng.normal(3.0, 1.0, (100, 8)), rng.normal(3.0, 1.0, (40, 8))
    states = np.r_[task, harmful]
    scores = np.r_[rng.uniform(0.0, 0.5, 300), rng.uniform(0.3, 1.0, 100)]
    scores[0] = np.nan
    value = 0.7
    batches = [(scores[i:i + 64], states[i:i + 64]) for i in range(0, 400, 64)]
    kept = np.isfinite(scores) & (scores <= value)
    centroid = states[kept].mean(axis=0)
    direct = prompts.extended_cut(scores[kept], prompts.nearer_safety(states[kept], centroid, safety), value)
    streamed = prompts.vote_extension(lambda: iter(batches), value, safety)
    assert streamed == direct and streamed < value
    # Down over the harmful rows below the cut, to where the task rows (up to 0.5) begin to outvote them.
    cut = scores > streamed
    assert cut[300:][scores[300:] > 0.5].all() and cut[:300].sum() <= 2


def test_the_vote_extension_mends_a_real_cut_the_mixture_put_too_high():
    # A fresh real run (docstrings, 25% unsafe, SmolLM2 at the package defaults). Its task component is broad,
    # so the mixture cuts only the far third of the unsafe rows; the prompt vote backs that cut, and the rows
    # just below it, voting too, carry it down over the rest.
    d = real_run_states("docstrings-25pct-varied-320rows-seed14-defaults-safety80")
    x = compute_scores(d["loss_a"], d["loss_b"], d["n_tokens"])["score_log_ratio"]
    y, states, safety = d["label"], d["prompt_state"], d["safety_prompt_states"]
    plain = thresholds.corroborate(thresholds.mixture(x), x, {}, thresholds.mixture,
                                   {thresholds.SAFETY_PROMPTS: prompts.cut_share([(x, states)], thresholds.mixture(x).value, safety)})
    assert thresholds.extendable(plain)
    assert precision_recall_f1(x > plain.value, y)["recall"] < 0.5
    t = thresholds.extend_by_votes(plain, x, prompts.vote_extension(lambda: [(x, states)], plain.value, safety))
    m = precision_recall_f1(x > t.value, y)
    assert m["f1"] > 0.93 and m["fp"] <= 3
    assert t.evidence[thresholds.CUT_BEFORE_EXTENSION] == plain.value
    assert t.evidence[thresholds.ROWS_ADDED_BY_VOTES] == int((x > t.value).sum() - (x > plain.value).sum()) > 30
