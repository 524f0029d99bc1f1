"""A pairwise (B, n, n, 4) input whose sequence axis is declared: seq_dim = 2."""
import torch
from torch import nn


class Pairwise(nn.Module):
    seq_dim = 2

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, pairs):
        return self.proj(pairs).mean(1)


def example_input(seq_len, batch):
    return torch.randn(batch, seq_len, seq_len, 4)
