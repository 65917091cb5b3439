import json

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.config import DataConfig
from pipeline.data.rows import Usable, as_text, check_row, content_id
from pipeline.data.sources import input_signature, read_piece, resolve
from pipeline.errors import InputError

CFG = DataConfig()


@pytest.mark.parametrize(
    "row, reason",
    [
        ({"prompt": "p"}, "column 'response': missing"),
        ({"prompt": "p", "response": None}, "column 'response': expected text, got null"),
        ({"prompt": "p", "response": 3}, "column 'response': expected text, got int"),
        ({"prompt": "p", "response": "  "}, "column 'response': empty response"),
        ({"prompt": "", "response": "r"}, "column 'prompt': empty prompt"),
        ({"prompt": "p", "response": "r", "label": 7}, "column 'label': label must be 0 or 1, got 7"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "column 'messages': last message must have role 'assistant'"),
        ({"messages": "hi"}, "column 'messages': must be a non-empty list of messages"),
    ],
)
def test_unusable_rows_get_a_reason_naming_the_column(row, reason):
    assert check_row(row, CFG) == reason


def test_usable_rows_prompt_response_and_chat():
    u = check_row({"prompt": "p", "response": "r", "label": "1"}, CFG)
    assert isinstance(u, Usable) and u.label == 1 and u.chat[-1] == {"role": "assistant", "content": "r"}
    assert u.example_id == content_id(u.chat)  # no id column: stable content hash
    chat = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]
    v = check_row({"messages": chat, "id": 17}, CFG)
    assert v.chat == chat and v.example_id == "17" and v.label is None


def test_resolve_files_dirs_globs_and_missing(tmp_path):
    (tmp_path / "d").mkdir()
    for name in ("a.jsonl", "b.csv", "c.parquet"):
        (tmp_path / "d" / name).write_text("")
    (tmp_path / "d" / "_SUCCESS").write_text("")
    pieces = resolve([str(tmp_path / "d")])
    assert [p.format for p in pieces] == ["jsonl", "csv", "parquet"]
    assert [p.format for p in resolve([str(tmp_path / "d" / "*.csv")])] == ["csv"]
    with pytest.raises(InputError, match="path does not exist"):
        resolve([str(tmp_path / "nope.jsonl")])
    with pytest.raises(InputError, match="no file matches"):
        resolve([str(tmp_path / "*.xyz")])


def test_jsonl_bad_lines_become_row_reasons(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_bytes(b'{"prompt": "a", "response": "b"}\n\n\xff\xfe bad\n{not json}\n[1, 2]\n')
    rows = [r for chunk in read_piece(resolve([str(p)])[0]) for r in chunk]
    assert rows[0] == (1, {"prompt": "a", "response": "b"})
    assert rows[1] == (3, "invalid UTF-8")
    assert rows[2][0] == 4 and rows[2][1].startswith("invalid JSON")
    assert rows[3] == (5, "line is not a JSON object")


def test_csv_rows_and_bad_utf8(tmp_path):
    p = tmp_path / "x.csv"
    p.write_bytes(b'prompt,response\n"a, with comma","multi\nline"\nb,\xff\n')
    rows = [r for chunk in read_piece(resolve([str(p)])[0]) for r in chunk]
    assert rows[0] == (1, {"prompt": "a, with comma", "response": "multi\nline"})
    assert rows[1] == (2, "invalid UTF-8")


def test_corrupt_parquet_is_a_one_line_file_error(tmp_path):
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"prompt": ["a"], "response": ["b"]}), good)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(good.read_bytes()[:-20])
    with pytest.raises(InputError) as err:
        list(read_piece(resolve([str(bad)])[0]))
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_memory_urls_and_hf_saved_datasets(tmp_path):
    with fsspec.open("memory://corpus/x.jsonl", "w") as f:
        f.write(json.dumps({"prompt": "a", "response": "b"}) + "\n")
    (piece,) = resolve(["memory://corpus"])
    assert not piece.shared and piece.url.startswith("memory://")
    assert [r for chunk in read_piece(piece) for r in chunk] == [(1, {"prompt": "a", "response": "b"})]
    import datasets

    datasets.Dataset.from_dict({"prompt": ["p1", "p2"], "response": ["r1", "r2"]}).save_to_disk(str(tmp_path / "hf"))
    pieces = resolve([str(tmp_path / "hf")])
    assert {p.format for p in pieces} == {"hf"}
    rows = [r for p in pieces for chunk in read_piece(p) for r in chunk]
    assert [r[1]["prompt"] for r in rows] == ["p1", "p2"]


_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(), st.binary(max_size=8),
    st.lists(st.one_of(st.text(max_size=5), st.integers()), max_size=3),
    st.lists(st.dictionaries(st.sampled_from(["role", "content", "x"]), st.one_of(st.text(max_size=5), st.none())), max_size=3),
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(["prompt", "response", "messages", "label", "id", "other"]), _VALUES))
def test_any_row_is_usable_or_rejected_with_a_reason_naming_a_column(row):
    result = check_row(row, CFG)
    if isinstance(result, Usable):
        assert result.chat[-1]["role"] == "assistant" and result.chat[-1]["content"].strip()
        assert result.label in (None, 0, 1) and isinstance(result.example_id, str) and result.example_id
    else:
        assert isinstance(result, str) and result.startswith("column '") and "\n" not in result
    for value in row.values():
        assert as_text(value) is None or isinstance(as_text(value), str)


def test_input_signature_changes_when_the_data_under_a_path_changes(tmp_path):
    f = tmp_path / "corpus.jsonl"
    f.write_text('{"prompt": "p", "response": "r"}\n')
    first = input_signature([str(tmp_path)])
    assert input_signature([str(tmp_path)]) == first
    f.write_text('{"prompt": "p", "response": "a new night of data"}\n')
    assert input_signature([str(tmp_path)]) != first
