import math

import torch

from pipeline.scoring.losses import IGNORE_INDEX, chunk_tokens, per_example_mean, response_token_nll
from pipeline.text.formatting import collate


def _manual_nll(logits: torch.Tensor, ids: list[int], start: int) -> float:
    """Mean NLL of ids[t] given logits at t-1, for t >= start."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    vals = [-logp[t - 1, ids[t]].item() for t in range(start, len(ids))]
    return sum(vals) / len(vals)


def _means(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return per_example_mean(*response_token_nll(logits, labels), labels.shape[0])


def test_prompt_and_padding_are_masked_and_eos_counts():
    torch.manual_seed(0)
    batch = collate([[5, 6, 7, 8, 2], [5, 9, 2]], [2, 1], pad_id=0)
    assert batch["labels"].tolist() == [[-100, -100, 7, 8, 2], [-100, 9, 2, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    logits = torch.randn(2, 5, 12)
    means, counts = _means(logits, batch["labels"])
    assert counts.tolist() == [3, 2]  # EOS (id 2) is in the loss
    assert math.isclose(means[0].item(), _manual_nll(logits[0], [5, 6, 7, 8, 2], 2), rel_tol=1e-5)
    assert math.isclose(means[1].item(), _manual_nll(logits[1], [5, 9, 2], 1), rel_tol=1e-5)


def test_padding_content_does_not_change_the_loss():
    torch.manual_seed(1)
    labels = torch.tensor([[IGNORE_INDEX, 3, 4, IGNORE_INDEX]])
    logits = torch.randn(1, 4, 8)
    other = logits.clone()
    other[0, 3] += 100.0  # the last position predicts nothing that counts
    assert torch.allclose(_means(logits, labels)[0], _means(other, labels)[0])


def test_example_without_response_tokens_is_nan_not_zero():
    labels = torch.tensor([[IGNORE_INDEX] * 4, [IGNORE_INDEX, 1, 2, 3]])
    means, counts = _means(torch.randn(2, 4, 8), labels)
    assert counts.tolist() == [0, 3] and math.isnan(means[0].item()) and not math.isnan(means[1].item())


def test_bf16_logits_are_scored_in_float32():
    torch.manual_seed(3)
    labels = torch.tensor([[IGNORE_INDEX, 1, 2]])
    nll, _ = response_token_nll(torch.randn(1, 3, 16).bfloat16(), labels)
    assert nll.dtype == torch.float32


def test_head_on_response_positions_in_chunks_equals_full_logits_and_gradients():
    """Projecting only response positions, a few at a time, with recompute, changes nothing."""
    torch.manual_seed(4)
    head = torch.nn.Linear(6, 11, bias=False)
    hidden = torch.randn(3, 7, 6, requires_grad=True)
    labels = collate([[1, 2, 3, 4, 5, 6, 7], [1, 2, 3], [4, 5, 6, 7, 8]], [3, 1, 4], pad_id=0)["labels"]
    full_nll, full_rows = response_token_nll(head(hidden), labels)
    (g_full,) = torch.autograd.grad(full_nll.sum(), hidden)
    nll, rows = response_token_nll(hidden, labels, head, chunk=2, recompute=True)
    (g,) = torch.autograd.grad(nll.sum(), hidden)
    assert rows.tolist() == full_rows.tolist() == [0, 0, 0, 0, 1, 1, 2]
    assert torch.allclose(nll, full_nll, atol=1e-6) and torch.allclose(g, g_full, atol=1e-6)
    assert g[1, 3:].abs().sum() == 0  # padding positions get no gradient


def test_chunk_size_bounds_the_float32_logits():
    assert chunk_tokens(128_256) == (1 << 30) // (4 * 128_256)
    assert chunk_tokens(10**12) == 1
