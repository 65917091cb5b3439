"""Turning a row into model tokens with a loss mask that covers the response only.

The prompt is rendered with the model's chat template (when it has one) and tokenised separately
from the response, so the mask boundary is exact: measuring the response by tokenising it alone and
counting back from the end is off by one whenever BPE merges across the boundary. The end-of-turn /
EOS token stays in the response, so the model is trained (and scored) on stopping too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

Message = dict[str, str]

IGNORE_INDEX = -100
"""Label value for positions outside the response (prompt and padding); matches HF's convention."""

FALLBACK_TEMPLATE = "### Prompt:\n{prompt}\n### Response:\n"
"""Prompt layout for base models without a chat template."""


@dataclass(frozen=True)
class Encoded:
    """Token ids of prompt + response, and how many leading tokens are prompt (not in the loss)."""

    input_ids: list[int]
    prompt_len: int

    @property
    def n_response_tokens(self) -> int:
        return len(self.input_ids) - self.prompt_len


def split_messages(messages: Sequence[Message]) -> tuple[list[Message], str]:
    """Split a chat into the context and the final assistant reply that is scored."""
    if not messages or messages[-1].get("role") != "assistant":
        raise ValueError("last message must have role 'assistant'")
    return list(messages[:-1]), messages[-1]["content"]


def render_prompt(tokenizer: Any, context: list[Message]) -> str:
    """The text the model sees before it starts answering."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(context, tokenize=False, add_generation_prompt=True)
    prompt = "\n".join(m["content"] for m in context)
    return FALLBACK_TEMPLATE.format(prompt=prompt)


def render_response(tokenizer: Any, context: list[Message], response: str, prompt_text: str) -> str:
    """The response text as the chat template closes it (content plus end-of-turn markers)."""
    if getattr(tokenizer, "chat_template", None):
        full = tokenizer.apply_chat_template(
            context + [{"role": "assistant", "content": response}], tokenize=False
        )
        if full.startswith(prompt_text):
            return full[len(prompt_text):]
    return response + (tokenizer.eos_token or "")


def render_chat(tokenizer: Any, chat: Sequence[Message]) -> tuple[str, str] | str:
    """The prompt text and the response text of one chat, or a one-line reason it cannot be rendered.

    A chat template is code shipped with the model, and many refuse some chats on purpose
    (``raise_exception('System role not supported')``, roles that do not alternate). That is a fact
    about the row, not a broken run: the row is rejected with the template's own message.
    """
    try:
        context, response = split_messages(chat)
        prompt = render_prompt(tokenizer, context)
        return prompt, render_response(tokenizer, context, response, prompt)
    except Exception as err:  # noqa: BLE001 - whatever the template raises, it is this row's reason
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        return f"chat template: {detail}"


def encode_batch(
    tokenizer: Any, chats: Sequence[Sequence[Message]], max_length: int, truncate: bool
) -> list[Encoded | str]:
    """Encode chats; an item is an ``Encoded`` or a one-line reason it cannot be used.

    With ``truncate`` an over-long example keeps its prompt and loses the end of its response; it is
    still rejected if the prompt alone leaves no room for a response token.
    """
    rendered = [render_chat(tokenizer, chat) for chat in chats]
    texts = [r for r in rendered if not isinstance(r, str)]
    p_ids, r_ids = [], []
    if texts:  # a tokenizer called on an empty batch raises, and a chunk may have no usable row
        p_ids = tokenizer([p for p, _ in texts], add_special_tokens=False)["input_ids"]
        r_ids = tokenizer([r for _, r in texts], add_special_tokens=False)["input_ids"]
    encoded = zip(p_ids, r_ids)
    out: list[Encoded | str] = []
    for item in rendered:
        if isinstance(item, str):
            out.append(item)
            continue
        p, r = next(encoded)
        n = len(p) + len(r)
        if not r:
            out.append("response has no tokens")
        elif n > max_length and not truncate:
            out.append(f"too long: {n} tokens > data.max_length {max_length}")
        elif n > max_length and len(p) >= max_length:
            out.append(f"prompt alone is {len(p)} tokens >= data.max_length {max_length}")
        else:
            out.append(Encoded(list(p) + list(r)[: max_length - len(p)], len(p)))
    return out


def collate(input_ids: Sequence[Sequence[int]], prompt_lens: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch into ``input_ids``, ``attention_mask`` and ``labels`` (prompt and pad masked)."""
    import torch

    width = max(len(x) for x in input_ids)
    ids = np.full((len(input_ids), width), pad_id, dtype=np.int64)
    labels = np.full((len(input_ids), width), IGNORE_INDEX, dtype=np.int64)
    attn = np.zeros((len(input_ids), width), dtype=np.int64)
    for i, (x, p) in enumerate(zip(input_ids, prompt_lens)):
        n = len(x)
        ids[i, :n] = x
        attn[i, :n] = 1
        labels[i, p:n] = np.asarray(x[p:], dtype=np.int64)
    return {
        "input_ids": torch.from_numpy(ids),
        "attention_mask": torch.from_numpy(attn),
        "labels": torch.from_numpy(labels),
    }


def token_budget_batches(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Group row indices, longest first, so each padded micro-batch has at most ``max_tokens`` tokens.

    Sorting by length cuts padding; a row longer than the budget still gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        width = lengths[current[0]] if current else lengths[i]
        if current and width * (len(current) + 1) > max_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def length_grouped_batches(lengths: Sequence[int], n_batches: int, rng: np.random.Generator) -> list[list[int]]:
    """Split rows into ``n_batches`` batches of similar length, in random batch order.

    Used on each shuffled window of rows during training: sorting within the window and shuffling
    the batches keeps the training order random while most batches need little padding. Batch
    sizes differ by at most one row.
    """
    order = np.array(sorted(range(len(lengths)), key=lambda i: lengths[i]), dtype=np.int64)
    batches = [b.tolist() for b in np.array_split(order, n_batches)] if n_batches else []
    return [batches[i] for i in rng.permutation(len(batches))]
