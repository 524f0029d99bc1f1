"""Source lines of functional calls (``F.scaled_dot_product_attention(...)``).

Non-strict ``torch.export`` tags each node with ``meta["torch_fn"] = ("<name>_<k>", ...)``:
the k-th call of the torch function ``<name>``. :class:`CallSiteRecorder` is a
``TorchFunctionMode`` active around the export that counts the same calls and notes
the user's line for each, so a node maps back to the line that called the op.
"""

from __future__ import annotations

import sys
from collections import Counter

from torch.overrides import TorchFunctionMode

from archlint.graph import SourceLocation
from archlint.load.source import user_caller


class CallSiteRecorder(TorchFunctionMode):
    """Records ``(function name, call index) -> user source line`` for every torch call."""

    def __init__(self) -> None:
        super().__init__()
        self._counts: Counter[str] = Counter()
        self.sites: dict[tuple[str, int], SourceLocation] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", None)
        if name is not None:
            self._counts[name] += 1
            location = user_caller(sys._getframe(1))
            if location is not None:
                self.sites[(name, self._counts[name])] = location
        return func(*args, **(kwargs or {}))

    def site_of(self, torch_fn: tuple[str, str] | None) -> SourceLocation | None:
        """The user line for an export node's ``meta["torch_fn"]`` tag."""
        if not torch_fn:
            return None
        name, _, index = torch_fn[0].rpartition("_")
        if not index.isdigit():
            return None
        return self.sites.get((name, int(index)))
