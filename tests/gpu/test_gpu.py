"""On a CUDA GPU (never in CI; run with ``pytest -m gpu`` where one is): the scoring actor and the
training engine on the device agree with their CPU runs, in the precision the GPU configs use."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import free_port, make_corpus, process_group

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _rows(model: str, n: int = 48) -> tuple[list[list[int]], list[int]]:
    from pipeline.models.loading import load_tokenizer
    from pipeline.text.formatting import encode_batch

    rows, _ = make_corpus()
    tok = load_tokenizer(model, False)
    chats = [[{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["response"]}] for r in rows[:n]]
    enc = encode_batch(tok, chats, 512, False)
    return [e.input_ids for e in enc], [e.prompt_len for e in enc]


def test_gpu_scores_equal_cpu_scores_within_bf16_error(tiny_model):
    from pipeline.scoring.scorer import PairScorer

    ids, prompt_lens = _rows(tiny_model)
    gpu = PairScorer(tiny_model, tiny_model, "log_ratio", 8192, "auto", use_gpu=True)
    cpu = PairScorer(tiny_model, tiny_model, "log_ratio", 8192, "fp32", use_gpu=False)
    assert next(gpu.models[0].parameters()).dtype == torch.bfloat16  # auto -> bf16, decided on the device
    a_gpu, _, n_gpu = gpu.losses(ids, prompt_lens)
    a_cpu, _, n_cpu = cpu.losses(ids, prompt_lens)
    assert (n_gpu == n_cpu).all()
    assert np.abs(np.log(a_gpu / a_cpu)).max() < 0.02


def test_a_zero_3_engine_trains_on_the_gpu(tiny_model):
    from pipeline.config import FinetuneConfig
    from pipeline.text.formatting import collate
    from pipeline.training.loop import autocast, build_engine

    with process_group("nccl", free_port()):
        ft = FinetuneConfig(zero_stage=3, gradient_checkpointing=True, batch_size=8, use_gpu=True, learning_rate=1e-3)
        engine = build_engine(ft, tiny_model, False, total_steps=30)
        compute = autocast(True, engine.device)
        ids, prompt_lens = _rows(tiny_model, 8)
        t = {k: v.to(engine.device) for k, v in collate(ids, prompt_lens, 0).items()}
        losses = []
        for _ in range(30):
            with compute:
                loss = engine(t["input_ids"], t["attention_mask"], t["labels"], recompute=True)[0].mean()
            engine.backward(loss)
            engine.step()
            losses.append(float(loss))
        assert engine.device.type == "cuda" and losses[-1] < 0.5 * losses[0]
