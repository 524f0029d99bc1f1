"""forward(batch) takes a dataclass holding the token ids: the sequence axis is inside it."""
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Batch:
    ids: torch.Tensor


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(100, 8)

    def forward(self, batch):
        return self.embed(batch.ids)


def example_input(seq_len, batch):
    return (Batch(torch.randint(0, 100, (batch, seq_len))),)
