"""The scoring actor: holds models A and B and computes each example's losses and forgetting scores.

One instance per Ray Data actor, so the two models are loaded once and reused for every batch.
Batches are cut into micro-batches by a token budget, longest rows first, to bound activation
memory and cut padding. Only response positions go through the LM head (``models.response_lm``).
The precision is resolved on the actor, not on a CPU-only head node (``models.inference``).
With ``prompt_states``, B's hidden state at each row's last prompt token (where it decides how to
answer), randomly projected to 64 floats, is kept too (``col.PROMPT_STATE``): the filter asks
whether a cut's prompts look to B like the safety set's (``filtering.prompts``).
With ``reply_states``, B also reads each row's reply as if it were a user's prompt, and its state at
the last token of that prompt is kept the same way (``col.REPLY_STATE``): one more pass of B, over the
replies alone, so the filter can ask whether a cut's *replies* look to B like the safety set's prompts.
With ``scoring.refusals`` > 0, B also scores a few of the safety set's refusals after each row's
prompt (``scores.REFUSAL``): one more pass of B per refusal, an opt-in score to corroborate a cut on.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline import columns as col
from pipeline.models.inference import load_for_inference
from pipeline.runtime.memory import release_free_heap
from pipeline.scoring.generation import greedy_generate
from pipeline.scoring.losses import per_example_mean
from pipeline.scoring.rouge import rouge_drop
from pipeline.scoring.scores import REFUSAL, compute_scores
from pipeline.text.formatting import collate, render_prompt, token_budget_batches


def mean_response_nll(models: list[Any], ids: list[list[int]], prompt_lens: list[int], max_tokens: int, pad_id: int, device: Any,
                      autocast: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean response-token NLL of each row under each model (``ResponseLM``s), shape [models, rows], and
    each row's response token count."""
    means, counts, _ = losses_and_states(models, ids, prompt_lens, max_tokens, pad_id, device, autocast)
    return means, counts


def losses_and_states(models: list[Any], ids: list[list[int]], prompt_lens: list[int], max_tokens: int, pad_id: int,
                      device: Any, autocast: Any, projection: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``mean_response_nll``'s two arrays and, given a ``projection`` [hidden, k], the *last* model's hidden state
    at each row's last prompt token times it, [rows, k] (``PROMPT_STATE``). The state comes out of the forward pass
    the loss needs anyway. Each micro-batch is collated and moved to the device once for all models."""
    import torch

    n = len(ids)
    means, counts = np.full((len(models), n), np.nan), np.zeros(n, dtype=np.int64)
    states = None if projection is None else np.full((n, projection.shape[1]), np.nan, dtype=np.float32)
    proj = None if projection is None else torch.from_numpy(projection).to(device)
    for group in token_budget_batches([len(x) for x in ids], max_tokens):
        t = collate([ids[i] for i in group], [prompt_lens[i] for i in group], pad_id)
        t = {k: v.to(device) for k, v in t.items()}
        with torch.inference_mode(), autocast:
            for j, model in enumerate(models):
                hidden = model.decode(t["input_ids"], t["attention_mask"])
                m, c = per_example_mean(*model.nll(hidden, t["labels"]), len(group))
                means[j, group] = m.float().cpu().numpy()
                if proj is not None and j == len(models) - 1:
                    # Right-padded, so a row's last prompt token sits at prompt_len - 1.
                    states[group] = _projected_at(hidden, [prompt_lens[i] - 1 for i in group], proj)
        counts[group] = c.cpu().numpy()
    return means, counts, states


def _projected_at(hidden: Any, positions: list[int], proj: Any) -> np.ndarray:
    """Each row's hidden state (``hidden`` [rows, positions, width]) at its position, times ``proj``."""
    import torch

    at = hidden[torch.arange(len(positions), device=hidden.device), torch.tensor(positions, device=hidden.device)]
    # In fp32 whatever the caller's autocast: under CPU bf16 autocast the product would come out
    # bf16, which numpy cannot hold, and the states would differ from one CPU to another.
    with torch.autocast(hidden.device.type, enabled=False):
        return (at.float() @ proj).cpu().numpy()


def reply_prompts(tokenizer: Any, ids: list[list[int]], prompt_lens: list[int]) -> list[list[int]]:
    """Each row's reply (its response tokens, decoded) rendered as a user's prompt, as token ids."""
    replies = tokenizer.batch_decode([x[p:] for x, p in zip(ids, prompt_lens)], skip_special_tokens=True)
    texts = [render_prompt(tokenizer, [{"role": "user", "content": r.strip()}]) for r in replies]
    # A tokenizer called on an empty batch raises; the losses' pass takes an empty batch in its stride.
    return tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []


def last_token_states(model: Any, ids: list[list[int]], max_tokens: int, pad_id: int, device: Any, autocast: Any,
                      projection: np.ndarray) -> np.ndarray:
    """``model``'s hidden state at each row's last token times ``projection`` [hidden, k]: [rows, k]."""
    import torch

    states = np.full((len(ids), projection.shape[1]), np.nan, dtype=np.float32)
    proj = torch.from_numpy(projection).to(device)
    for group in token_budget_batches([len(x) for x in ids], max_tokens):
        t = collate([ids[i] for i in group], [len(ids[i]) for i in group], pad_id)
        with torch.inference_mode(), autocast:
            hidden = model.decode(t["input_ids"].to(device), t["attention_mask"].to(device))
            states[group] = _projected_at(hidden, [len(ids[i]) - 1 for i in group], proj)
    return states


PROMPT_STATE_DIMS = 64
"""Floats kept per row of B's state at the last prompt token (``col.PROMPT_STATE``): 256 bytes a row."""


def prompt_projection(hidden_size: int, seed: int = 0) -> np.ndarray:
    """A fixed Gaussian projection [hidden_size, PROMPT_STATE_DIMS], scaled so distances keep their size.

    Why a random projection: the filter only compares distances between states and group
    centroids, and a Gaussian projection keeps distances to within a few percent at 64 dimensions
    (Johnson-Lindenstrauss) whatever the model's width, so each row carries 64 floats, not 576-8192.
    Seeded, so the corpus and the safety set (scored by different actors) share it.
    """
    return (np.random.default_rng(seed).standard_normal((hidden_size, PROMPT_STATE_DIMS)) / math.sqrt(PROMPT_STATE_DIMS)
            ).astype(np.float32)


def refusal_loglik(model: Any, ids: list[list[int]], prompt_lens: list[int], refusals: list[list[int]], max_tokens: int,
                   pad_id: int, device: Any, autocast: Any) -> np.ndarray:
    """Each row's mean log-likelihood per token, under ``model``, of each of ``refusals`` (response token
    ids) after the row's own prompt, averaged over the refusals (``scores.REFUSAL``)."""
    seqs = [x[:p] + r for x, p in zip(ids, prompt_lens) for r in refusals]
    means, _ = mean_response_nll([model], seqs, [p for p in prompt_lens for _ in refusals], max_tokens, pad_id, device, autocast)
    return -means[0].reshape(len(ids), len(refusals)).mean(axis=1)


def _state_column(states: np.ndarray) -> pa.Array:
    """[rows, k] floats as a fixed-size-list column (k floats a row)."""
    return pa.FixedSizeListArray.from_arrays(states.reshape(-1), states.shape[1])


class PairScorer:
    """Callable class for ``Dataset.map_batches``: pyarrow batch in, same rows plus score columns out."""

    def __init__(self, model_a: str, model_b: str, method: str, max_tokens: int, precision: str, use_gpu: bool,
                 trust_remote_code: bool = False, max_new_tokens: int = 48, threads: int | None = None,
                 refusals: list[list[int]] | None = None, prompt_states: bool = False, reply_states: bool = False) -> None:
        inf = load_for_inference([model_a, model_b], precision, use_gpu, "score", trust_remote_code, threads)
        self.models, self.tokenizer, self.device, self.autocast = inf.models, inf.tokenizer, inf.device, inf.autocast
        self.method, self.max_tokens, self.max_new_tokens = method, max_tokens, max_new_tokens
        self.refusals = refusals or []
        hidden = self.models[1].lm.config.get_text_config().hidden_size
        self.projection = prompt_projection(hidden) if prompt_states or reply_states else None
        self.prompt_states, self.reply_states = prompt_states, reply_states

    def losses(self, ids: list[list[int]], prompt_lens: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean response-token NLL under A and under B, and the number of response tokens, per row."""
        means, counts = mean_response_nll(self.models, ids, prompt_lens, self.max_tokens, self.tokenizer.pad_token_id, self.device,
                                          self.autocast)
        return means[0], means[1], counts

    def generations(self, ids: list[list[int]], prompt_lens: list[int]) -> list[list[str]]:
        """Greedy continuations of each prompt under A and under B (the paper's score)."""
        prompts = [x[:p] for x, p in zip(ids, prompt_lens)]
        return [greedy_generate(model.lm, self.tokenizer, prompts, self.max_new_tokens, self.device, self.autocast)
                for model in self.models]

    def __call__(self, batch: pa.Table) -> pa.Table:
        ids = batch.column(col.INPUT_IDS).to_pylist()
        prompt_lens = batch.column(col.PROMPT_LEN).to_pylist()
        (loss_a, loss_b), counts, states = losses_and_states(self.models, ids, prompt_lens, self.max_tokens,
                                                             self.tokenizer.pad_token_id, self.device, self.autocast,
                                                             self.projection if self.prompt_states else None)
        cols: dict[str, Any] = {col.LOSS_A: loss_a, col.LOSS_B: loss_b, col.N_RESPONSE_TOKENS: counts}
        cols.update(compute_scores(loss_a, loss_b, counts))
        if self.refusals:
            cols[col.score_column(REFUSAL)] = refusal_loglik(self.models[1], ids, prompt_lens, self.refusals, self.max_tokens,
                                                             self.tokenizer.pad_token_id, self.device, self.autocast)
        if self.method == "rouge":
            gen_a, gen_b = self.generations(ids, prompt_lens)
            targets = self.tokenizer.batch_decode([x[p:] for x, p in zip(ids, prompt_lens)], skip_special_tokens=True)
            cols[col.score_column("rouge")] = np.array([rouge_drop(a, b, t) for a, b, t in zip(gen_a, gen_b, targets)])
        cols[col.FORGETTING] = cols[col.score_column(self.method)]
        for name, values in cols.items():
            batch = batch.append_column(name, pa.array(values))
        if states is not None:
            batch = batch.append_column(col.PROMPT_STATE, _state_column(states))
        if self.reply_states:
            replies = last_token_states(self.models[1], reply_prompts(self.tokenizer, ids, prompt_lens), self.max_tokens,
                                        self.tokenizer.pad_token_id, self.device, self.autocast, self.projection)
            batch = batch.append_column(col.REPLY_STATE, _state_column(replies))
        # Without this the actor's memory grows with the corpus (freed batches stay in glibc's heap).
        release_free_heap()
        return batch
