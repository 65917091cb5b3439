"""Streaming summaries of the report: exact moments, quantiles within one histogram bin."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.reporting.aggregate import QUANTILES, Histogram, Moments, stats


@pytest.mark.parametrize("dist", ["lognormal", "bimodal", "ties"])
def test_streamed_stats_match_numpy_on_all_rows(dist):
    rng = np.random.default_rng(3)
    x = {"lognormal": rng.lognormal(-2, 1, 50_000),
         "bimodal": np.concatenate([rng.normal(0, 0.1, 45_000), rng.normal(1, 0.3, 5_000)]),
         "ties": rng.integers(0, 5, 50_000).astype(float)}[dist]
    x[::997] = np.nan  # unscorable rows are left out, as np.nan* does
    parts = np.array_split(x, 37)
    m = Moments()
    for p in parts:
        m.add(p)
    h = Histogram(m.lo, m.hi, 1 << 12)
    for p in parts:
        h.add(p)
    got = stats(m, h)
    finite = x[np.isfinite(x)]
    assert m.n == len(finite)
    assert got["mean"] == pytest.approx(finite.mean()) and got["std"] == pytest.approx(finite.std())
    assert (got["min"], got["max"]) == (finite.min(), finite.max())
    width = (m.hi - m.lo) / h.bins
    order = np.sort(finite)
    for q in QUANTILES:  # within a bin of the order statistics around the quantile
        k = q * (len(order) - 1)
        lo, hi = order[max(0, int(np.floor(k)) - 1)], order[min(len(order) - 1, int(np.ceil(k)) + 1)]
        assert lo - width - 1e-12 <= got[f"p{round(q * 100)}"] <= hi + width + 1e-12, q
    assert h.counts.sum() == len(finite)


def test_a_column_with_no_finite_value_has_no_summary():
    m = Moments()
    m.add(np.array([np.nan, np.inf]))
    assert stats(m, None) == {}


def test_a_constant_column_lands_in_one_bin():
    h = Histogram(2.0, 2.0, 8)
    h.add(np.full(10, 2.0))
    assert h.counts.sum() == 10 and np.allclose(h.quantiles(), 2.0)
