"""The names of the columns forgetfilter adds to a user's rows: one vocabulary for every stage.

Users read these names in kept/, dropped/ and rejected/, so they are part of the output contract;
spelling them once keeps the stages, the report and the benchmarks from drifting apart.
"""

from __future__ import annotations

# Where a row came from (every output side) and, for rejected rows, why it was not used.
EXAMPLE_ID = "example_id"
SOURCE_FILE = "source_file"
SOURCE_ROW = "source_row"
REJECT_REASON = "reject_reason"

# The tokenised example that training and scoring read; never written to kept/ or dropped/.
INPUT_IDS = "input_ids"
PROMPT_LEN = "prompt_len"
MODEL_INPUTS = (INPUT_IDS, PROMPT_LEN)

INGEST_ADDED = (EXAMPLE_ID, SOURCE_FILE, SOURCE_ROW, *MODEL_INPUTS)
"""Every column ingest adds to a usable row; whatever else a row has is the user's own."""

# What the score stage adds.
LOSS_A = "loss_a"
LOSS_B = "loss_b"
N_RESPONSE_TOKENS = "n_response_tokens"
PROMPT_STATE = "prompt_state"
"""B's hidden state at the row's last prompt token, projected to a few dozen floats: which prompts B
takes for the safety set's kind. Internal (the filter reads it); not written to kept/ or dropped/."""
REPLY_STATE = "reply_state"
"""B's state at the last prompt token when the row's *reply* is the prompt, projected like ``PROMPT_STATE``:
which replies B takes for the safety set's kind of request. Internal, like ``PROMPT_STATE``."""
INTERNAL = (*MODEL_INPUTS, PROMPT_STATE, REPLY_STATE)
"""Columns the stages read and the user never needs: dropped from kept/ and dropped/."""
FORGETTING = "forgetting"
"""The configured score (``scoring.method``), the one the filter cuts on."""


def score_column(method: str) -> str:
    """The column holding one score, e.g. ``score_log_ratio``; every score is written, the filter uses one."""
    return f"score_{method}"
