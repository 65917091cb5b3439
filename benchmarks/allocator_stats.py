"""Where the scoring actor's memory goes: glibc heap in use vs freed-but-kept, and Arrow's pool.

Runs benchmarks/scale_scoring.py with the scoring actor subclassed to print, every 50 batches,
its private memory, glibc's ``mallinfo2`` (heap size, in use, free) and Arrow's allocated bytes,
and the thread the batch ran on. Used to find why the actor grew with the corpus (RESULTS.md,
"Scale"); the allocator's environment (MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_) is inherited
from this process by the local Ray's workers, so variants are set on the command line:

    python benchmarks/allocator_stats.py 300000
    MALLOC_MMAP_THRESHOLD_=262144 python benchmarks/allocator_stats.py 300000
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import threading

import psutil
import pyarrow as pa

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scale_scoring  # noqa: E402

import pipeline.stages.score as score_stage  # noqa: E402
from pipeline.scoring.scorer import PairScorer  # noqa: E402

FIELDS = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")


class StatsScorer(PairScorer):
    """The real scorer, plus a line of allocator statistics every 50 batches."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Built here, not at module level: ctypes structures cannot be pickled to the actor.
        mallinfo2 = type("mallinfo2", (ctypes.Structure,), {"_fields_": [(f, ctypes.c_size_t) for f in FIELDS]})
        self.libc = ctypes.CDLL("libc.so.6")
        self.libc.mallinfo2.restype = mallinfo2
        self.batches = 0

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = super().__call__(batch)
        self.batches += 1
        if self.batches % 50 == 1:
            mi = self.libc.mallinfo2()
            print("ALLOC", json.dumps({
                "batch": self.batches, "pid": os.getpid(), "private_mib": psutil.Process().memory_full_info().uss >> 20,
                "heap_mib": mi.arena >> 20, "heap_in_use_mib": mi.uordblks >> 20, "heap_free_mib": mi.fordblks >> 20,
                "mmapped_mib": mi.hblkhd >> 20, "arrow_mib": pa.total_allocated_bytes() >> 20,
                "arrow_pool": pa.default_memory_pool().backend_name, "thread": threading.get_ident()}), flush=True)
        return out


if __name__ == "__main__":
    score_stage.PairScorer = StatsScorer
    sys.argv = [sys.argv[0], "--rows", *(sys.argv[1:] or ["300000"]), "--rows-per-file", "10000"]
    scale_scoring.main()
