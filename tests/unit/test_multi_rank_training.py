"""Two training ranks over gloo, as Ray Train runs them, without Ray: the loop's own batching
(``training.loop._epoch_batches``) on an odd row count gives every rank the same number of
micro-batches, so ZeRO-2 and ZeRO-3 neither hang nor drop an accumulation step; the loss goes
down, and the exported weights are the engine's gathered weights, whole, on rank 0."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from pipeline import columns as col
from tests.conftest import free_port, process_group

ROWS, BATCH, ACCUM, EPOCHS = 37, 4, 2, 3


class ListShard:
    """What ``ray.train.get_dataset_shard`` gives the loop, over rows in memory."""

    def __init__(self, ids: list[list[int]], prompt_lens: list[int]) -> None:
        self.ids, self.prompt_lens = ids, prompt_lens

    def iter_batches(self, batch_size: int, batch_format: str):
        for s in range(0, len(self.ids), batch_size):
            ids = np.empty(len(self.ids[s:s + batch_size]), dtype=object)
            ids[:] = [np.array(x) for x in self.ids[s:s + batch_size]]
            yield {col.INPUT_IDS: ids, col.PROMPT_LEN: np.array(self.prompt_lens[s:s + batch_size])}


def _rank(rank: int, world: int, port: int, stage: int, model_dir: str, out: str) -> None:
    import deepspeed

    from pipeline.config import FinetuneConfig
    from pipeline.models.loading import load_tokenizer
    from pipeline.text.formatting import collate, encode_batch
    from pipeline.training.loop import _consolidated_state_dict, _epoch_batches, build_engine

    torch.set_num_threads(1)
    torch.manual_seed(rank)
    with process_group("gloo", port, rank, world):  # what Ray Train sets up before the loop runs
        tok = load_tokenizer(model_dir)
        chats = [[{"role": "user", "content": f"Tell me about bees, number {i}."},
                  {"role": "assistant", "content": f"Bees make honey, number {i}." + " Buzz." * (i % 5)}] for i in range(ROWS)]
        enc = encode_batch(tok, chats, 96, truncate=False)
        shard = ListShard([e.input_ids for e in enc], [e.prompt_len for e in enc])
        ft = FinetuneConfig(zero_stage=stage, batch_size=BATCH, grad_accum=ACCUM, learning_rate=3e-3, warmup_ratio=0.0)
        engine = build_engine(ft, model_dir, False, total_steps=EPOCHS * 3)
        local_numel = sum(p.numel() for p in engine.module.lm.parameters())
        micro, losses = [], []
        for epoch in range(EPOCHS):
            n = 0
            for ids, prompt_lens in _epoch_batches(shard, BATCH, ACCUM, epoch, rank, world):
                t = collate(ids, prompt_lens, tok.pad_token_id)
                loss = engine(t["input_ids"], t["attention_mask"], t["labels"], recompute=True)[0].mean()
                engine.backward(loss)
                engine.step()
                losses.append(float(loss))
                n += 1
            micro.append(n)
        exported = _consolidated_state_dict(engine, stage)
        params = dict(engine.module.lm.named_parameters())
        with deepspeed.zero.GatheredParameters(list(params.values()), enabled=stage == 3):
            gathered = {k: v.detach().clone() for k, v in params.items()}
        result = {"micro": micro, "steps": engine.global_steps, "first": losses[0], "last": losses[-1],
                  "local_numel": local_numel, "full_numel": sum(v.numel() for v in gathered.values())}
        if rank == 0:
            result["export_equal"] = all(torch.equal(exported[k].float(), v.float()) for k, v in gathered.items())
            result["export_whole"] = all(exported[k].shape == v.shape for k, v in gathered.items())
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump(result, f)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("stage", [2, 3])
def test_two_ranks_odd_rows_equal_steps_trained_and_exported_whole(stage, tiny_model, tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_rank, args=(2, free_port(), stage, tiny_model, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    # 37 rows over 2 ranks: 18 each (one skipped); 5 micro-batches needed -> 6, a multiple of 2
    assert r0["micro"] == r1["micro"] == [6] * EPOCHS
    assert r0["steps"] == r1["steps"] == EPOCHS * 6 // ACCUM  # every accumulation step was taken
    assert r0["last"] < 0.7 * r0["first"] and r1["last"] < 0.7 * r1["first"]
    assert r0["export_whole"] and r0["export_equal"]
    if stage == 3:  # loaded partitioned (zero.Init): a rank never held the whole model
        assert r0["local_numel"] < r0["full_numel"] / 1.5
