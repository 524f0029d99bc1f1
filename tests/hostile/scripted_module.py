"""A torch.jit.script module: its layers' types are hidden from input inference."""
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)
    def forward(self, x):
        return self.proj(x)
model = torch.jit.script(Tiny())
