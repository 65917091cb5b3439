"""B's reply states: each row's reply read as a user's prompt, in the very form the safety set's prompts are
read, so the filter may compare the two (``filtering.prompts``). If the reply were rendered or read at
another position than a prompt, the vote would compare unlike states and mean nothing."""

import contextlib

import numpy as np
import torch

from pipeline.scoring.scorer import last_token_states, losses_and_states, prompt_projection, reply_prompts
from pipeline.text.formatting import encode_batch, render_prompt


def test_a_reply_is_read_as_a_prompt_and_its_state_taken_where_a_prompt_state_is(tiny_model):
    from pipeline.models.loading import load_model, load_tokenizer
    from pipeline.models.response_lm import ResponseLM

    tok = load_tokenizer(tiny_model)
    model = ResponseLM(load_model(tiny_model)).eval()
    replies = ["Sure, here is how to do it.", "Paris is the capital of France, and has been for a long time."]
    chats = [[{"role": "user", "content": q}, {"role": "assistant", "content": r}] for q, r in zip(("hi", "a question?"), replies)]
    rows = encode_batch(tok, chats, 512, False)
    ids = reply_prompts(tok, [e.input_ids for e in rows], [e.prompt_len for e in rows])
    # The reply's text, without the row's prompt or the end-of-turn marker, in a user turn.
    assert ids == [tok(render_prompt(tok, [{"role": "user", "content": r}]), add_special_tokens=False)["input_ids"]
                   for r in replies]
    proj = prompt_projection(model.lm.config.hidden_size)
    got = last_token_states(model, ids, 64, tok.pad_token_id, torch.device("cpu"), contextlib.nullcontext(), proj)
    # The same prompts as rows of their own (a response after each, padded in one batch): the prompt state.
    as_prompts = [x + [tok.eos_token_id] * 3 for x in ids]
    _, _, want = losses_and_states([model], as_prompts, [len(x) for x in ids], 4096, tok.pad_token_id, torch.device("cpu"),
                                   contextlib.nullcontext(), proj)
    assert got.shape == (2, proj.shape[1])
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert not np.allclose(got[0], got[1])
    assert reply_prompts(tok, [], []) == []  # an empty batch, as the losses' pass takes it


def test_states_come_out_fp32_under_the_cpu_bf16_autocast(tiny_model):
    # precision=auto runs CPU scoring under bf16 autocast where the CPU has bf16 (AMX, AVX512-BF16):
    # the projected states must still be fp32 numpy arrays, close to an fp32 run's.
    from pipeline.models.loading import load_model
    from pipeline.models.response_lm import ResponseLM

    model = ResponseLM(load_model(tiny_model)).eval()
    proj = prompt_projection(model.lm.config.hidden_size)
    ids = [[5, 6, 7, 8, 9, 10], [11, 12, 13, 14]]
    args = (ids, [3, 2], 4096, 0, torch.device("cpu"))
    _, _, fp32 = losses_and_states([model], *args, contextlib.nullcontext(), proj)
    _, _, bf16 = losses_and_states([model], *args, torch.autocast("cpu", dtype=torch.bfloat16), proj)
    assert bf16.dtype == np.float32
    np.testing.assert_allclose(bf16, fp32, atol=0.1 * np.abs(fp32).max())
