"""Memory of Ray Data's pooled task workers (Parquet read, re-cut, write) without the models.

The score stage's data path with a pass-through actor instead of ``PairScorer``: the same input
shards as ``scale_scoring.py``, ``scoring_input``, a two-actor pool and ``write_dataset_shards``.
It runs in seconds, so corpus sizes and allocator settings can be compared quickly. For the
peak worker it also lists its largest anonymous mappings: Arrow's mimalloc reserves 1 GiB regions,
glibc uses ``[heap]`` and 64 MiB arenas, which says whose memory it is.

    python benchmarks/io_memory.py --rows 1000000 3000000
    python benchmarks/io_memory.py --rows 1000000 --worker-env ARROW_DEFAULT_MEMORY_POOL=system
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
import time

import pyarrow as pa
from scale_scoring import MemorySampler, write_corpus  # this folder is on sys.path when run as a script

from pipeline.config import Config
from pipeline.data.shards import write_dataset_shards
from pipeline.runtime import rundir as layout
from pipeline.runtime.ray_env import init_ray
from pipeline.runtime.rundir import RunDir
from pipeline.stages.score import scoring_input

MAPPING = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$")


class PassThrough:
    """Stands in for the scoring actor: adds one column, computes nothing."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        return batch.append_column("forgetting", pa.array([0.0] * batch.num_rows))


def anon_mappings(pid: int, top: int = 4) -> list[str]:
    """The largest anonymous mappings of a process: 'size MiB (resident MiB) name'."""
    maps, cur = [], None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            m = MAPPING.match(line)
            if m:
                cur = [(int(m.group(2), 16) - int(m.group(1), 16)) >> 20, 0, m.group(3) or "anon"]
                maps.append(cur)
            elif line.startswith("Anonymous:") and cur is not None:
                cur[1] = int(line.split()[1]) >> 10
    return [f"{size} MiB ({res} resident) {name}" for size, res, name in sorted(maps, key=lambda m: -m[1])[:top]]


def bench(n_rows: int, cfg: Config) -> dict:
    import ray

    root = tempfile.mkdtemp(prefix="ffio")
    try:
        run = RunDir(root)
        write_corpus(run, n_rows, vocab=512)
        sampler = MemorySampler()
        sampler.start()
        t0 = time.perf_counter()
        ds = scoring_input(run, run.shards(layout.INGEST), cfg.scoring.batch_size * cfg.scoring.batches_per_task)
        ds = ds.map_batches(PassThrough, batch_size=cfg.scoring.batch_size, batch_format="pyarrow",
                            compute=ray.data.ActorPoolStrategy(size=cfg.scoring.num_actors), num_cpus=cfg.scoring.cpus_per_actor)
        write_dataset_shards(ds, os.path.join(root, "out"), None, cfg.output)
        seconds = time.perf_counter() - t0
        sampler.stop()
        peak = sampler.by_pid
        top = max(peak, key=peak.__getitem__)
        return {"rows": n_rows, "seconds": round(seconds, 1), "peak_worker_private_mib": peak[top] >> 20,
                "peak_worker_ran": sorted(sampler.titles[top]), "peak_worker_mappings": anon_mappings(top),
                "other_workers_private_mib": sorted((v >> 20 for k, v in peak.items() if k != top), reverse=True)[:4]}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 3_000_000])
    ap.add_argument("--worker-env", nargs="*", default=[], metavar="KEY=VALUE", help="environment for every Ray worker")
    args = ap.parse_args()
    os.environ.update(kv.split("=", 1) for kv in args.worker_env)  # workers of an embedded Ray inherit it
    cfg = Config.model_validate({"scoring": {"batch_size": 1024, "num_actors": 2, "cpus_per_actor": 1},
                                 "output": {"rows_per_file": 10_000}, "ray": {"num_cpus": 4}})
    init_ray(cfg.ray)
    for n in args.rows:
        print(json.dumps({"worker_env": args.worker_env, **bench(n, cfg)}), flush=True)


if __name__ == "__main__":
    main()
