"""The training sample and order are functions of the seed and the rows, not of Ray's scheduling."""

import numpy as np

from pipeline.training.sampling import order_keys, sample_mask, worker_rows

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
