"""The model-side loss: the decoder plus the LM head on response positions only gives exactly the
losses of the full Hugging Face forward, so scoring and training lose nothing by never building
the full logits."""

import torch

from pipeline.scoring.losses import per_example_mean, response_token_nll
from pipeline.text.formatting import collate


def test_response_positions_through_the_head_equal_the_full_forward(tiny_model):
    from pipeline.models.loading import load_model
    from pipeline.models.response_lm import ResponseLM

    lm = load_model(tiny_model)
    rlm = ResponseLM(lm)
    rlm.chunk = 3  # several chunks even on short rows
    batch = collate([[5, 6, 7, 8, 9, 10, 2], [5, 9, 2], [11, 12, 13, 14, 2]], [2, 1, 4], pad_id=0)
    with torch.inference_mode():
        full = lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        want = per_example_mean(*response_token_nll(full, batch["labels"]), 3)
        got = per_example_mean(*rlm(batch["input_ids"], batch["attention_mask"], batch["labels"]), 3)
    assert got[1].tolist() == want[1].tolist() == [5, 2, 1]
    assert torch.allclose(got[0], want[0], atol=1e-5), (got[0], want[0])


def test_softcapped_logits_are_scored_as_the_model_squashes_them(tiny_model):
    from pipeline.models.loading import load_model
    from pipeline.models.response_lm import ResponseLM

    lm = load_model(tiny_model)
    lm.config.final_logit_softcapping = 0.5
    hidden = torch.randn(4, lm.config.hidden_size)
    capped = ResponseLM(lm).head(hidden)
    assert capped.abs().max() <= 0.5
    assert torch.allclose(capped, torch.tanh(lm.get_output_embeddings()(hidden) / 0.5) * 0.5)
