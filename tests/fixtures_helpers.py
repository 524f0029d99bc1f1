"""A model built in a test module, for the API path (no file to import)."""

from torch import nn


class TinyConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 2, 3, padding=1)

    def forward(self, x):
        return self.conv(x)
