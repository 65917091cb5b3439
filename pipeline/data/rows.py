"""Validating one input row and turning it into a chat: pure functions, no I/O.

Every row ends in exactly one place. A row that cannot be used is not dropped silently: it gets a
one-line reason naming the column, and goes to ``rejected/``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pipeline.config import DataConfig

Chat = list[dict[str, str]]


@dataclass(frozen=True)
class Usable:
    """A valid row: its chat, normalised label (None when absent) and stable id."""

    chat: Chat
    label: int | None
    example_id: str


def content_id(chat: Chat) -> str:
    """Stable id from the content: same text, same id, whatever file or position it came from."""
    return hashlib.sha256(json.dumps(chat, ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:24]


def _chat_from_messages(value: Any, col: str) -> Chat | str:
    if not isinstance(value, list) or not value:
        return f"column '{col}': must be a non-empty list of messages"
    chat = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            return f"column '{col}': message {i} must have string 'role' and 'content'"
        chat.append({"role": m["role"], "content": m["content"]})
    if chat[-1]["role"] != "assistant":
        return f"column '{col}': last message must have role 'assistant'"
    if not chat[-1]["content"].strip():
        return f"column '{col}': empty assistant response"
    return chat


def _label(value: Any, col: str) -> int | None | str:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return int(value)
    if isinstance(value, str) and value.strip() in ("0", "1"):
        return int(value.strip())
    return f"column '{col}': label must be 0 or 1, got {value!r}"


def check_row(row: dict[str, Any], cfg: DataConfig) -> Usable | str:
    """A usable row, or the reason it is rejected."""
    if cfg.messages_column in row and row[cfg.messages_column] is not None:
        chat = _chat_from_messages(row[cfg.messages_column], cfg.messages_column)
        if isinstance(chat, str):
            return chat
    else:
        for col in (cfg.prompt_column, cfg.response_column):
            if col not in row:
                return f"column '{col}': missing"
            if not isinstance(row[col], str):
                kind = "null" if row[col] is None else type(row[col]).__name__
                return f"column '{col}': expected text, got {kind}"
        if not row[cfg.response_column].strip():
            return f"column '{cfg.response_column}': empty response"
        if not row[cfg.prompt_column].strip():
            return f"column '{cfg.prompt_column}': empty prompt"
        chat = [
            {"role": "user", "content": row[cfg.prompt_column]},
            {"role": "assistant", "content": row[cfg.response_column]},
        ]
    if cfg.system_prompt and chat[0]["role"] != "system":
        chat = [{"role": "system", "content": cfg.system_prompt}, *chat]
    label = _label(row.get(cfg.label_column), cfg.label_column)
    if isinstance(label, str):
        return label
    raw_id = row.get(cfg.id_column)
    if raw_id is not None and not isinstance(raw_id, (str, int)):
        return f"column '{cfg.id_column}': id must be text or an integer"
    example_id = str(raw_id) if raw_id is not None and str(raw_id) != "" else content_id(chat)
    return Usable(chat, label, example_id)


def as_text(value: Any) -> str | None:
    """A rejected row's value as text, so any row, however malformed, fits one Parquet schema."""
    if value is None or isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)
