"""The CLI contract: one-line errors with exit code 2, no traceback, for what a user can fix."""

import subprocess
import sys

import pytest


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--set", "scoring.bogus=1"], "forgetfilter: error: config: scoring.bogus: unknown key"),
        (["run", "--config", "missing.yaml"], "forgetfilter: error: missing.yaml: config file not found"),
        (["run", "--set", "filter.method=fixed"], "filter.value is required"),
        (["run", "--input", "x.jsonl", "--safety", "y.jsonl"], "output.dir: required"),
        (["run", "--input", "/nonexistent/x.jsonl", "--safety", "y.jsonl", "--output", "OUT"],
         "/nonexistent/x.jsonl: path does not exist"),
        (["evaluate", "--input", "x.jsonl", "--safety", "y.jsonl", "--output", "OUT"],
         "evaluation.harmful_prompts is required when evaluation.enabled is true"),
        # Checked before anything runs, not after the finetunes: the corpus is fine, the prompts are not there.
        (["evaluate", "--input", "GOOD", "--safety", "GOOD", "--output", "OUT", "--set", "evaluation.harmful_prompts=/nonexistent/h.jsonl"],
         "/nonexistent/h.jsonl: path does not exist"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(tmp_path, args, message):
    (tmp_path / "good.jsonl").write_text('{"prompt": "q", "response": "a"}\n')
    args = [a.replace("OUT", str(tmp_path / "out")).replace("GOOD", str(tmp_path / "good.jsonl")) for a in args]
    r = _cli(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("[")]
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_config_subcommand_prints_the_documented_reference():
    r = _cli("config")
    assert r.returncode == 0 and "scoring:" in r.stdout and "# Forgetting score used by the filter" in r.stdout
