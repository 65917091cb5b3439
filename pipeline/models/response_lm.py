"""The causal LM as training and scoring use it: forward returns response-token NLLs, not logits.

Hugging Face's ``model(...).logits`` projects every position through the LM head; the loss needs
only the response positions (see ``scoring.losses``). So the decoder runs on its own and only
those positions' hidden states go through the head, a chunk at a time. One module for both uses,
so the trained objective and the scored one cannot drift apart; DeepSpeed wraps it whole, so its
ZeRO hooks see the decoder and the head as submodules.
"""

from __future__ import annotations

from typing import Any

import torch

from pipeline.scoring.losses import chunk_tokens, response_token_nll


class ResponseLM(torch.nn.Module):
    """Wraps a ``*ForCausalLM``; ``forward`` gives ``(nll per response token, its row)``."""

    def __init__(self, lm: Any) -> None:
        super().__init__()
        self.lm = lm
        text = lm.config.get_text_config()
        self.chunk = chunk_tokens(text.vocab_size)
        # Gemma-style models squash their logits; the loss must see the same logits the model does.
        self.softcap = getattr(text, "final_logit_softcapping", None)

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.lm.get_output_embeddings()(hidden)
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def decode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The decoder's last hidden states, [batch, positions, hidden]."""
        return self.lm.get_decoder()(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state

    def nll(self, hidden: torch.Tensor, labels: torch.Tensor, recompute: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(NLL per response token, its row) from ``decode``'s hidden states: the scorer keeps the states as well."""
        return response_token_nll(hidden, labels, self.head, self.chunk, recompute)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
                recompute: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        return self.nll(self.decode(input_ids, attention_mask), labels, recompute)
