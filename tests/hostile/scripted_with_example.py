"""A torch.jit.script module with example_input: its input is known, its layers are not."""
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x):
        return self.proj(x)


model = torch.jit.script(Tiny())


def example_input(seq_len, batch):
    return torch.randn(batch, seq_len, 4)
