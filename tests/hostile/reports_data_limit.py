"""Prints the RLIMIT_DATA and VmData its forward runs under (to stderr, via print)."""
import re
import resource

from torch import nn


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x):
        with open("/proc/self/status") as status:
            data = int(re.search(r"VmData:\s+(\d+) kB", status.read())[1]) * 1024
        print(f"limit={resource.getrlimit(resource.RLIMIT_DATA)[0]} data={data}")
        return self.proj(x)
