"""forward allocates n x 25,000 float64 in numpy (204.8 MB at n=1024): unseen by torch."""
import numpy as np
from torch import nn

WIDTH = 25_000


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x):
        scratch = np.ones((x.shape[1], WIDTH))          # every page written: resident
        return self.proj(x) * float(scratch[-1, -1])
