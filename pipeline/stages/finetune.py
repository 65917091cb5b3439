"""Stages 2 and 3: noisy finetune (base -> A on the corpus) and safety finetune (A -> B on S).

Both are one Ray Train ``TorchTrainer`` running ``pipeline.training.loop.train_loop`` under
DeepSpeed. The final checkpoint is exported as a plain safetensors model directory that scoring
actors load directly.
"""

from __future__ import annotations

from typing import Any

from pipeline import columns as col
from pipeline.config import Config, FinetuneConfig
from pipeline.errors import StageError
from pipeline.filtering.split import cut_column, kept_mask
from pipeline.filtering.thresholds import Threshold
from pipeline.runtime import rundir as layout
from pipeline.runtime.rundir import RunDir
from pipeline.training.loop import train_loop
from pipeline.training.sampling import KEY, holdout_keys, order_keys, sample_mask


def _keyed_sample(batch: Any, seed: int, fraction: float, holdout: float = 0.0, cut: Threshold | None = None) -> Any:
    """Add each row's order key and keep the rows in the sample (see ``training.sampling``).

    ``holdout``: leave out the evaluation's held-out slice. ``cut``: keep only the rows the filter
    kept (the evaluate stage's model F).
    """
    import pyarrow as pa

    ids, rows = batch[col.EXAMPLE_ID].to_pylist(), batch[col.SOURCE_ROW].to_pylist()
    keys = order_keys(seed, ids, rows)
    mask = sample_mask(keys, fraction)
    if holdout:
        mask &= ~sample_mask(holdout_keys(seed, ids, rows), holdout)
    if cut is not None:
        mask &= kept_mask(batch, cut).to_numpy(zero_copy_only=False)
    return batch.append_column(KEY, pa.array(keys)).filter(pa.array(mask)).select([*col.MODEL_INPUTS, KEY])


def training_dataset(files: list[str], ft: FinetuneConfig, seed: int, filesystem: Any = None, holdout: float = 0.0,
                     cut: Threshold | None = None, extra_files: list[str] = ()) -> tuple[Any, int]:
    """The tokenised rows to train on, in their seeded order, and their count.

    A sample of about ``max_examples`` rows when the corpus is larger. ``holdout`` and ``cut`` select
    rows of ``files`` (see ``_keyed_sample``); ``extra_files`` are added whole (the safety set mixed
    into a replay finetune). The sample is materialised in the object store (it is bounded by
    ``max_examples``) so every worker and every restart after a failure reads exactly the same rows
    in the same order.
    """
    import ray

    needed = [col.EXAMPLE_ID, col.SOURCE_ROW, *col.MODEL_INPUTS]
    parts = [(files, holdout, cut)] + ([(list(extra_files), 0.0, None)] if extra_files else [])
    reads = [ray.data.read_parquet(f, filesystem=filesystem).select_columns(needed + ([cut_column(c)] if c else []))
             for f, _, c in parts]
    n = sum(r.count() for r in reads)  # from Parquet metadata, no data read
    fraction = ft.max_examples / n if ft.max_examples and n > ft.max_examples else 1.0
    keyed = [r.map_batches(_keyed_sample, fn_kwargs={"seed": seed, "fraction": fraction, "holdout": h, "cut": c},
                           batch_format="pyarrow") for r, (_, h, c) in zip(reads, parts)]
    ds = (keyed[0].union(*keyed[1:]) if len(keyed) > 1 else keyed[0]).sort(KEY).materialize()
    return ds, ds.count()


def _ordered() -> Any:
    from ray.train import DataConfig

    options = DataConfig.default_ingest_options()
    options.preserve_order = True
    return options


def run_finetune(cfg: Config, run: RunDir) -> dict[str, Any]:
    """Stage ``finetune``: the base model -> model A on the ingested corpus."""
    return finetune(cfg, run, cfg.noisy_finetune, cfg.model.name_or_path, layout.INGEST, layout.MODEL_A, "finetune",
                    holdout=held_out_fraction(cfg))


def held_out_fraction(cfg: Config) -> float:
    """The share of the corpus no finetune may see: the evaluation's held-out slice, when it is on."""
    return cfg.evaluation.holdout_fraction if cfg.evaluation.enabled else 0.0


def run_safety_tune(cfg: Config, run: RunDir) -> dict[str, Any]:
    """Stage ``safety-tune``: model A -> model B on the ingested safety set."""
    return finetune(cfg, run, cfg.safety_finetune, run.uri(layout.MODEL_A), layout.SAFETY, layout.MODEL_B, "safety-tune")


def finetune(cfg: Config, run: RunDir, ft: FinetuneConfig, model_in: str, data_rel: str, model_out_rel: str, name: str,
             holdout: float = 0.0, cut: Threshold | None = None, extra_rel: str | None = None) -> dict[str, Any]:
    """Finetune ``model_in`` on the shards in ``data_rel`` and commit the result to ``model_out_rel``.

    ``name`` names the Ray Train run and labels the training log. ``holdout``, ``cut`` and
    ``extra_rel`` (shards added whole) choose the rows, see ``training_dataset``.
    """
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    # Checkpoints of an interrupted earlier attempt carry no optimizer state: retraining from the
    # start keeps "same seed, same model". Within this attempt, a failed worker group still restarts
    # from its last epoch checkpoint (FailureConfig).
    train_runs = f"{layout.TRAIN_RUNS}/{name}"
    run.remove(train_runs)
    tmp = run.staging(model_out_rel)
    ds, n_rows = training_dataset(run.shards(data_rel), ft, cfg.seed, run.arrow_fs(), holdout, cut,
                                  run.shards(extra_rel) if extra_rel else [])
    resources = {"CPU": ft.cpus_per_worker} | ({"GPU": 1} if ft.use_gpu else {})
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={
            "finetune": ft.model_dump(mode="json"), "model_dir": model_in, "seed": cfg.seed, "n_rows": n_rows,
            "precision": cfg.model.precision, "export_uri": run.uri(tmp), "trust_remote_code": cfg.model.trust_remote_code, "label": name,
            "log_every": max(1, n_rows // (ft.batch_size * ft.num_workers * 5) or 1),
        },
        scaling_config=ScalingConfig(num_workers=ft.num_workers, use_gpu=ft.use_gpu, resources_per_worker=resources),
        run_config=RunConfig(
            name=name,
            storage_path=run.uri(layout.TRAIN_RUNS),
            failure_config=FailureConfig(max_failures=2),
            checkpoint_config=CheckpointConfig(num_to_keep=1),
        ),
        datasets={"train": ds},
        # Every worker reads the whole (bounded) sample in key order and takes its own rows of
        # each window, so the split across workers is deterministic, unlike streaming_split.
        dataset_config=DataConfig(datasets_to_split=[], execution_options=_ordered()),
    )
    try:
        result = trainer.fit()
    except Exception as err:  # Ray wraps worker failures; surface the worker's own last line
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        raise StageError(f"{name}: training failed: {lines[-1] if lines else type(err).__name__}") from err
    if not run.exists(f"{tmp}/config.json"):
        raise StageError(f"{name}: training finished without exporting the model")
    run.commit(tmp, model_out_rel)
    # The exported model is the result; Ray Train's epoch checkpoints only served restarts.
    run.remove(train_runs)
    return {"rows": n_rows, "epochs": result.metrics.get("epoch"), "bf16": result.metrics.get("bf16"), "final_loss": result.metrics.get("loss"),
            "tokens_per_s": result.metrics.get("tokens_per_s"),
            "restored_from_epoch": result.metrics.get("restored_from_epoch", 0)}
