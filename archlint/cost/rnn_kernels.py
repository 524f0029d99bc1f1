"""``nn.LSTM`` on CPU: oneDNN's workspace and scratchpad, calibrated at other lengths.

``aten.lstm`` runs one ``mkldnn_rnn_layer`` per layer and direction. Training, it
returns a uint8 workspace that autograd keeps for backward; the fake kernel returns an
empty one. Both directions also allocate a scratchpad and reordered weights. All of it
is linear in the step count up to page rounding, so it is measured with the profiler
on zeros at two lengths (never the user's) and interpolated.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from torch.utils._python_dispatch import _disable_current_modes

from archlint.cost.kernels import OUTPUT_FIXES, TRANSIENTS, UNCACHED, Shapes, as_bytes, register

aten = torch.ops.aten


@register(OUTPUT_FIXES, aten.mkldnn_rnn_layer)
def _rnn_workspace(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Any:
    """Replace the fake (empty) workspace by one of the real kernel's size.

    The real kernel returns one only when training with autograd on.
    """
    if out[3] is None or not (args[15] and torch.is_grad_enabled()):
        return out
    line = _rnn_lines(*_rnn_key(args[0], args[1:7], args[7:15]))
    size = max(0, round(line.workspace(args[0].shape[0])))
    return (out[0], out[1], out[2], torch.empty((size,), dtype=out[3].dtype))


@register(TRANSIENTS, aten.mkldnn_rnn_layer)
def _rnn_forward_transients(*args: Any, **kwargs: Any) -> tuple[list[Shapes], Shapes]:
    """oneDNN's scratchpad and reordered weights, alive while the layer runs."""
    line = _rnn_lines(*_rnn_key(args[0], args[1:7], args[7:15]))
    train = args[15] and torch.is_grad_enabled()
    return [], as_bytes(line.forward(args[0].shape[0], train))


UNCACHED.add(aten.mkldnn_rnn_layer_backward)


@register(TRANSIENTS, aten.mkldnn_rnn_layer_backward)
def _rnn_backward_transients(*args: Any, **kwargs: Any) -> tuple[list[Shapes], Shapes]:
    # backward args: input, weight1-4, hx_, cx_tmp, ..., reverse(13), mode, hidden_size,
    # num_layers, has_biases, train, bidirectional, batch_sizes(20), batch_first(21)
    flags = (args[13], args[20], args[14], args[15], args[16], args[17], args[19], args[21])
    line = _rnn_lines(*_rnn_key(args[0], args[1:7], flags))
    return [], as_bytes(line.backward(args[0].shape[0]))


def _rnn_key(x: torch.Tensor, tensors: Any, flags: Any) -> tuple[Any, ...]:
    """Calibration key; the direction (``reverse``) does not change any size."""
    layout = tuple((tuple(t.shape), t.dtype) for t in tensors)
    flags = (False,) + tuple(tuple(a) if isinstance(a, list) else a for a in flags[1:])
    return tuple(x.shape[1:]), x.dtype, layout, flags


@dataclass(frozen=True)
class _RnnLines:
    """Bytes of one layer call as lines a + b·steps, measured at two lengths."""

    points: tuple[int, int]
    workspaces: tuple[int, int]
    forward_train: tuple[int, int]
    forward_infer: tuple[int, int]
    backward_: tuple[int, int]

    def _at(self, values: tuple[int, int], steps: int) -> float:
        (s1, s2), (v1, v2) = self.points, values
        return v1 + (v2 - v1) * (steps - s1) / (s2 - s1)

    def workspace(self, steps: int) -> float:
        return self._at(self.workspaces, steps)

    def forward(self, steps: int, train: bool) -> float:
        return self._at(self.forward_train if train else self.forward_infer, steps)

    def backward(self, steps: int) -> float:
        return self._at(self.backward_, steps)


@lru_cache(maxsize=256)
def _rnn_lines(rest: tuple[int, ...], dtype: torch.dtype,
               layout: tuple[tuple[tuple[int, ...], torch.dtype], ...],
               flags: tuple[Any, ...]) -> _RnnLines:
    """Measure one layer's hidden allocations at two lengths, long enough that page
    rounding stays under 0.5% (about 2 MB of workspace)."""
    batch, hidden = max(1, rest[0]), max(1, layout[4][0][-1])
    short = max(16, -(-(1 << 21) // (40 * batch * hidden)))
    rows: dict[str, list[int]] = {"ws": [], "train": [], "infer": [], "backward": []}
    flat = [list(a) if isinstance(a, tuple) else a for a in flags]
    with _disable_current_modes(), torch.enable_grad():   # a workspace needs grad mode
        for steps in (short, 2 * short):
            _measure_layer(steps, rest, dtype, layout, flat, rows)
    return _RnnLines((short, 2 * short),
                     *(tuple(rows[k]) for k in ("ws", "train", "infer", "backward")))


def _measure_layer(steps: int, rest: tuple[int, ...], dtype: torch.dtype,
                   layout: tuple[Any, ...], flat: list[Any], rows: dict[str, list[int]]) -> None:
    """Inference forward, training forward and backward of one layer, each profiled."""
    reverse, batch_sizes, mode, hidden_size, num_layers, has_biases, bidirectional, \
        batch_first = flat
    weights = [torch.zeros(shape, dtype=kind, requires_grad=True) for shape, kind in layout[:4]]
    x = torch.zeros((steps,) + rest, dtype=dtype)
    states = [torch.zeros(shape, dtype=kind) for shape, kind in layout[4:]]
    with torch.no_grad():
        _, extra = _hidden_bytes(lambda: aten.mkldnn_rnn_layer(x, *weights, *states, *flat, False))
    rows["infer"].append(extra)
    out, extra = _hidden_bytes(lambda: aten.mkldnn_rnn_layer(x, *weights, *states, *flat, True))
    rows["train"].append(extra)
    rows["ws"].append(out[3].numel() * out[3].element_size())
    out = [t.detach() for t in out]
    grads = [torch.ones_like(t) for t in out[:3]]
    _, extra = _hidden_bytes(lambda: aten.mkldnn_rnn_layer_backward(
        x, *weights, *states, *out[:3], *grads, reverse, mode, hidden_size, num_layers,
        has_biases, True, bidirectional, batch_sizes, batch_first, out[3]))
    rows["backward"].append(extra)


def _hidden_bytes(call: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``call`` under the profiler: its result, and its peak bytes above what it keeps."""
    from torch.profiler import ProfilerActivity, profile
    with _native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU],
                                            profile_memory=True) as prof:
        result = call()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    running = peak = 0
    for event in events:
        running += event.nbytes()
        peak = max(peak, running)
    return result, peak - running


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Kineto writes a ``USDT: profiler_start/stop`` line to fd 2 from C++ on every
    profiler session; this calibration run is archlint's business, not the user's."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
