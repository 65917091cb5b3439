"""Bad input, end to end through the ingest stage: every broken row lands in rejected/ with a reason
naming its column, every broken file or setting is a one-line error with exit code 2.

The tables below are the contract (and the list in the README's "Bad input" section).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from tests.conftest import make_corpus, write_jsonl

pytestmark = pytest.mark.slow

LONG = " ".join(f"w{i}" for i in range(3000))

# (line of problems.jsonl, the reason it must be rejected with)
BAD_JSONL = [
    ('{"question": "q", "answer": "a"}', "column 'prompt': missing"),
    ('{"prompt": "q"}', "column 'response': missing"),
    ('{"prompt": "q", "response": 5}', "column 'response': expected text, got int"),
    ('{"prompt": null, "response": "a"}', "column 'prompt': expected text, got null"),
    ('{"prompt": "q", "response": "   "}', "column 'response': empty response"),
    ('{"prompt": "", "response": "a"}', "column 'prompt': empty prompt"),
    ('{"prompt": "q", "response": "a", "label": "maybe"}', "column 'label': label must be 0 or 1, got 'maybe'"),
    ('{"prompt": "q", "response": "a", "id": [1]}', "column 'id': id must be text or an integer"),
    ('{"messages": [{"role": "user", "content": "q"}]}', "column 'messages': last message must have role 'assistant'"),
    ('{"prompt": "\xff\xfe", "response": "a"}', "invalid UTF-8"),
    ("not json", "invalid JSON (Expecting value)"),
    ("[1, 2]", "line is not a JSON object"),
    (json.dumps({"prompt": "q", "response": LONG}), "too long:"),
    (json.dumps({"id": "dup-1", "prompt": "Tell me about bees.", "response": "Bees make honey."}), None),  # first: kept
    (json.dumps({"id": "dup-1", "prompt": "Other", "response": "Other answer."}), "column 'id': duplicate id 'dup-1', first at"),
    ("COPY_OF_GOOD_ROW_0", "duplicate content (same prompt and response), first at"),
]
BAD_CSV = [("What is a river?,Water that flows.", None), ("Bad \xff byte,x", "invalid UTF-8"), ("only one field", "has 1 fields, header has 2")]


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, tiny_model, ray_local):
    root = tmp_path_factory.mktemp("bad")
    rows, safety = make_corpus()
    data = root / "corpus"
    data.mkdir()
    write_jsonl(data / "a_good.jsonl", rows)
    with open(data / "b_problems.jsonl", "wb") as f:
        for line, _ in BAD_JSONL:
            line = json.dumps(rows[0]) if line == "COPY_OF_GOOD_ROW_0" else line
            f.write(line.encode("utf-8", errors="surrogateescape") if "\xff" not in line else line.encode("latin-1"))
            f.write(b"\n")
    with open(data / "c_problems.csv", "wb") as f:
        f.write(b"prompt,response\n")
        for line, _ in BAD_CSV:
            f.write(line.encode("latin-1") + b"\n")
    write_jsonl(root / "safety.jsonl", safety)
    out = root / "out"
    args = ["--input", str(data), "--safety", str(root / "safety.jsonl"), "--output", str(out), "--model", tiny_model]
    # Files cut into parts of ~1 KiB: rows must keep their file's row numbers, duplicates are found across parts.
    assert main(["ingest", *args, "--set", "data.part_bytes=1024"]) == 0
    return out, args, len(rows)


def _read(directory: Path) -> pl.DataFrame:
    # Rows keep their own file's columns, so shards of different input files differ in columns.
    return pl.concat([pl.read_parquet(f) for f in sorted(directory.glob("*.parquet"))], how="diagonal_relaxed")


def test_every_broken_row_is_rejected_with_its_reason_and_nothing_is_lost(ingested):
    out, _, n_good = ingested
    rejected = _read(out / "rejected")
    reasons = {(Path(f).name, r): why for f, r, why in rejected.select("source_file", "source_row", "reject_reason").iter_rows()}
    expected = {("b_problems.jsonl", n): why for n, (_, why) in enumerate(BAD_JSONL, start=1) if why}
    expected |= {("c_problems.csv", n): why for n, (_, why) in enumerate(BAD_CSV, start=1) if why}
    assert set(reasons) == set(expected), (reasons, expected)
    for key, why in expected.items():
        assert reasons[key].startswith(why), (key, reasons[key])
    valid = _read(out / "work" / "ingest")
    assert valid["example_id"].n_unique() == valid.height == n_good + 2  # + the first dup-1 + the good CSV row
    result = json.loads((out / "manifest.json").read_text())["stages"]["ingest"]["result"]["corpus"]
    n_input = n_good + len(BAD_JSONL) + len(BAD_CSV)
    assert result["rows"] == n_input and result["valid"] + result["rejected"] == n_input
    assert result["duplicates"] == 2
    assert result["files"] == 3 and result["pieces"] > 10


def _error_line(capsys) -> str:
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("forgetfilter: error:")]
    assert len(lines) == 1
    return lines[0]


def test_broken_files_and_settings_are_one_line_errors(ingested, tmp_path, capsys):
    _, args, _ = ingested
    good = tmp_path / "good"
    good.mkdir()
    write_jsonl(good / "a.jsonl", make_corpus()[0])
    pq.write_table(pa.table({"prompt": ["q"] * 50, "response": ["a"] * 50}), tmp_path / "whole.parquet")
    (good / "b.parquet").write_bytes((tmp_path / "whole.parquet").read_bytes()[:200])  # truncated
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "a_file").write_text("x")

    def run(**over) -> tuple[int, str]:
        a = list(args)
        for flag, value in over.items():
            a[a.index(f"--{flag}") + 1] = value
        rc = main(["ingest", *a])
        return rc, _error_line(capsys)

    cases = {
        "truncated Parquet among good files": (dict(input=str(good), output=str(tmp_path / "o1")), "b.parquet"),
        "empty corpus": (dict(input=str(tmp_path / "empty.jsonl"), output=str(tmp_path / "o2")), "data.input has no usable row"),
        "safety set with no rows": (dict(safety=str(tmp_path / "empty.jsonl"), output=str(tmp_path / "o3")), "data.safety has no usable row"),
        "unwritable output": (dict(output=str(tmp_path / "a_file" / "out")), "cannot write there"),
        "input path that does not exist": (dict(input=str(tmp_path / "nope.jsonl"), output=str(tmp_path / "o4")), "path does not exist"),
    }
    for name, (over, message) in cases.items():
        rc, line = run(**over)
        assert rc == 2 and message in line, (name, rc, line)


def test_a_corpus_with_no_usable_row_keeps_the_reasons_and_stderr_holds_only_the_error(tmp_path, tiny_model):
    # As a scheduler runs it: a process of its own, with its own Ray, whose stderr is read alone.
    import subprocess
    import sys

    write_jsonl(tmp_path / "corpus.jsonl", [{"prompt": f"q{i}", "answer": f"a{i}"} for i in range(20)])
    write_jsonl(tmp_path / "safety.jsonl", make_corpus()[1])
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "pipeline", "ingest", "--input", str(tmp_path / "corpus.jsonl"),
                        "--safety", str(tmp_path / "safety.jsonl"), "--output", str(out), "--model", tiny_model],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines() == [
        f"forgetfilter: error: {tmp_path / 'corpus.jsonl'}: data.input has no usable row (20 read, 20 rejected; "
        f"most common reason: column 'response': missing (20 rows); every reason in {out / 'rejected'})"
    ], r.stderr
    rejected = _read(out / "rejected")
    assert rejected.height == 20 and set(rejected["reject_reason"]) == {"column 'response': missing"}
    assert sorted(rejected["answer"]) == sorted(f"a{i}" for i in range(20))  # the row itself, nothing lost
