"""Driver memory over a whole run (ingest to report) as the corpus grows: the head node's budget.

Writes a synthetic JSONL corpus of N rows (1% verbatim duplicates, so the duplicate pass has work),
builds a micro Llama with its own tokenizer, and runs ``forgetfilter run`` in a fresh process per size
on an embedded Ray, with a sampler recording that process's RSS every 0.2 s. Each stage's peak comes from
the samples inside its time span (the manifest's timings). The models are tiny on purpose: what is
measured is what the driver holds per row, not model speed.

    python benchmarks/driver_memory.py --rows 100000 1000000 3000000 --out benchmarks/driver_memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import psutil

from pipeline.cli import main as cli
from pipeline.models.tiny import build_tiny_model

ROWS_PER_FILE = 500_000


def write_corpus(directory: str, n_rows: int) -> list[str]:
    """JSONL files of ``ROWS_PER_FILE`` rows; every 100th row repeats the row before it."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for start in range(0, n_rows, ROWS_PER_FILE):
        path = os.path.join(directory, f"part-{start // ROWS_PER_FILE:03d}.jsonl")
        with open(path, "w") as f:
            for i in range(start, min(n_rows, start + ROWS_PER_FILE)):
                j = i - 1 if i % 100 == 99 else i
                f.write(json.dumps({"prompt": f"question {j} about topic {j % 97}", "response": f"answer {j} is {j % 13} units"}) + "\n")
        paths.append(path)
    return paths


class Sampler(threading.Thread):
    """(seconds since start, RSS MiB) of this process every 0.2 s."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, int]] = []
        self.t0 = time.time()
        self._done = threading.Event()

    def run(self) -> None:
        me = psutil.Process()
        while not self._done.is_set():
            self.samples.append((time.time(), me.memory_info().rss >> 20))
            time.sleep(0.2)

    def stop(self) -> None:
        self._done.set()
        self.join()


def stage_peaks(samples: list[tuple[float, int]], stages: dict) -> dict[str, int]:
    """Peak RSS inside each stage's span: it ended at ``finished_at`` (second resolution) after ``seconds``."""
    out = {}
    for name, rec in stages.items():
        end = time.mktime(time.strptime(rec["finished_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone + 1
        inside = [m for t, m in samples if end - rec["seconds"] - 1 <= t <= end]
        out[name] = max(inside, default=0)
    return out


def bench(n_rows: int, model: str, work: str) -> dict:
    data = os.path.join(work, f"data-{n_rows}")
    out = os.path.join(work, f"run-{n_rows}")
    write_corpus(data, n_rows)
    with open(os.path.join(work, "safety.jsonl"), "w") as f:
        for i in range(200):
            f.write(json.dumps({"prompt": f"harmful request {i}", "response": "I can't help with that."}) + "\n")
    sampler = Sampler()
    sampler.start()
    t0 = time.time()
    rc = cli(["run", "--input", data, "--safety", os.path.join(work, "safety.jsonl"), "--output", out, "--model", model,
              "--set", "noisy_finetune.max_examples=2000", "--set", "noisy_finetune.epochs=1", "--set", "safety_finetune.epochs=1",
              "--set", "scoring.batch_size=1024", "--set", "scoring.max_tokens_per_batch=32768", "--set", "scoring.num_actors=2",
              "--set", "scoring.cpus_per_actor=1", "--set", "ray.num_cpus=4", "--set", "data.ingest_workers=2"])
    seconds = time.time() - t0
    sampler.stop()
    assert rc == 0
    manifest = json.load(open(os.path.join(out, "manifest.json")))["stages"]
    ingest = manifest["ingest"]["result"]["corpus"]
    result = {"rows": n_rows, "seconds": round(seconds), "peak_driver_rss_mib": max(m for _, m in sampler.samples),
              "driver_rss_at_start_mib": sampler.samples[0][1], "peak_by_stage_mib": stage_peaks(sampler.samples, manifest),
              "stage_seconds": {k: v["seconds"] for k, v in manifest.items()}, "duplicates": ingest["duplicates"],
              "pieces": ingest["pieces"]}
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(data, ignore_errors=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--out", help="write the results as JSON here")
    ap.add_argument("--one", nargs=3, metavar=("MODEL", "WORK", "RESULT"), help=argparse.SUPPRESS)  # a child: one size
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.one:
        model, work, result = args.one
        with open(result, "w") as f:
            json.dump(bench(args.rows[0], model, work), f)
        return
    results = []
    with tempfile.TemporaryDirectory() as work:
        texts = [f"question {i} about topic {i % 97} answer {i} is {i % 13} units harmful request I can't help with that."
                 for i in range(3000)]
        model = build_tiny_model(os.path.join(work, "micro"), texts, vocab_size=512, hidden_size=64, num_layers=1)
        for n in args.rows:
            # A fresh process per size: a driver that already ran a smaller corpus starts from a higher RSS.
            result = os.path.join(work, f"result-{n}.json")
            subprocess.run([sys.executable, __file__, "--rows", str(n), "--one", model, work, result], check=True)
            r = json.load(open(result))
            print(json.dumps(r), flush=True)
            results.append(r)
            if args.out:
                with open(args.out, "w") as f:
                    json.dump({"model": "Llama hidden 64, 1 layer, vocab 512", "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
