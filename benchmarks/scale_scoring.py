"""Scoring at corpus scale: rows/s and peak driver / worker memory for 10k rows to millions.

Writes a synthetic tokenised corpus straight into a run directory's ``work/ingest`` (as the ingest
stage would), puts one micro Llama in as both model A and model B, and runs the real score stage
(Ray Data actor pool -> Parquet). A sampler thread records the resident memory of the driver and of
every Ray worker process, each scoring actor's CPU seconds (are all actors busy?) and, every 10 s,
a memory trace (growth or spikes?). Flat memory across sizes is the claim under test.

    python benchmarks/scale_scoring.py --rows 10000 100000 1000000 3000000 --rows-per-file 10000 --out benchmarks/scale_scoring.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import threading
import time

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import Config
from pipeline.models.tiny import build_tiny_model
from pipeline.runtime import rundir as layout
from pipeline.runtime.ray_env import init_ray
from pipeline.runtime.rundir import RunDir
from pipeline.stages.score import run_score

ROWS_PER_INPUT_FILE = 100_000
PROMPT, RESPONSE = 8, 16


def write_corpus(run: RunDir, n_rows: int, vocab: int, seed: int = 0) -> None:
    """Synthetic ingested shards: random token ids (8 prompt + 16 response), ids and short texts."""
    rng = np.random.default_rng(seed)
    os.makedirs(run.path(layout.INGEST), exist_ok=True)
    for start in range(0, n_rows, ROWS_PER_INPUT_FILE):
        n = min(ROWS_PER_INPUT_FILE, n_rows - start)
        ids = rng.integers(4, vocab, size=(n, PROMPT + RESPONSE), dtype=np.int32)
        rows = np.arange(start, start + n)
        table = pa.table({
            "example_id": pa.array([f"row-{i}" for i in rows]),
            "prompt": pa.array([f"synthetic prompt {i}" for i in rows]),
            "response": pa.array([f"synthetic response {i}" for i in rows]),
            "source_file": pa.array(["synthetic.parquet"] * n),
            "source_row": pa.array(rows),
            "input_ids": pa.FixedSizeListArray.from_arrays(ids.reshape(-1), PROMPT + RESPONSE).cast(pa.list_(pa.int32())),
            "prompt_len": pa.array(np.full(n, PROMPT, dtype=np.int32)),
        })
        pq.write_table(table, run.path(f"{layout.INGEST}/part-{start // ROWS_PER_INPUT_FILE:05d}.parquet"))


class MemorySampler(threading.Thread):
    """Peak memory of this process (the driver) and of its Ray's worker processes, every 0.5 s.

    Private memory is RSS minus shared pages: Ray workers map objects of the shared object store
    (bounded by its configured size, not by the corpus), which RSS counts in every process that
    touches them.
    """

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.driver = self.worker_rss = self.workers_private = 0
        self.by_process: dict[str, int] = {}  # peak private memory per kind of worker (its process title)
        self.by_pid: dict[int, int] = {}  # peak private memory per worker process
        self.titles: dict[int, set[str]] = {}  # the tasks each worker process ran (Ray reuses task workers)
        self.actor_cpu: dict[int, float] = {}  # CPU seconds of each scoring actor: are all of them busy?
        self._cpu_at_first_sight: dict[int, float] = {}  # (an idle actor of the previous size counts ~0)
        self.trace: list[list[int]] = []  # every 10 s: [second, driver RSS, scoring actors' private, other workers' private] (MiB)
        self._done = threading.Event()

    @property
    def worker_private(self) -> int:
        """The highest private memory any one worker reached."""
        return max(self.by_process.values(), default=0)

    @property
    def peak_process(self) -> str:
        """The process title of the worker that reached it."""
        return max(self.by_process, key=self.by_process.__getitem__, default="")

    def run(self) -> None:
        me = psutil.Process()
        start = last_trace = time.monotonic()
        while not self._done.is_set():
            driver = me.memory_info().rss
            self.driver = max(self.driver, driver)
            rss, private, actors, others = [], [], [0], [0]
            for p in me.children(recursive=True):  # this driver's own Ray: raylet -> workers
                try:
                    name = (p.cmdline() or [""])[0]
                    if name.startswith("ray::"):
                        m = p.memory_info()
                        rss.append(m.rss)
                        private.append(m.rss - m.shared)
                        self.by_process[name] = max(self.by_process.get(name, 0), m.rss - m.shared)
                        self.by_pid[p.pid] = max(self.by_pid.get(p.pid, 0), m.rss - m.shared)
                        self.titles.setdefault(p.pid, set()).add(name.removeprefix("ray::").split(".")[0])
                        if "PairScorer" in name:
                            t = p.cpu_times()
                            first = self._cpu_at_first_sight.setdefault(p.pid, t.user + t.system)
                            self.actor_cpu[p.pid] = t.user + t.system - first
                            actors.append(m.rss - m.shared)
                        else:
                            others.append(m.rss - m.shared)
                except (psutil.Error, IndexError):
                    continue
            if rss:
                self.worker_rss = max(self.worker_rss, max(rss))
                self.workers_private = max(self.workers_private, sum(private))
            if time.monotonic() - last_trace >= 10:
                last_trace = time.monotonic()
                self.trace.append([round(last_trace - start), driver >> 20, max(actors) >> 20, max(others) >> 20])
            time.sleep(0.5)

    def stop(self) -> None:
        self._done.set()
        self.join()


def bench(n_rows: int, model: str, cfg: Config) -> dict:
    root = tempfile.mkdtemp(prefix="ffscale")
    try:
        run = RunDir(root)
        write_corpus(run, n_rows, vocab=512)
        for rel in (layout.MODEL_A, layout.MODEL_B):
            shutil.copytree(model, run.path(rel))
        sampler = MemorySampler()
        sampler.start()
        t0 = time.perf_counter()
        result = run_score(cfg, run)
        seconds = time.perf_counter() - t0
        sampler.stop()
        files = run.fs.ls(run.path(layout.SCORES))
        assert result["rows"] == n_rows
        return {"rows": n_rows, "seconds": round(seconds, 1), "rows_per_s": round(n_rows / seconds),
                "output_files": len(files), "peak_driver_rss_mib": sampler.driver >> 20,
                "peak_worker_rss_mib": sampler.worker_rss >> 20, "peak_worker_private_mib": sampler.worker_private >> 20,
                "peak_all_workers_private_mib": sampler.workers_private >> 20, "peak_private_process": sampler.peak_process,
                "peak_private_mib_by_process": {k: v >> 20 for k, v in sorted(sampler.by_process.items())},
                "scoring_actor_cpu_seconds": sorted(round(v) for v in sampler.actor_cpu.values()),
                "trace_every_10s": {"columns": ["second", "driver_rss_mib", "max_scoring_actor_private_mib",
                                                "max_other_worker_private_mib"], "rows": sampler.trace}}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--rows-per-file", type=int, default=250_000, help="output.rows_per_file")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()
    cfg = Config.model_validate({
        "scoring": {"batch_size": 1024, "max_tokens_per_batch": 16384, "num_actors": 2, "cpus_per_actor": 1},
        "output": {"rows_per_file": args.rows_per_file},
        "ray": {"num_cpus": 4},
    })
    init_ray(cfg.ray)
    with tempfile.TemporaryDirectory() as d:
        texts = [f"synthetic prompt {i} synthetic response {i}" for i in range(2000)]
        model = build_tiny_model(os.path.join(d, "micro"), texts, vocab_size=512, hidden_size=64, num_layers=1)
        results = []
        for n in args.rows:
            r = bench(n, model, cfg)
            print(json.dumps(r), flush=True)
            results.append(r)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"config": cfg.scoring.model_dump(), "rows_per_file": cfg.output.rows_per_file,
                       "tokens_per_row": PROMPT + RESPONSE, "model": "Llama hidden 64, 1 layer, vocab 512",
                       "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
