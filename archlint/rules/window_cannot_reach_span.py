"""AL103: sliding-window attention whose layers x window cannot reach the span."""

from __future__ import annotations

import math
from collections.abc import Iterable

from archlint.findings import Finding
from archlint.rules import Rule


class WindowCannotReachSpan(Rule):
    """Sliding-window attention cannot reach the required span.

    ## What it does
    Finds attention layers restricted to a window of ``w`` keys (a banded mask or a
    window parameter) and, with ``--span d``, reports when the stack's receptive field,
    ``1 + L*(w-1)`` for L causal windowed layers, stays below d. The fix gives the layers
    or the window the span needs.

    ## Why is this bad?
    Local attention trades the n^2 score matrix for a path that grows with distance:
    each layer moves information only ``w - 1`` positions, so a dependency d positions
    away needs ``ceil((d-1)/(w-1))`` layers (selection guide: n = 2048, w = 256 needs about 8).
    With fewer layers the dependency is simply out of reach.

    ## Example
    Two layers with a causal window of 8 keys reach 15 positions; checked with
    ``--span 512``.

    ## Fix
    More layers or a wider window (the message computes both), dilated windows, or a
    few global tokens / one global attention layer.
    """

    code = "AL103"
    name = "window-cannot-reach-span"
    severity = "warning"
    flagged = [("fixtures/sliding_window.py", {"span": 512})]
    clean = [("fixtures/sliding_window.py", {"span": 15}),
             ("fixtures/gpt_sdpa.py", {"span": 512})]

    def check(self, report) -> Iterable[Finding]:
        reach, span = report.reach, self.settings.span
        if reach is None or not span or span > self.settings.target_len:
            return
        windows = [row for row in reach.layers if row.kind == "attention" and _window(row)]
        if not windows:
            return
        rf = reach.receptive_field
        size = rf.size.at(self.settings.target_len)
        if rf.shape != "bounded" or size >= span:
            return
        window = max(_window(row) for row in windows)
        layers = len(windows)
        step = window - 1
        need_layers = math.ceil((span - 1) / step)
        need_window = math.ceil((span - 1) / layers) + 1
        yield self.finding(
            f"{layers} sliding-window attention layers x window {window} reach "
            f"{int(size)} positions < span {span}",
            fix=(f"use {need_layers} layers at window {window}, or window {need_window} with "
                 f"{layers} layers, or add global tokens / a global attention layer"),
            layer=windows[0].layer, location=windows[0].location)


def _window(row) -> int | None:
    """Keys a query sees (itself included) in a banded attention layer."""
    band = row.detail.get("band")
    if not band:
        return None
    lo, hi = band
    if math.isinf(lo) or math.isinf(hi):
        return None if math.isinf(lo) else int(-lo) + 1
    return int(hi - lo) + 1
