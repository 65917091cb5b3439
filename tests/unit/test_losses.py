import math

import torch

from pipeline.scoring.losses import IGNORE_INDEX, batch_mean_nll, per_example_mean_nll, token_nll
from pipeline.text.formatting import collate


def _manual_nll(logits: torch.Tensor, ids: list[int], start: int) -> float:
    """Mean NLL of ids[t] given logits at t-1, for t >= start."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    vals = [-logp[t - 1, ids[t]].item() for t in range(start, len(ids))]
    return sum(vals) / len(vals)


def test_prompt_and_padding_are_masked_and_eos_counts():
    torch.manual_seed(0)
    batch = collate([[5, 6, 7, 8, 2], [5, 9, 2]], [2, 1], pad_id=0)
    assert batch["labels"].tolist() == [[-100, -100, 7, 8, 2], [-100, 9, 2, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    logits = torch.randn(2, 5, 12)
    means, counts = per_example_mean_nll(logits, batch["labels"])
    assert counts.tolist() == [3, 2]  # EOS (id 2) is in the loss
    assert math.isclose(means[0].item(), _manual_nll(logits[0], [5, 6, 7, 8, 2], 2), rel_tol=1e-5)
    assert math.isclose(means[1].item(), _manual_nll(logits[1], [5, 9, 2], 1), rel_tol=1e-5)


def test_padding_content_does_not_change_the_loss():
    torch.manual_seed(1)
    labels = torch.tensor([[IGNORE_INDEX, 3, 4, IGNORE_INDEX]])
    logits = torch.randn(1, 4, 8)
    other = logits.clone()
    other[0, 3] += 100.0  # the last position predicts nothing that counts
    assert torch.allclose(per_example_mean_nll(logits, labels)[0], per_example_mean_nll(other, labels)[0])


def test_example_without_response_tokens_is_nan_not_zero():
    labels = torch.full((1, 4), IGNORE_INDEX)
    means, counts = per_example_mean_nll(torch.randn(1, 4, 8), labels)
    assert counts.item() == 0 and math.isnan(means.item())


def test_batch_loss_is_token_weighted():
    torch.manual_seed(2)
    labels = torch.tensor([[0, 1, 2, 3], [0, 1, IGNORE_INDEX, IGNORE_INDEX]])
    logits = torch.randn(2, 4, 6)
    nll, mask = token_nll(logits, labels)
    assert math.isclose(batch_mean_nll(logits, labels).item(), (nll.sum() / mask.sum()).item(), rel_tol=1e-6)
    assert mask.sum().item() == 4


def test_bf16_logits_are_scored_in_float32():
    torch.manual_seed(3)
    labels = torch.tensor([[IGNORE_INDEX, 1, 2]])
    logits = torch.randn(1, 3, 16)
    a = per_example_mean_nll(logits.bfloat16(), labels)[0]
    assert a.dtype == torch.float32
