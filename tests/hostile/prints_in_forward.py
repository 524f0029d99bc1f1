"""print() in forward and at import: the report must stay valid JSON/SARIF."""
import sys

from torch import nn

print("hello from import")


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x):
        print("hello from forward")
        sys.stdout.write("{not json\n")
        return self.proj(x)
