"""An infinite pure-Python loop in forward."""
from torch import nn


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x):
        count = 0
        while True:
            count += 1
