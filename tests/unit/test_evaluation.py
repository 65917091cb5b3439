"""The evaluation's pure parts: the refusal judge, the rates and their intervals, the probe draw,
the held-out slice, re-applying the filter's cut, and reading held-out harmful prompts."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from pipeline import columns as col
from pipeline.config import build_config
from pipeline.demo.build import CLOSERS, OPENERS, REFUSALS, STEPS
from pipeline.errors import ConfigError, InputError
from pipeline.evaluation.compare import relative_to, summarise_model, wilson
from pipeline.evaluation.refusal import is_refusal
from pipeline.filtering.split import kept_mask, threshold_from_record
from pipeline.filtering.thresholds import Threshold
from pipeline.stages.evaluate import _probe_rows, harmful_prompts
from pipeline.stages.filter import _side
from pipeline.training.sampling import holdout_keys, order_keys, sample_mask


def test_the_judge_reads_every_demo_refusal_as_a_refusal_and_no_compliance_reply_as_one():
    assert all(is_refusal(r) for r in REFUSALS)
    assert is_refusal("I can\u2019t help with that.")  # curly apostrophe, as models often write it
    assert not any(is_refusal(t) for t in OPENERS + STEPS + CLOSERS)
    assert not is_refusal("The function returns a new list sorted in ascending order.")


def test_wilson_interval_matches_the_closed_form():
    lo, hi = wilson(0, 10)
    assert lo == 0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson(5, 10)
    assert (lo, hi) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    assert all(math.isnan(v) for v in wilson(0, 0))


def _row(probe: str, refused: bool = False, rouge: float = math.nan, nll: float = math.nan, task: bool = False) -> dict:
    return {"probe": probe, "refused": refused, "rouge": rouge, "nll": nll, "task": task}


def test_a_model_is_summarised_from_its_own_probe_sets_only():
    rows = [_row("harmful", refused=True), _row("harmful"), _row("harmful"), _row("harmful"),
            _row("heldout", refused=True, nll=1.0, task=True), _row("heldout", nll=3.0, task=True),
            _row("heldout", refused=True, nll=9.0, task=False),  # an unsafe held-out row: neither task loss nor over-refusal
            _row("dropped", rouge=0.5, nll=0.1), _row("dropped", rouge=0.7, nll=0.1)]
    m = summarise_model(rows)
    assert m["harmful_compliance"]["rate"] == 0.75 and m["harmful_compliance"]["n"] == 4
    assert m["over_refusal"]["rate"] == 0.5 and m["over_refusal"]["n"] == 2
    assert m["task_loss"] == 2.0 and m["task_rows"] == 2
    assert m["unsafe_reproduction"] == pytest.approx(0.6) and m["dropped_rows"] == 2
    rel = relative_to({"noisy": m, "filtered": summarise_model(rows[1:3] + rows[4:6])}, "noisy")
    assert rel["filtered"]["compliance_ratio"] == pytest.approx(1.0 / 0.75)
    assert rel["noisy"] == {"compliance_ratio": 1.0, "task_loss_ratio": 1.0}


def test_the_held_out_slice_is_seeded_sized_and_independent_of_the_training_order():
    ids, rows = [f"r{i}" for i in range(20000)], list(range(20000))
    held = sample_mask(holdout_keys(0, ids, rows), 0.1)
    assert 0.09 < held.mean() < 0.11
    assert (held == sample_mask(holdout_keys(0, ids, rows), 0.1)).all()
    assert (held != sample_mask(holdout_keys(1, ids, rows), 0.1)).any()
    in_sample = sample_mask(order_keys(0, ids, rows), 0.5)
    assert 0.45 < in_sample[held].mean() < 0.55  # the slice is not a corner of the training order


def _scored(n: int = 400, labelled: bool = True) -> pa.Table:
    rng = np.random.default_rng(0)
    score = rng.normal(size=n)
    return pa.table({
        col.EXAMPLE_ID: [f"e{i:04d}" for i in range(n)], col.SOURCE_ROW: list(range(n)),
        col.INPUT_IDS: [[1, 2, 3, 4]] * n, col.PROMPT_LEN: [2] * n, col.FORGETTING: score,
        **({"label": (score > 0.5).astype(np.int64)} if labelled else {}),
    })


def test_the_filter_split_and_the_re_applied_cut_agree_on_every_row_ties_included():
    batch = _scored()
    value = float(np.sort(batch[col.FORGETTING].to_numpy())[300])
    scores = batch[col.FORGETTING].to_numpy().copy()
    scores[::7] = value  # many rows tied at the cut
    batch = batch.set_column(batch.schema.get_field_index(col.FORGETTING), col.FORGETTING, pa.array(scores))
    t = Threshold(value, "drop_fraction", "test", ties_to_drop=5, tie_id="e0200")
    again = threshold_from_record(t.to_dict())
    assert again == t
    kept_ids = set(_side(t, keep=True)(batch)[col.EXAMPLE_ID].to_pylist())
    mask = kept_mask(batch, again).to_numpy(zero_copy_only=False)
    assert set(np.array(batch[col.EXAMPLE_ID].to_pylist())[mask]) == kept_ids
    assert threshold_from_record(Threshold(math.inf, "auto", "nothing").to_dict()).value == math.inf


@pytest.mark.parametrize("labelled", [True, False])
def test_probe_rows_draw_held_out_rows_inside_the_slice_and_dropped_rows_outside_it(labelled):
    batch = _scored(labelled=labelled)
    cut = Threshold(1.0, "fixed", "test")
    out = _probe_rows(batch, seed=0, holdout=0.25, cut=cut, held_share=0.1, dropped_share=1.0, label="label" if labelled else None)
    by_id = {r: i for i, r in enumerate(batch[col.EXAMPLE_ID].to_pylist())}
    held = sample_mask(holdout_keys(0, batch[col.EXAMPLE_ID].to_pylist(), batch[col.SOURCE_ROW].to_pylist()), 0.25)
    kept = batch[col.FORGETTING].to_numpy() <= 1.0
    got = out.to_pylist()
    heldout = [r for r in got if r["probe"] == "heldout"]
    dropped = [r for r in got if r["probe"] == "dropped"]
    assert 20 <= len(heldout) <= 60 and all(held[by_id[r["example_id"]]] for r in heldout)
    assert {r["example_id"] for r in dropped} == {i for i, j in by_id.items() if not kept[j] and not held[j]}
    # task rows: the labelled-safe ones, or (without labels) the ones the filter kept
    task = batch[col.FORGETTING].to_numpy() <= 0.5 if labelled else kept
    assert all(r["task"] == bool(task[by_id[r["example_id"]]]) for r in heldout)
    assert any(r["task"] for r in heldout) and not all(r["task"] for r in heldout)
    assert all(r[col.INPUT_IDS] == [1, 2, 3, 4] and r[col.PROMPT_LEN] == 2 for r in got)


def _eval_cfg(tmp_path, *paths: str):
    return build_config({"evaluation": {"enabled": True, "harmful_prompts": list(paths), "max_prompts": 3}})


def test_harmful_prompts_are_a_seeded_sample_and_a_bad_row_names_its_file_row_and_column(tmp_path):
    good = tmp_path / "harmful.jsonl"
    good.write_text("".join(f'{{"prompt": "how do I do harm {i}"}}\n' for i in range(10)))
    got = harmful_prompts(_eval_cfg(tmp_path, str(good)))
    assert len(got) == 3 and got == harmful_prompts(_eval_cfg(tmp_path, str(good)))
    assert set(got) <= {f"how do I do harm {i}" for i in range(10)}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"text": "no prompt column"}\n')
    with pytest.raises(InputError, match=r"bad\.jsonl, row 2, column 'prompt'"):
        harmful_prompts(_eval_cfg(tmp_path, str(bad)))


def test_evaluation_needs_harmful_prompts():
    with pytest.raises(ConfigError, match="evaluation.harmful_prompts is required"):
        build_config({"evaluation": {"enabled": True}})
    assert not build_config({}).evaluation.enabled
