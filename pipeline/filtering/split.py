"""Which rows a cut keeps: one rule for the filter stage and for anyone who re-applies its cut.

The filter writes kept/ and dropped/ with it, and the evaluate stage re-applies the recorded cut
to the scored rows (which still carry their tokens) to train on exactly the rows in kept/.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import columns as col
from pipeline.filtering.thresholds import Threshold


def threshold_from_record(d: dict[str, Any]) -> Threshold:
    """The ``Threshold`` the filter stage recorded with ``Threshold.to_dict`` (null value: keep all)."""
    value = d.get("value")
    return Threshold(**{**d, "value": math.inf if value is None else float(value)})


def cut_column(t: Threshold) -> str:
    """The column the cut is on: the filter's own score, or the score a fallback cut on (``Threshold.score``)."""
    return col.score_column(t.score) if t.score else col.FORGETTING


def kept_mask(batch: pa.Table, t: Threshold) -> pa.ChunkedArray:
    """True for rows the cut keeps: score <= cut, minus the tied rows it drops; never a NaN or null score."""
    value = pa.scalar(t.value if math.isfinite(t.value) else float(np.finfo(np.float64).max), pa.float64())
    score = batch.column(cut_column(t))
    kept = pc.fill_null(pc.less_equal(score, value), False)
    if t.tie_id is not None:
        tied = pc.and_(pc.equal(score, value), pc.greater_equal(batch.column(col.EXAMPLE_ID), pa.scalar(t.tie_id)))
        kept = pc.and_not(kept, pc.fill_null(tied, False))
    return kept
