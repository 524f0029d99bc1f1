"""forward(batch) takes a dataclass holding the token ids and mask: the sequence axis is
inside it. Otherwise inputs_positional.py's model."""
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    pad_id: int = 0


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(100, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, batch):
        h = self.embed(batch.input_ids)
        h = h * batch.attention_mask.unsqueeze(-1)
        return self.attn(h, h, h, need_weights=False)[0]


def example_input(seq_len, batch):
    return (Batch(torch.randint(0, 100, (batch, seq_len)), torch.ones(batch, seq_len)),)
