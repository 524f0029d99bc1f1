"""A model whose forward branches on a tensor's value: it runs for real, but its cost
cannot be predicted on fake tensors (no values), so a memory budget cannot be checked."""

from torch import nn


class ValueBranch(nn.Module):
    def __init__(self, d_model: int = 16):
        super().__init__()
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x):
        if x.sum().item() > 0:          # the value decides the work
            return self.proj(x)
        return self.proj(x) * 2
