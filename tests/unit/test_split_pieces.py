"""Large files are read in parts, and the parts give exactly the rows, and row numbers, of the whole file."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.data.sources import Piece, count_lines, number_lines, read_piece, split_large


def _rows(pieces: list[Piece]) -> list:
    return [r for p in pieces for chunk in read_piece(p) for r in chunk]


@pytest.mark.parametrize("part_bytes", [1, 37, 200, 10_000])
@pytest.mark.parametrize("trailing_newline", [True, False])
def test_jsonl_parts_read_the_same_rows_with_the_same_numbers(tmp_path, part_bytes, trailing_newline):
    lines = [json.dumps({"prompt": f"p{i}", "response": "r" * (i % 13)}) for i in range(60)]
    lines[7], lines[20], lines[33] = "", "{not json", "   "  # blank and bad lines keep their numbers
    lines[41] = json.dumps({"prompt": "long", "response": "x" * 500})  # longer than a part
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(lines) + ("\n" if trailing_newline else ""))
    whole = Piece(str(path), "jsonl")
    parts = split_large([whole], part_bytes)
    assert len(parts) > 1 or part_bytes >= path.stat().st_size
    counts = {i: count_lines(p) for i, p in enumerate(parts) if p.stop is not None}
    if counts:
        assert sum(counts.values()) == 60
    numbered = number_lines(parts, counts)
    assert _rows(numbered) == _rows([whole])


def test_parquet_parts_are_runs_of_row_groups_numbered_from_the_footer(tmp_path):
    path = tmp_path / "big.parquet"
    table = pa.table({"prompt": [f"p{i}" for i in range(1000)], "response": ["r" * 50] * 1000})
    pq.write_table(table, path, row_group_size=64)
    whole = Piece(str(path), "parquet")
    parts = split_large([whole], 1_500)
    assert len(parts) > 3 and parts[0].first_row == 1 and parts[-1].stop == pq.ParquetFile(path).metadata.num_row_groups
    assert _rows(parts) == _rows([whole])


def test_small_files_and_other_formats_stay_whole(tmp_path):
    (tmp_path / "a.csv").write_text("prompt,response\n" + "p,r\n" * 1000)
    (tmp_path / "b.jsonl").write_text('{"prompt": "p", "response": "r"}\n')
    pieces = [Piece(str(tmp_path / "a.csv"), "csv"), Piece(str(tmp_path / "b.jsonl"), "jsonl")]
    assert split_large(pieces, 100) == pieces
