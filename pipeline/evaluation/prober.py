"""The evaluation actor: one model answers the probe prompts greedily and scores the held-out replies.

One instance per Ray Data actor, like the scoring actor: the model is loaded once and every batch
of probe rows goes through it. A probe row either carries tokens (corpus rows: ``input_ids`` and
``prompt_len``, prompt then reply) or only a prompt text (held-out harmful prompts), which is
rendered with the model's chat template here, where the tokenizer is.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipeline import columns as col
from pipeline.evaluation.refusal import is_refusal
from pipeline.models.inference import load_for_inference
from pipeline.scoring.generation import greedy_generate
from pipeline.scoring.rouge import rouge_f
from pipeline.scoring.scorer import mean_response_nll
from pipeline.text.formatting import render_prompt


class Prober:
    """Callable class for ``Dataset.map_batches``: probe rows in, plus generation, refused, nll, rouge."""

    def __init__(self, model: str, precision: str, use_gpu: bool, max_new_tokens: int, max_tokens: int,
                 system_prompt: str | None = None, trust_remote_code: bool = False, threads: int | None = None) -> None:
        inf = load_for_inference([model], precision, use_gpu, "evaluate", trust_remote_code, threads)
        self.model, self.tokenizer, self.device, self.autocast = inf.models[0], inf.tokenizer, inf.device, inf.autocast
        self.max_new_tokens, self.max_tokens, self.system_prompt = max_new_tokens, max_tokens, system_prompt

    def prompt_ids(self, text: str) -> list[int]:
        """A bare prompt as the model sees it in a chat (with the run's system prompt, as ingest adds it)."""
        chat = ([{"role": "system", "content": self.system_prompt}] if self.system_prompt else []) + [{"role": "user", "content": text}]
        return self.tokenizer(render_prompt(self.tokenizer, chat), add_special_tokens=False)["input_ids"]

    def __call__(self, batch: pa.Table) -> pa.Table:
        ids = batch.column(col.INPUT_IDS).to_pylist()
        plens = batch.column(col.PROMPT_LEN).to_pylist()
        texts = batch.column("prompt_text").to_pylist()
        prompts = [x[:p] if x else self.prompt_ids(t) for x, p, t in zip(ids, plens, texts)]
        gens = greedy_generate(self.model.lm, self.tokenizer, prompts, self.max_new_tokens, self.device, self.autocast)
        has_reply = [i for i, (x, p) in enumerate(zip(ids, plens)) if x and len(x) > p]
        nll, rouge = np.full(len(ids), np.nan), np.full(len(ids), np.nan)
        if has_reply:
            means, _ = mean_response_nll([self.model], [ids[i] for i in has_reply], [plens[i] for i in has_reply], self.max_tokens,
                                         self.tokenizer.pad_token_id, self.device, self.autocast)
            nll[has_reply] = means[0]
            refs = self.tokenizer.batch_decode([ids[i][plens[i]:] for i in has_reply], skip_special_tokens=True)
            rouge[has_reply] = [rouge_f(gens[i], ref) for i, ref in zip(has_reply, refs)]
        for name, values in (("generation", gens), ("refused", [is_refusal(g) for g in gens]), ("nll", nll), ("rouge", rouge)):
            batch = batch.append_column(name, pa.array(values))
        return batch
