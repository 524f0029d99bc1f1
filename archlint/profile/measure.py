"""A measured step on real tensors: peak memory and time, the ground truth.

The step is the one :mod:`archlint.cost.predict` predicts (same optimizer in steady
state, same loss, same autocast), so the two can be compared number for number.

Peak memory on CPU comes from ``torch.profiler``'s memory events (``profile_memory=True``:
one event per allocation and free of the c10 allocator): the running sum of their bytes,
at its maximum, on top of what was alive when profiling began (parameters, buffers and
optimizer state, summed over unique storages). On CUDA it is
``torch.cuda.max_memory_allocated``. Times come from a second, unprofiled step, so the
profiler's own overhead is not in them.

torch's allocator is not all a step costs: the model's numpy arrays and Python objects
are invisible to it. Beside it, the process's resident memory is measured over the same
profiled step (:mod:`archlint.memlimit`: the ``VmHWM`` peak, reset before the step, and
the resident size a thread polls every 0.5 ms, whichever is larger, above the ``VmRSS``
it started from): ``rss_step`` is what the step added to the process
from every allocator, torch's included (the first step: later ones reuse pages the C
allocator kept, so their growth says less).
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, tensorboard_trace_handler
from torch.utils._pytree import tree_map_only

from archlint import memlimit
from archlint.cost.fake import autocast, backward_from, make_inputs, preserved
from archlint.graph import InputSpec
from archlint.settings import Settings

_OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


@dataclass(frozen=True)
class Measurement:
    """What one real step at one length cost."""

    seq_len: int
    mode: str
    device: str                 # "cpu" | "cuda"
    peak: int                   # bytes
    baseline: int               # bytes alive before the step (weights, optimizer state)
    forward_s: float
    backward_s: float           # 0 in infer mode
    step_s: float               # forward + backward + optimizer step
    tokens: int                 # positions per step: seq_len × batch
    #: resident bytes the step added (its peak RSS above the RSS before it), from every
    #: allocator; None where /proc does not tell
    rss_step: int | None = None

    @property
    def step_peak(self) -> int:
        """torch's peak of the step above what was alive before it."""
        return self.peak - self.baseline

    @property
    def tokens_per_s(self) -> float:
        return 0.0 if self.step_s <= 0 else self.tokens / self.step_s


def measure_step(module: nn.Module, spec: InputSpec, seq_len: int, settings: Settings,
                 trace_dir: str | None = None) -> Measurement:
    """Run one step for real at ``seq_len`` (the caller checked it fits) and measure it."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    train = settings.mode == "train"
    with _on_device(module, device):
        optimizer = _warm_optimizer(module, settings) if train else None
        baseline = _state_bytes(module, optimizer)
        step = _step_function(module, spec, seq_len, settings, optimizer, device)
        # each step starts from the same state; the first one's resident growth is
        # measured (later steps reuse what the C allocator kept)
        with preserved(module, train), _resident_growth() as rss:
            if device == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                base_allocated = torch.cuda.memory_allocated()
                step()
                torch.cuda.synchronize()
                peak = baseline + torch.cuda.max_memory_allocated() - base_allocated
            else:
                handler = tensorboard_trace_handler(trace_dir) if trace_dir else None
                with profile(activities=[ProfilerActivity.CPU], profile_memory=True,
                             on_trace_ready=handler) as prof:
                    step()
                peak = baseline + _peak_of_events(prof)
        times = _timed(module, train, step)
    tokens = seq_len * settings.batch
    return Measurement(seq_len=seq_len, mode=settings.mode, device=device, peak=peak,
                       baseline=baseline, forward_s=times[0], backward_s=times[1],
                       step_s=times[2], tokens=tokens, rss_step=rss[0])


@contextlib.contextmanager
def _resident_growth() -> Iterator[list[int | None]]:
    """``[bytes]``: the resident peak of the block above the resident size before it."""
    result: list[int | None] = [None]
    # garbage collected during the step would free resident pages of earlier work and
    # hide the step's growth: collect it first, and none while the step runs
    gc.collect()
    memlimit.release_free_heap()
    enabled = gc.isenabled()
    gc.disable()
    try:
        before = memlimit.resident()
        supported = memlimit.reset_peak() and before is not None
        with memlimit.ResidentSampler() as sampler:
            yield result
        peak = memlimit.peak_resident() if supported else None
        if peak is not None:
            # VmHWM is folded lazily by the kernel: the polled peak covers what it missed
            peak = max(peak, sampler.peak)
    finally:
        if enabled:
            gc.enable()
    if peak is not None and before is not None:
        result[0] = max(0, peak - before)


def _timed(module: nn.Module, train: bool,
           step: Callable[[], tuple[float, float, float]]) -> tuple[float, float, float]:
    """Median of up to three unprofiled steps (one when a step takes over half a second)."""
    runs = []
    while len(runs) < 3 and (not runs or runs[0][2] < 0.5):
        with preserved(module, train):
            runs.append(step())
    runs.sort(key=lambda times: times[2])
    return runs[len(runs) // 2]


def _peak_of_events(prof: Any) -> int:
    """Largest running total of CPU allocation events (bytes > 0 alloc, < 0 free)."""
    events = [e for e in prof.profiler.kineto_results.events()
              if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU]
    running = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        running += event.nbytes()
        peak = max(peak, running)
    return peak


def _warm_optimizer(module: nn.Module, settings: Settings) -> torch.optim.Optimizer | None:
    """The optimizer with its state created, as after the first step of a run."""
    params = [p for p in module.parameters() if p.requires_grad]
    if settings.optimizer not in _OPTIMIZERS or not params:
        return None
    optimizer = _OPTIMIZERS[settings.optimizer](params, lr=1e-3)
    saved = [p.detach().clone() for p in params]
    for param in params:
        param.grad = torch.zeros_like(param)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():                       # a zero-gradient Adam step still moves
        for param, value in zip(params, saved):  # weights by eps terms: put them back
            param.copy_(value)
    return optimizer


def _state_bytes(module: nn.Module, optimizer: torch.optim.Optimizer | None) -> int:
    tensors = list(module.parameters()) + list(module.buffers())
    if optimizer is not None:
        for state in optimizer.state.values():
            tensors += [v for v in state.values() if isinstance(v, torch.Tensor)]
    seen: dict[int, int] = {}
    for tensor in tensors:
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = max(seen.get(storage.data_ptr(), 0), storage.nbytes())
    return sum(seen.values())


def _step_function(module: nn.Module, spec: InputSpec, seq_len: int, settings: Settings,
                   optimizer: torch.optim.Optimizer | None,
                   device: str) -> Callable[[], tuple[float, float, float]]:
    """One step; returns (forward, backward, total) seconds."""
    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    def step() -> tuple[float, float, float]:
        # NB: no ``torch.device`` context: a TorchFunctionMode turns off the fused
        # nn.TransformerEncoderLayer / nn.MultiheadAttention eval fast paths.
        grad = torch.enable_grad() if settings.mode == "train" else torch.no_grad()
        with grad:
            start = time.perf_counter()
            args, kwargs = make_inputs(spec, seq_len, settings.batch)
            if device != "cpu":
                args, kwargs = tree_map_only(torch.Tensor, lambda t: t.to(device), (args, kwargs))
            with autocast(settings.dtype):
                out = module(*args, **kwargs)
            sync()
            forward = time.perf_counter() - start
            backward = 0.0
            if settings.mode == "train":
                backward_from(out)
                sync()
                backward = time.perf_counter() - start - forward
            del out, args, kwargs
            if optimizer is not None:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            elif settings.mode == "train":
                module.zero_grad(set_to_none=True)
            sync()
            return forward, backward, time.perf_counter() - start
    return step


@contextlib.contextmanager
def _on_device(module: nn.Module, device: str) -> Iterator[None]:
    if device == "cpu":
        yield
        return
    module.to(device)
    try:
        yield
    finally:
        module.to("cpu")
