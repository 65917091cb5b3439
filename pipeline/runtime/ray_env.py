"""Starting or joining Ray. The only place that calls ``ray.init``.

The same command runs on a laptop (embedded local Ray, dashboard bound to 127.0.0.1) and on a
cluster (``RAY_ADDRESS`` or ``ray.address``, as ``ray job submit`` sets it).
"""

from __future__ import annotations

import logging
import os

from pipeline.config import RayConfig

WORKER_ENV = {
    "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_VERBOSITY": "error",
    "MALLOC_ARENA_MAX": "2",
}
"""Environment for every worker: no hub access at run time, no tokenizer thread oversubscription,
and at most two glibc malloc arenas. A Ray worker's native threads otherwise each get an arena
(up to 8 x cores) and keep freed memory in all of them: the scoring actor peaked at 3.2 GiB after
300k rows by default, 1.3 GiB with two arenas. The rest of its growth was freed memory kept in the
heap, which the actor hands back after each batch (pipeline/runtime/memory.py; RESULTS.md, "Scale")."""


_connected_here = False
"""Whether this process's Ray session was opened by ``init_ray`` (not by a caller that owns it)."""


def init_ray(cfg: RayConfig) -> None:
    """Join the configured cluster, or start a private local one sized so actors cannot starve tasks."""
    import ray

    global _connected_here
    if ray.is_initialized():
        return
    _connected_here = True
    for k, v in WORKER_ENV.items():
        os.environ.setdefault(k, v)
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        # On a cluster the job's runtime env (jobs/runtime_env.yaml) sets the workers' environment;
        # passing one here as well would conflict with it.
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        # A private single-node Ray: token auth guards nothing here and needs extra setup, so it
        # is off unless the user set it; the dashboard would only listen on loopback anyway.
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(
            address="local",  # never attach to a `ray start` head by accident; ray.address: auto does that
            num_cpus=cfg.num_cpus or max(os.cpu_count() or 1, 4),
            include_dashboard=False,
            dashboard_host="127.0.0.1",
            runtime_env={"env_vars": dict(WORKER_ENV)},
            logging_level=logging.WARNING,
        )
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = True
    ctx.print_on_execution_start = False


def shutdown_ray() -> None:
    """Close the Ray session ``init_ray`` opened, if it opened one.

    The command line calls it before its output streams are restored: worker output reaches the
    driver asynchronously, and lines still in flight are flushed by the shutdown, not after it.
    """
    global _connected_here
    if _connected_here:
        import ray

        ray.shutdown()
        _connected_here = False
