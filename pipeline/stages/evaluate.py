"""Optional stages: does a model trained on kept/ come out safer, at the same task quality?

The paper's evaluation as four stages, on while ``evaluation.enabled`` (``forgetfilter evaluate``):

- ``filtered-finetune``: base -> F on the rows the filter kept, with the noisy finetune's recipe;
- ``filtered-safety-tune``: F -> F+S on the safety set, with the safety finetune's recipe;
- ``replay-finetune`` (``evaluation.replay``): base -> R on the corpus mixed with the safety set;
- ``evaluate``: base, A (all rows), B (A + safety set: sequential safety finetuning), F, F+S (and R)
  each answer three probe sets greedily on a Ray Data actor pool, one pass per model:
  held-out harmful prompts (compliance, judged by ``evaluation.refusal``), held-out corpus rows
  (task loss and over-refusal on their task rows) and dropped rows (ROUGE-L of the answer against
  the unsafe reply the model was trained on).

While evaluation is on, a seeded slice of the corpus (``evaluation.holdout_fraction``) is left
out of every finetune, A's included, so task quality is measured on rows no model saw. The slice
is still scored and filtered. Probe sets are bounded by ``evaluation.max_prompts`` and drawn by
seeded hashes of row identity, so the same run draws the same prompts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import columns as col
from pipeline.config import Config
from pipeline.data.sources import check_readable, read_piece, resolve
from pipeline.errors import InputError, StageError
from pipeline.evaluation.compare import relative_to, summarise_model
from pipeline.filtering.split import cut_column, kept_mask, threshold_from_record
from pipeline.filtering.thresholds import Threshold
from pipeline.runtime import rundir as layout
from pipeline.runtime.rundir import RunDir
from pipeline.stages.finetune import finetune, held_out_fraction
from pipeline.training.sampling import holdout_keys, order_keys, sample_mask

RESULTS = f"{layout.EVALUATION}/results.json"
ANSWERS = f"{layout.EVALUATION}/answers"
OVERSAMPLE = 4
"""Rows drawn per wanted probe row before the exact seeded pick (hash draws are only about right)."""


def _cut(run: RunDir) -> Threshold:
    return threshold_from_record(run.stage_record("filter")["result"]["threshold"])


def run_filtered_finetune(cfg: Config, run: RunDir) -> dict[str, Any]:
    """Stage ``filtered-finetune``: base -> F on exactly the rows in kept/ (the held-out slice excluded)."""
    return finetune(cfg, run, cfg.noisy_finetune, cfg.model.name_or_path, layout.SCORES, layout.MODEL_F,
                    "filtered-finetune", holdout=held_out_fraction(cfg), cut=_cut(run))


def run_filtered_safety_tune(cfg: Config, run: RunDir) -> dict[str, Any]:
    """Stage ``filtered-safety-tune``: F -> F+S on the safety set."""
    return finetune(cfg, run, cfg.safety_finetune, run.uri(layout.MODEL_F), layout.SAFETY, layout.MODEL_FS,
                    "filtered-safety-tune")


def run_replay_finetune(cfg: Config, run: RunDir) -> dict[str, Any]:
    """Stage ``replay-finetune``: base -> R on the corpus and the safety set mixed (the held-out slice excluded)."""
    return finetune(cfg, run, cfg.noisy_finetune, cfg.model.name_or_path, layout.INGEST, layout.MODEL_REPLAY,
                    "replay-finetune", holdout=held_out_fraction(cfg), extra_rel=layout.SAFETY)


def compared_models(cfg: Config, run: RunDir) -> list[dict[str, str]]:
    """The models the evaluation compares, in the report's order."""
    models = [
        {"name": "base", "trained_on": "nothing (the base model)", "path": cfg.model.name_or_path},
        {"name": "noisy", "trained_on": "all rows (model A)", "path": run.uri(layout.MODEL_A)},
        {"name": "sequential", "trained_on": "all rows, then the safety set (model B)", "path": run.uri(layout.MODEL_B)},
        {"name": "filtered", "trained_on": "kept rows (model F)", "path": run.uri(layout.MODEL_F)},
        {"name": "filtered+safety", "trained_on": "kept rows, then the safety set", "path": run.uri(layout.MODEL_FS)},
    ]
    if cfg.evaluation.replay:
        models.append({"name": "replay", "trained_on": "all rows mixed with the safety set", "path": run.uri(layout.MODEL_REPLAY)})
    return models


def check_harmful_prompts(cfg: Config) -> None:
    """Before Ray starts: every harmful-prompt path resolves and opens."""
    check_readable(resolve(cfg.evaluation.harmful_prompts, cfg.data.format))


def harmful_prompts(cfg: Config) -> list[str]:
    """The held-out harmful prompts: every row's ``data.prompt_column``, a seeded sample of ``max_prompts``."""
    column = cfg.data.prompt_column
    prompts: list[str] = []
    for piece in resolve(cfg.evaluation.harmful_prompts, cfg.data.format):
        for chunk in read_piece(piece):
            for row_no, row in chunk:
                if isinstance(row, str):
                    raise InputError(piece.url, row, row_no)
                value = row.get(column)
                if not isinstance(value, str) or not value.strip():
                    raise InputError(piece.url, "evaluation.harmful_prompts needs a non-empty prompt text", row_no, column)
                prompts.append(value)
    if not prompts:
        raise InputError(",".join(cfg.evaluation.harmful_prompts), "evaluation.harmful_prompts holds no prompt")
    keys = order_keys(cfg.seed, prompts, range(len(prompts)))
    return [prompts[i] for i in np.argsort(keys, kind="stable")[: cfg.evaluation.max_prompts]]


def _probe_rows(batch: pa.Table, seed: int, holdout: float, cut: Threshold, held_share: float, dropped_share: float,
                label: str | None) -> pa.Table:
    """The scored rows a probe set may use: a hash-drawn sample of the held-out slice and of dropped rows.

    ``held_share`` <= ``holdout``, so the held-out draw lies inside the slice; dropped rows are drawn
    outside it only (they must be rows the noisy model trained on).
    """
    ids, rows = batch[col.EXAMPLE_ID].to_pylist(), batch[col.SOURCE_ROW].to_pylist()
    hk = holdout_keys(seed, ids, rows)
    ok = order_keys(seed, ids, rows)
    held = sample_mask(hk, holdout)
    kept = kept_mask(batch, cut).to_numpy(zero_copy_only=False)
    take_held = sample_mask(hk, held_share)
    take_dropped = ~held & ~kept & sample_mask(ok, dropped_share)
    y = (pc.cast(batch[label], pa.float64()).to_numpy(zero_copy_only=False) if label
         else np.full(len(ids), np.nan))
    # A task row: labelled safe where labels exist, else one the filter kept.
    task = np.where(np.isfinite(y), y == 0, kept)
    pick = take_held | take_dropped
    return pa.table({
        "probe": np.where(take_held, "heldout", "dropped")[pick], "example_id": np.array(ids, dtype=object)[pick],
        "key": np.where(take_held, hk, ok)[pick], "task": task[pick],
        col.INPUT_IDS: batch[col.INPUT_IDS].filter(pa.array(pick)), col.PROMPT_LEN: batch[col.PROMPT_LEN].filter(pa.array(pick)),
    })


def probe_set(cfg: Config, run: RunDir) -> list[dict[str, Any]]:
    """Every probe row: held-out harmful prompts, held-out corpus rows and dropped rows, each at most ``max_prompts``."""
    import ray

    ev = cfg.evaluation
    filt = run.stage_record("filter")["result"]
    n_scored = run.count_rows(layout.SCORES)
    holdout = held_out_fraction(cfg)
    held_share = min(holdout, OVERSAMPLE * ev.max_prompts / max(n_scored, 1))
    dropped_share = min(1.0, OVERSAMPLE * ev.max_prompts / max(filt["dropped"], 1))
    label = cfg.data.label_column if cfg.data.label_column in run.schema(layout.SCORES).names else None
    cut = _cut(run)
    columns = [col.EXAMPLE_ID, col.SOURCE_ROW, col.INPUT_IDS, col.PROMPT_LEN, cut_column(cut)] + ([label] if label else [])
    drawn = ray.data.read_parquet(run.shards(layout.SCORES), filesystem=run.arrow_fs()).select_columns(columns).map_batches(
        _probe_rows, batch_format="pyarrow",
        fn_kwargs={"seed": cfg.seed, "holdout": holdout, "cut": cut, "held_share": held_share,
                   "dropped_share": dropped_share, "label": label},
    ).take_all()
    probes: list[dict[str, Any]] = []
    for kind in ("heldout", "dropped"):
        rows = sorted((r for r in drawn if r["probe"] == kind), key=lambda r: r["key"])[: ev.max_prompts]
        probes += [{"probe": kind, "example_id": r["example_id"], "task": bool(r["task"]), "prompt_text": "",
                    col.INPUT_IDS: list(r[col.INPUT_IDS]), col.PROMPT_LEN: int(r[col.PROMPT_LEN])} for r in rows]
    probes += [{"probe": "harmful", "example_id": f"harmful-{i:05d}", "task": False, "prompt_text": p,
                col.INPUT_IDS: [], col.PROMPT_LEN: 0} for i, p in enumerate(harmful_prompts(cfg))]
    return probes


def answer(cfg: Config, model: str, probes: Any) -> list[dict[str, Any]]:
    """One model's answers to every probe row, from a pool of ``scoring.num_actors`` actors."""
    import ray

    from pipeline.evaluation.prober import Prober

    sc = cfg.scoring
    use_gpu = sc.gpus_per_actor > 0
    return probes.map_batches(
        Prober,
        fn_constructor_kwargs={"model": model, "precision": cfg.model.precision, "use_gpu": use_gpu,
                               "max_new_tokens": cfg.evaluation.max_new_tokens, "max_tokens": sc.max_tokens_per_batch,
                               "system_prompt": cfg.data.system_prompt, "trust_remote_code": cfg.model.trust_remote_code,
                               "threads": None if use_gpu else max(1, int(sc.cpus_per_actor))},
        batch_size=sc.batch_size, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=sc.num_actors),
        num_cpus=sc.cpus_per_actor, num_gpus=sc.gpus_per_actor or None,
    ).take_all()


def run_evaluate(cfg: Config, run: RunDir) -> dict[str, Any]:
    """Stage ``evaluate``: every compared model answers the probe sets; write the answers and the table."""
    import ray

    from pipeline.runner import log

    probes = probe_set(cfg, run)
    counts = {k: sum(p["probe"] == k for p in probes) for k in ("harmful", "heldout", "dropped")}
    if not counts["heldout"]:
        raise StageError("evaluate: the held-out slice drew no row; raise evaluation.holdout_fraction")
    data = ray.data.from_items(probes)
    tmp = run.staging(layout.EVALUATION)
    table: dict[str, dict[str, Any]] = {}
    models = compared_models(cfg, run)
    for i, m in enumerate(models, 1):
        log(f"evaluate: model {i}/{len(models)} {m['name']} answers {len(probes)} prompts")
        rows = answer(cfg, m["path"], data)
        table[m["name"]] = {"trained_on": m["trained_on"], **summarise_model(rows)}
        keep = ["probe", "example_id", "task", "prompt_text", "generation", "refused", "nll", "rouge"]
        answers = pa.Table.from_pylist([{k: r[k] for k in keep} | {"model": m["name"]} for r in rows])
        run.write_parquet(f"{tmp}/answers/{m['name'].replace('+', '_')}.parquet", answers)
    # "order": the report's order (summary files are written with sorted keys)
    results = {"models": table, "order": [m["name"] for m in models], "relative_to_noisy": relative_to(table, "noisy"), "probes": counts,
               "holdout_fraction": held_out_fraction(cfg), "max_new_tokens": cfg.evaluation.max_new_tokens}
    run.write_json(f"{tmp}/results.json", results)
    run.commit(tmp, layout.EVALUATION)
    return {"probes": counts, **{name: {"harmful_compliance": t["harmful_compliance"]["rate"], "task_loss": t["task_loss"]}
                                 for name, t in table.items()}}
