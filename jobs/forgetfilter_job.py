"""Ray job entrypoint: the whole pipeline on whatever cluster the job lands on.

    ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env jobs/runtime_env.yaml -- \
        python jobs/forgetfilter_job.py --config jobs/configs/nightly.yaml [--date 2026-11-23] [--set k=v]

Takes the options of ``forgetfilter run``. Inside a job, Ray sets ``RAY_ADDRESS``, so the pipeline
joins the cluster instead of starting its own. Re-submitting the same command resumes at the first
unfinished stage; a date whose run is complete is skipped. Paths must be reachable from every node
(shared storage or an fsspec URL): the job's working directory is a temporary copy.
"""

from __future__ import annotations

import os
import sys

# `python jobs/forgetfilter_job.py` puts jobs/ on sys.path, not the working directory holding the package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipeline.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
