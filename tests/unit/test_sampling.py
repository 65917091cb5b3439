"""The training sample and order are functions of the seed and the rows, not of Ray's scheduling."""

import numpy as np

from pipeline.training.sampling import WINDOW_BATCHES, micro_batches, optimizer_steps, order_keys, sample_mask, window_rows, worker_rows

IDS = [f"id-{i}" for i in range(5000)]
ROWS = list(range(5000))


def test_keys_depend_on_seed_and_row_identity_only():
    a = order_keys(0, IDS, ROWS)
    assert np.array_equal(a, order_keys(0, IDS, ROWS))
    assert not np.array_equal(a, order_keys(1, IDS, ROWS))
    # a row's key does not depend on which other rows arrive with it (block boundaries)
    assert np.array_equal(a[100:200], order_keys(0, IDS[100:200], ROWS[100:200]))
    # same user id on two rows: still two different keys
    assert order_keys(0, ["x", "x"], [1, 2])[0] != order_keys(0, ["x", "x"], [1, 2])[1]


def test_sample_has_about_the_requested_size_and_nests():
    keys = order_keys(3, IDS, ROWS)
    small, large = sample_mask(keys, 0.1), sample_mask(keys, 0.3)
    assert abs(small.sum() - 500) < 75 and abs(large.sum() - 1500) < 120
    assert not (small & ~large).any()  # a larger sample contains the smaller one
    assert sample_mask(keys, 1.0).all()


def test_workers_get_equal_disjoint_rows():
    parts = [worker_rows(103, r, 4) for r in range(4)]
    assert {len(p) for p in parts} == {25}
    joined = np.concatenate(parts)
    assert len(set(joined.tolist())) == 100 and joined.max() < 100


def test_micro_batches_fill_every_optimizer_step_and_respect_the_batch_size():
    for rows in range(0, 60):
        for bs in (1, 3, 4):
            for gas in (1, 2, 4):
                k, used = micro_batches(rows, bs, gas)
                assert k % gas == 0 and k <= used <= rows
                if k:
                    assert -(-used // k) <= bs  # no micro-batch over batch_size
                assert rows - used < gas * bs  # fewer than one optimizer step's rows are skipped
    assert micro_batches(9, 4, 2) == (4, 9)  # 3 batches are needed, the step needs 4: 2-3 rows each
    assert micro_batches(3, 1, 2) == (2, 2)  # a third row would need a step of its own


def test_optimizer_steps_count_full_windows_and_the_last_one():
    w = window_rows(4, 2, 3)
    assert w == 4 * 2 * WINDOW_BATCHES * 3
    assert optimizer_steps(2 * w, 4, 2, 3) == 2 * WINDOW_BATCHES
    # last window: 101 rows over 3 workers -> 33 each -> 9 micro-batches needed -> 10 -> 5 steps
    assert optimizer_steps(w + 101, 4, 2, 3) == WINDOW_BATCHES + 5
    assert optimizer_steps(5, 4, 2, 3) == 0  # one row per worker: too few for a step of 2 micro-batches
