"""The scoring actor: holds models A and B and computes each example's losses and forgetting scores.

One instance per Ray Data actor, so the two models are loaded once and reused for every batch.
Batches are cut into micro-batches by a token budget, longest rows first, to bound activation
memory and cut padding. Only response positions go through the LM head (``models.response_lm``).
The precision is resolved here, on the machine that holds the device, not on a CPU-only head node:
on CPU the weights stay fp32 and matmuls run under bf16 autocast where the CPU supports it; on GPU
the weights are loaded in bf16.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline import columns as col
from pipeline.errors import StageError
from pipeline.models.precision import use_bf16
from pipeline.runtime.memory import release_free_heap
from pipeline.scoring.losses import per_example_mean
from pipeline.scoring.rouge import rouge_drop
from pipeline.scoring.scores import compute_scores
from pipeline.text.formatting import collate, token_budget_batches


class PairScorer:
    """Callable class for ``Dataset.map_batches``: pyarrow batch in, same rows plus score columns out."""

    def __init__(self, model_a: str, model_b: str, method: str, max_tokens: int, precision: str, use_gpu: bool,
                 trust_remote_code: bool = False, max_new_tokens: int = 48, threads: int | None = None) -> None:
        import torch

        from pipeline.models.loading import load_model, load_tokenizer, resolve_model
        from pipeline.models.response_lm import ResponseLM

        if threads:
            torch.set_num_threads(threads)
        if use_gpu and not torch.cuda.is_available():
            # A silent CPU fallback would turn a GPU-hour job into weeks; fail where it is seen.
            raise StageError("score: scoring.gpus_per_actor > 0 but this actor sees no CUDA device")
        self.device = torch.device("cuda" if use_gpu else "cpu")
        bf16 = use_bf16(precision, use_gpu)
        dtype = torch.bfloat16 if bf16 and use_gpu else torch.float32
        path_a, path_b = resolve_model(model_a), resolve_model(model_b)
        self.models = [ResponseLM(load_model(p, trust_remote_code, dtype)).to(self.device) for p in (path_a, path_b)]
        self.tokenizer = load_tokenizer(path_a, trust_remote_code)
        self.method, self.max_tokens, self.max_new_tokens = method, max_tokens, max_new_tokens
        self.autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 and self.device.type == "cpu" else nullcontext()

    def losses(self, ids: list[list[int]], prompt_lens: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean response-token NLL under A and under B, and the number of response tokens, per row."""
        import torch

        n = len(ids)
        out = np.full((2, n), np.nan)
        counts = np.zeros(n, dtype=np.int64)
        for group in token_budget_batches([len(x) for x in ids], self.max_tokens):
            t = collate([ids[i] for i in group], [prompt_lens[i] for i in group], self.tokenizer.pad_token_id)
            t = {k: v.to(self.device) for k, v in t.items()}
            with torch.inference_mode(), self.autocast:
                for m, model in enumerate(self.models):
                    means, c = per_example_mean(*model(t["input_ids"], t["attention_mask"], t["labels"]), len(group))
                    out[m, group] = means.cpu().numpy()
            counts[group] = c.cpu().numpy()
        return out[0], out[1], counts

    def generations(self, ids: list[list[int]], prompt_lens: list[int]) -> list[list[str]]:
        """Greedy continuations of each prompt under A and under B (the paper's score)."""
        import torch

        pad = self.tokenizer.pad_token_id
        outs: list[list[str]] = [[], []]
        for start in range(0, len(ids), 16):
            prompts = [ids[i][: prompt_lens[i]] for i in range(start, min(start + 16, len(ids)))]
            width = max(len(p) for p in prompts)
            x = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.device)
            attn = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
            for m, model in enumerate(self.models):
                with torch.inference_mode(), self.autocast:
                    g = model.lm.generate(input_ids=x, attention_mask=attn, max_new_tokens=self.max_new_tokens,
                                       do_sample=False, pad_token_id=pad)
                outs[m] += self.tokenizer.batch_decode(g[:, width:], skip_special_tokens=True)
        return outs

    def __call__(self, batch: pa.Table) -> pa.Table:
        ids = batch.column(col.INPUT_IDS).to_pylist()
        prompt_lens = batch.column(col.PROMPT_LEN).to_pylist()
        loss_a, loss_b, counts = self.losses(ids, prompt_lens)
        cols: dict[str, Any] = {col.LOSS_A: loss_a, col.LOSS_B: loss_b, col.N_RESPONSE_TOKENS: counts}
        cols.update(compute_scores(loss_a, loss_b, counts))
        if self.method == "rouge":
            gen_a, gen_b = self.generations(ids, prompt_lens)
            targets = self.tokenizer.batch_decode([x[p:] for x, p in zip(ids, prompt_lens)], skip_special_tokens=True)
            cols[col.score_column("rouge")] = np.array([rouge_drop(a, b, t) for a, b, t in zip(gen_a, gen_b, targets)])
        cols[col.FORGETTING] = cols[col.score_column(self.method)]
        for name, values in cols.items():
            batch = batch.append_column(name, pa.array(values))
        # Without this the actor's memory grows with the corpus (freed batches stay in glibc's heap).
        release_free_heap()
        return batch
