"""Stage 4, score: a Ray Data actor pool streams the corpus past models A and B.

Each actor holds both models; rows stream from the ingested shards through the pool into
Parquet, so memory stays bounded whatever the corpus size. The output keeps every column and adds
the losses, all forward-pass scores (``forgetting`` is the configured one), B's prompt states
(``col.PROMPT_STATE``; the safety set is scored too, into ``work/safety_scores``, for the filter to
compare them with), B's states of the replies read as prompts where ``filter.corroborate`` asks for
them (``col.REPLY_STATE``: one more pass of B) and, with
``scoring.refusals`` > 0, B's likelihood of refusing each prompt (``score_refusal``, an opt-in
corroborating score), so re-thresholding never needs the models again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline import columns as col
from pipeline.config import Config
from pipeline.data.shards import write_dataset_shards
from pipeline.errors import StageError
from pipeline.filtering.thresholds import REPLY_PROMPTS
from pipeline.runtime import rundir as layout
from pipeline.runtime.rundir import RunDir

if TYPE_CHECKING:
    from ray.data import Dataset


def scoring_input(run: RunDir, files: list[str], rows_per_block: int) -> Dataset:
    """The ingested shards as a Ray Dataset of blocks of at most ``rows_per_block`` rows.

    A Parquet read yields blocks of up to ``DataContext.target_max_block_size`` (128 MiB: hundreds
    of thousands of short rows), and Ray Data hands a block to one actor whole. Without the re-cut
    a 300k-row corpus was scored by one of two actors while the other idled.
    """
    import ray

    return ray.data.read_parquet(files, filesystem=run.arrow_fs()).repartition(target_num_rows_per_block=rows_per_block)


def refusal_replies(run: RunDir, count: int, seed: int) -> list[list[int]]:
    """``count`` of the safety set's responses (token ids, as ingested), a seeded sample in example-id
    order so a re-run scores the same ones: the refusals B has learned to give."""
    t = run.read_columns(layout.SAFETY, [col.EXAMPLE_ID, col.INPUT_IDS, col.PROMPT_LEN]).sort_by(col.EXAMPLE_ID)
    ids, prompt_lens = t.column(col.INPUT_IDS).to_pylist(), t.column(col.PROMPT_LEN).to_pylist()
    pick = sorted(np.random.default_rng(seed).choice(len(ids), min(count, len(ids)), replace=False).tolist())
    return [ids[i][prompt_lens[i]:] for i in pick]


def keeps_reply_states(cfg: Config) -> bool:
    """Whether the score stage keeps B's reply states: whenever ``filter.corroborate`` lists ``reply_prompts``,
    whatever the filter's method, so switching to a fixed cut and back never forces a re-score."""
    return REPLY_PROMPTS in cfg.filter.corroborate


def run_score(cfg: Config, run: RunDir) -> dict[str, Any]:
    """Stage ``score``: every ingested row's losses under A and B, and its forgetting scores."""
    import ray

    from pipeline.scoring.scorer import PairScorer  # torch and transformers: only where scoring runs

    sc = cfg.scoring
    use_gpu = sc.gpus_per_actor > 0
    scorer_args = {
        "model_a": run.uri(layout.MODEL_A), "model_b": run.uri(layout.MODEL_B), "method": sc.method,
        "max_tokens": sc.max_tokens_per_batch, "precision": cfg.model.precision, "use_gpu": use_gpu,
        "trust_remote_code": cfg.model.trust_remote_code, "max_new_tokens": sc.rouge_max_new_tokens,
        "threads": None if use_gpu else max(1, int(sc.cpus_per_actor)), "prompt_states": True,
    }

    def scored(rel: str, **extra: Any) -> Dataset:
        ds = scoring_input(run, run.shards(rel), rows_per_block=sc.batch_size * sc.batches_per_task)
        return ds.map_batches(PairScorer, fn_constructor_kwargs={**scorer_args, **extra}, batch_size=sc.batch_size,
                              batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=sc.num_actors),
                              num_cpus=sc.cpus_per_actor, num_gpus=sc.gpus_per_actor or None)

    # The safety set too (a few hundred rows): its prompt states are what the filter compares a cut with.
    outputs = ((layout.SAFETY, layout.SAFETY_SCORES, {"method": "log_ratio" if sc.method == "rouge" else sc.method}),
               (layout.INGEST, layout.SCORES, {"refusals": refusal_replies(run, sc.refusals, cfg.seed) if sc.refusals else None,
                                               "reply_states": keeps_reply_states(cfg)}))
    for source, dest, extra in outputs:
        tmp = run.staging(dest)
        write_dataset_shards(scored(source, **extra), run.path(tmp), run.arrow_fs(), cfg.output)
        expected, got = run.count_rows(source), run.count_rows(tmp)
        if got != expected:
            raise StageError(f"score: {expected} rows in {source}, {got} rows scored")
        run.commit(tmp, dest)
    return {"rows": got, "safety_rows": run.count_rows(layout.SAFETY_SCORES)}
