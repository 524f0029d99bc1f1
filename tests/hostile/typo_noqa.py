"""A positional table too short, behind noqa comments with typos."""
import torch
from torch import nn


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.pos = nn.Embedding(512, 16)  # archlint: noqa: NOPE
        self.head = nn.Linear(16, 50)

    def forward(self, ids):
        positions = torch.arange(ids.size(1), device=ids.device)
        return self.head(self.embed(ids) + self.pos(positions))
