"""Warns at import: the user's own warnings stay visible."""
import warnings

from _tiny import Tiny

model = Tiny()

warnings.warn("the user's own warning", UserWarning, stacklevel=1)
