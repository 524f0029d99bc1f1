"""A custom BaseException subclass from the constructor."""
from torch import nn


class Stop(BaseException):
    pass


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        raise Stop("stop here")
