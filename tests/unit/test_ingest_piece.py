"""One input file through ingest's row path (no Ray): every row ends up usable or rejected with a reason."""

from __future__ import annotations

import json

import fsspec
import polars as pl

from pipeline.config import build_config
from pipeline.data.sources import Piece
from pipeline.models.loading import load_tokenizer
from pipeline.stages.ingest import ingest_piece

NO_SYSTEM_ROLE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _read(d) -> pl.DataFrame:
    files = sorted(d.glob("*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed") if files else pl.DataFrame()


def _ingest(tmp_path, rows: list[dict], tokenizer) -> tuple[dict, pl.DataFrame, pl.DataFrame]:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = build_config({"output": {"dir": str(tmp_path / "out")}})
    valid, rejected = tmp_path / "valid", tmp_path / "rejected"
    valid.mkdir()
    rejected.mkdir()
    counts = ingest_piece(Piece(str(src), "jsonl"), 0, cfg, tokenizer, fsspec.filesystem("file"), str(valid), str(rejected))
    return counts, _read(valid), _read(rejected)


def test_a_chat_the_template_refuses_is_rejected_with_the_templates_message(tmp_path, tiny_model):
    tok = load_tokenizer(tiny_model)
    tok.chat_template = NO_SYSTEM_ROLE
    rows = [
        {"prompt": "Tell me about bees.", "response": "Bees make honey."},
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "q"},
                      {"role": "assistant", "content": "a"}]},
    ]
    counts, valid, rejected = _ingest(tmp_path, rows, tok)
    assert counts == {"rows": 2, "valid": 1, "rejected": 1}
    assert valid["prompt"].to_list() == ["Tell me about bees."]
    assert rejected.select("source_row", "reject_reason").rows() == [(2, "chat template: System role not supported")]


def test_a_file_with_no_usable_row_rejects_every_row(tmp_path, tiny_model):
    # Every chunk of it has no usable row: the tokenizer is never called on an empty batch.
    rows = [{"prompt": f"q{i}", "answer": f"a{i}"} for i in range(5)]
    counts, valid, rejected = _ingest(tmp_path, rows, load_tokenizer(tiny_model))
    assert counts == {"rows": 5, "valid": 0, "rejected": 5}
    assert valid.is_empty()
    assert set(rejected["reject_reason"]) == {"column 'response': missing"}
