"""`ray job submit` against a real local head with token auth: run, kill mid-run, resume, skip.

The head listens on loopback only and requires a token (RAY_AUTH_MODE=token), as a production
head would; the submitting CLI authenticates with the same token. Runs the job entrypoint and a
repository config exactly as the README tells users to.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import free_port, make_corpus, write_jsonl

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DATE = "2026-11-23"


@pytest.fixture(scope="module")
def head():
    """A `ray start --head --block` process group on loopback with token auth; killed afterwards."""
    token = secrets.token_hex(16)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    temp_dir = tempfile.mkdtemp(prefix="ffray", dir="/tmp")  # short: Ray's socket paths have a length limit
    dash = free_port()
    ports = ["--port", str(free_port()), "--dashboard-port", str(dash),
             "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
             "--metrics-export-port", str(free_port()), "--runtime-env-agent-port", str(free_port()),
             "--ray-client-server-port", str(free_port()), "--node-manager-port", str(free_port()),
             "--object-manager-port", str(free_port())]
    proc = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--dashboard-host", "127.0.0.1",
         "--include-dashboard", "true", "--num-cpus", "4", "--temp-dir", temp_dir, "--disable-usage-stats", *ports],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    address = f"http://127.0.0.1:{dash}"
    deadline = time.time() + 120
    while subprocess.run([str(BIN / "ray"), "job", "list", "--address", address], env=env,
                         capture_output=True).returncode != 0:
        assert proc.poll() is None and time.time() < deadline, "the Ray head did not come up"
        time.sleep(2)
    yield address, env
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def job_args(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("job")
    rows, safety = make_corpus()
    write_jsonl(root / "corpus.jsonl", rows)
    write_jsonl(root / "safety.jsonl", safety)
    return root, [
        "--config", "jobs/configs/demo.yaml", "--date", DATE,
        "--input", str(root / "corpus.jsonl"), "--safety", str(root / "safety.jsonl"), "--model", tiny_model,
        "--set", "noisy_finetune.epochs=4", "--set", "noisy_finetune.learning_rate=3e-3",
        "--set", "safety_finetune.epochs=2", "--set", "safety_finetune.learning_rate=3e-3",
        "--set", "noisy_finetune.train_layers=null", "--set", "safety_finetune.train_layers=null",
        "--set", "filter.method=drop_fraction", "--set", "filter.value=0.25", "--set", "evaluation.enabled=false",
    ]


def _submit(address: str, env: dict, args: list[str], out: str, *extra: str) -> subprocess.CompletedProcess:
    cmd = [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", ".",
           "--runtime-env", "jobs/runtime_env.yaml", *extra, "--",
           "python", "jobs/forgetfilter_job.py", *args, "--output", out]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def _split(out: Path) -> tuple[set, set]:
    def ids(d: str) -> set:
        return {i for f in sorted((out / d).glob("*.parquet")) for i in pq.read_table(f).column("example_id").to_pylist()}
    return ids("kept"), ids("dropped")


def _manifest(out: Path) -> dict:
    p = out / "manifest.json"
    return json.loads(p.read_text())["stages"] if p.exists() else {}


def test_submit_kill_resume_and_skip(head, job_args):
    address, env = head
    root, args = job_args

    # 1. an uninterrupted run; {date} in the output path becomes the run date
    full = _submit(address, env, args, str(root / "full" / "{date}"))
    assert full.returncode == 0, full.stdout[-3000:] + full.stderr[-2000:]
    full_out = root / "full" / DATE
    assert (full_out / "_SUCCESS").exists() and "report/report.md" in full.stdout
    kept, dropped = _split(full_out)
    assert len(kept) + len(dropped) == 96 and len(dropped) == 24

    # 2. the same run, killed with `ray job stop` once the noisy finetune is committed
    out = root / "resumed" / DATE
    sub_id = f"ff-kill-{secrets.token_hex(4)}"
    started = _submit(address, env, args, str(root / "resumed" / "{date}"), "--no-wait", "--submission-id", sub_id)
    assert started.returncode == 0, started.stderr[-2000:]
    deadline = time.time() + 600
    while "finetune" not in _manifest(out):
        assert time.time() < deadline, "the noisy finetune never finished"
        time.sleep(1)
    subprocess.run([str(BIN / "ray"), "job", "stop", "--address", address, sub_id], env=env, capture_output=True, timeout=120)
    status = subprocess.run([str(BIN / "ray"), "job", "status", "--address", address, sub_id], env=env,
                            capture_output=True, text=True).stdout.lower()
    assert "stopped" in status or "failed" in status, status
    assert not (out / "_SUCCESS").exists() and "report" not in _manifest(out)
    finetuned_at = _manifest(out)["finetune"]["finished_at"]

    # 3. re-submitting resumes after the last complete stage and gives the uninterrupted split
    resumed = _submit(address, env, args, str(root / "resumed" / "{date}"))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-2000:]
    assert "finetune: complete, skipped" in resumed.stdout
    assert _manifest(out)["finetune"]["finished_at"] == finetuned_at
    assert _split(out) == (kept, dropped)

    # 4. a date already done is skipped without work
    again = _submit(address, env, args, str(root / "resumed" / "{date}"))
    assert again.returncode == 0 and "already complete: nothing to do" in again.stdout, again.stdout[-2000:]
