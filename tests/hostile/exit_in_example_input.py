"""sys.exit() in example_input."""
import sys

from _tiny import Tiny

model = Tiny()


def example_input(seq_len, batch):
    sys.exit()
