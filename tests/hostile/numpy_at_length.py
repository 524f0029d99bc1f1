"""numpy allocates n x n float64 in forward: 32 GiB at n=64k (shapes are ints on fakes)."""
import numpy as np
from torch import nn


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x):
        n = x.shape[1]
        scratch = np.zeros((n, n))
        scratch[-1, -1] = 1.0                        # touch it: the pages become real
        return self.proj(x) * float(scratch[-1, -1])
