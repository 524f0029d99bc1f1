"""A plain number that follows seq_len inside a structure: archlint varies tensors only."""
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(100, 8)

    def forward(self, batch):
        return self.embed(batch["ids"][:, :batch["length"]])


def example_input(seq_len, batch):
    return ({"ids": torch.randint(0, 100, (batch, seq_len)), "length": seq_len},)
