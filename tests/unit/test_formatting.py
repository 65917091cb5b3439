from pipeline.models.loading import load_tokenizer
from pipeline.text.formatting import encode_batch, render_prompt, token_budget_batches


def _chat(prompt: str, response: str) -> list[dict]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]


def test_response_tokens_are_exactly_the_reply_and_end_of_turn(tiny_model):
    tok = load_tokenizer(tiny_model)
    enc = encode_batch(tok, [_chat("Tell me about bees.", "Bees make honey.")], 128, truncate=False)[0]
    prompt = tok.decode(enc.input_ids[: enc.prompt_len])
    response = tok.decode(enc.input_ids[enc.prompt_len:])
    assert prompt == render_prompt(tok, [{"role": "user", "content": "Tell me about bees."}])
    assert prompt.endswith("<|im_start|>assistant\n")
    assert response.startswith("Bees make honey.<|im_end|>")


def test_over_length_is_rejected_or_truncated(tiny_model):
    tok = load_tokenizer(tiny_model)
    long = _chat("Tell me about bees.", "bees " * 200)
    rejected = encode_batch(tok, [long], 40, truncate=False)[0]
    assert isinstance(rejected, str) and "data.max_length 40" in rejected
    cut = encode_batch(tok, [long], 40, truncate=True)[0]
    assert len(cut.input_ids) == 40 and cut.n_response_tokens > 0
    tiny_room = encode_batch(tok, [_chat("word " * 60, "ok")], 40, truncate=True)[0]
    assert isinstance(tiny_room, str) and "prompt alone" in tiny_room


def test_token_budget_batches_cover_every_row_once_within_budget():
    lengths = [5, 50, 7, 30, 30, 2, 100]
    batches = token_budget_batches(lengths, 64)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or max(lengths[i] for i in b) * len(b) <= 64


def test_length_grouped_batches_cut_padding_and_keep_every_row():
    import numpy as np

    from pipeline.text.formatting import length_grouped_batches

    rng = np.random.default_rng(0)
    lengths = list(rng.integers(10, 200, 128))
    batches = length_grouped_batches(lengths, 16, np.random.default_rng(1))
    assert sorted(i for b in batches for i in b) == list(range(128)) and {len(b) for b in batches} == {8}
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    naive = sum(max(lengths[i: i + 8]) * len(lengths[i: i + 8]) for i in range(0, 128, 8))
    assert padded < 0.8 * naive
    assert batches != length_grouped_batches(lengths, 16, np.random.default_rng(2))  # order is shuffled
    assert sorted(len(b) for b in length_grouped_batches(lengths[:13], 4, np.random.default_rng(3))) == [3, 3, 3, 4]


def test_an_empty_batch_encodes_to_nothing(tiny_model):
    # A chunk of a file can hold no usable row at all; the tokenizer raises on an empty batch.
    assert encode_batch(load_tokenizer(tiny_model), [], 128, truncate=False) == []


def test_a_row_the_chat_template_refuses_gets_the_templates_reason_and_the_others_encode(tiny_model):
    tok = load_tokenizer(tiny_model)
    tok.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    with_system = [{"role": "system", "content": "Be brief."}, *_chat("Tell me about bees.", "Bees make honey.")]
    good, refused, good_too = encode_batch(tok, [_chat("q", "a"), with_system, _chat("Tell me about bees.", "Bees.")],
                                           128, truncate=False)
    assert refused == "chat template: System role not supported"
    assert tok.decode(good.input_ids[good.prompt_len:]).startswith("a<|im_end|>")
    assert tok.decode(good_too.input_ids[good_too.prompt_len:]).startswith("Bees.<|im_end|>")
