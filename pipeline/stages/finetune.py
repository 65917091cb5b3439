"""Stages 2 and 3: noisy finetune (base -> A on the corpus) and safety finetune (A -> B on S).

Both are one Ray Train ``TorchTrainer`` running ``pipeline.training.loop.train_loop`` under
DeepSpeed. The final checkpoint is exported as a plain safetensors model directory that scoring
actors load directly.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from pipeline.config import Config, FinetuneConfig
from pipeline.errors import StageError
from pipeline.runtime.rundir import RunDir
from pipeline.training.loop import TRAIN_STATE, train_loop, use_bf16


def training_dataset(files: list[str], ft: FinetuneConfig, seed: int, filesystem: Any = None) -> tuple[Any, int]:
    """The tokenised rows to train on (a seeded sample when ``max_examples`` caps it) and their count."""
    import ray

    ds = ray.data.read_parquet(files, filesystem=filesystem).select_columns(["input_ids", "prompt_len"])
    n = ds.count()  # from Parquet metadata, no data read
    if ft.max_examples and n > ft.max_examples:
        ds = ds.random_sample(ft.max_examples / n, seed=seed)
        n = ft.max_examples
    return ds.randomize_block_order(seed=seed), n


def finetune(cfg: Config, run: RunDir, ft: FinetuneConfig, model_in: str, data_files: list[str], model_out_rel: str, name: str) -> dict[str, Any]:
    """Finetune ``model_in`` on ``data_files`` and commit the result to ``model_out_rel``."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    ds, n_rows = training_dataset(data_files, ft, cfg.seed, run.arrow_fs())
    bf16 = use_bf16(cfg.model.precision, ft.use_gpu)
    resources = {"CPU": ft.cpus_per_worker} | ({"GPU": 1} if ft.use_gpu else {})
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={
            "finetune": ft.model_dump(mode="json"), "model_dir": model_in, "seed": cfg.seed, "n_rows": n_rows,
            "bf16": bf16, "trust_remote_code": cfg.model.trust_remote_code, "label": name,
            "log_every": max(1, n_rows // (ft.batch_size * ft.num_workers * 5) or 1),
        },
        scaling_config=ScalingConfig(num_workers=ft.num_workers, use_gpu=ft.use_gpu, resources_per_worker=resources),
        run_config=RunConfig(
            name=f"{name}-{cfg.fingerprint('model', 'data', name.replace('-', '_'), 'seed')}",
            storage_path=run.uri("work/train"),
            failure_config=FailureConfig(max_failures=2),
            checkpoint_config=CheckpointConfig(num_to_keep=1),
        ),
        datasets={"train": ds},
    )
    try:
        result = trainer.fit()
    except Exception as err:  # Ray wraps worker failures; surface the worker's own last line
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        raise StageError(f"{name}: training failed: {lines[-1] if lines else type(err).__name__}") from err
    if result.checkpoint is None:
        raise RuntimeError(f"{name}: training finished without a checkpoint")
    tmp = run.staging(model_out_rel)
    with tempfile.TemporaryDirectory() as d:
        local = result.checkpoint.to_directory(os.path.join(d, "model"))
        os.remove(os.path.join(local, TRAIN_STATE))
        run.fs.put(local.rstrip("/") + "/", run.path(tmp), recursive=True)
    run.commit(tmp, model_out_rel)
    if run.local:  # the exported model is the result; Ray Train's copy only served restarts
        shutil.rmtree(result.path, ignore_errors=True)
    return {"rows": n_rows, "bf16": bf16, "final_loss": result.metrics.get("loss"),
            "tokens_per_s": result.metrics.get("tokens_per_s")}
