"""One step of the model at length n, predicted on fake tensors.

A *step* is what a training loop or a server does once per batch:

- ``train``: forward (under autocast for bfloat16/float16), backward from every
  floating-point output seeded with ones (a dense gradient, as a loss gives), optimizer
  step, ``zero_grad(set_to_none=True)``; the optimizer state already exists (steady
  state), gradients do not (they are set to None after each step);
- ``infer``: forward under ``torch.no_grad()`` in eval mode;
- ``decode``: one generated token with a KV cache of n positions (:mod:`.decode`).

Models that loop over time in Python (hand-written cells, ``nn.GRU``/``nn.RNN``, which
CPU ATen unrolls per step) dispatch O(n) ops, so a fake run at n=1M would take minutes.
Their op count is measured at two short lengths. While a run stays within
:data:`OP_BUDGET` dispatched ops it runs directly; beyond, each stage's peak and the
FLOPs (polynomials of degree ≤ 2 in n) are extrapolated from three runs at the longest
lengths :data:`FIT_BUDGET` affords, and checked against a fourth; the method text of
the prediction gives the check's error (a stage whose peak bends, like the backward of
a bidirectional GRU, is not a polynomial, and the check says so).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import torch
from torch.func import functional_call

from archlint.cost.allocator import replay
from archlint.cost.devices import Device, find_device
from archlint.cost.extrapolate import OpCounter, lagrange
from archlint.cost.fake import (
    autocast,
    backward_from,
    fake_model,
    make_inputs,
    preserved,
    reparametrized,
    stock_causal_masks,
)
from archlint.cost.flops import FlopTally
from archlint.cost.kernels import KernelMemoryMode
from archlint.cost.memory import MemoryBreakdown, PairwiseRule, overall
from archlint.cost.routing import DataDependentSizes, Routing, uses_data_dependent_sizes
from archlint.cost.routing import measure as measure_routing
from archlint.cost.sdpa import KernelChoice, cuda_attention
from archlint.cost.trackers import new_tracker
from archlint.errors import ArchlintError
from archlint.graph import ModelGraph
from archlint.guard import current_stage, describe
from archlint.kinds import LayerKind
from archlint.memlimit import is_out_of_memory, memory_limit
from archlint.settings import Settings

#: dispatched ops (forward; a training step is counted three times) a fake run may take
#: before a loop-over-time model is extrapolated instead (several seconds here)
OP_BUDGET = 80_000
#: ops the four fit runs of an extrapolation may take together
FIT_BUDGET = 20_000
#: largest relative error at the check length before the fit is redone at double lengths
FIT_TOLERANCE = 0.005
#: fit lengths are multiples of 13, which rarely coincide with a model dimension
FIT_UNIT = 13

#: categories of bytes that depend on the input (a module keeping one keeps its stage n-bound)
_TRANSIENT = ("activations", "attention_scores", "workspace")
_OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


class CostError(Exception):
    """The model could not be run on fake tensors at one length (the reason is the text)."""


@dataclass(frozen=True)
class Prediction:
    """Predicted cost of one step at one length."""

    seq_len: int
    mode: str
    memory: MemoryBreakdown
    phases: dict[str, MemoryBreakdown]
    flops_forward: int
    flops_backward: int
    attention_flops: int                  # n² part (forward + backward), within the total
    module_flops: dict[str, int] = field(default_factory=dict)   # module path -> FLOPs
    method: str = "fake tensors"
    kernels: tuple[KernelChoice, ...] = ()    # attention kernel per module (GPU devices)
    #: decode mode: bytes of the KV cache of ``seq_len`` positions (the peak's
    #: ``kv_cache`` part also holds what the step's cache update allocates)
    kv_cache_bytes: int = 0
    #: a GPU device: (allocated, reserved) peaks of PyTorch's caching allocator replayed
    #: on the step's allocations (:mod:`.allocator`): what ``max_memory_allocated`` and
    #: ``max_memory_reserved`` would read; None on the CPU or where extrapolated
    allocator_peaks: tuple[int, int] | None = None

    @property
    def peak(self) -> int:
        return self.memory.peak

    @property
    def flops(self) -> int:
        return self.flops_forward + self.flops_backward


class CostModel:
    """Predictions for one model under one set of settings, memoized per length."""

    def __init__(self, graph: ModelGraph, settings: Settings, fallback: bool = False) -> None:
        self.graph = graph
        self.settings = settings
        self.fallback = fallback
        self._memo: dict[tuple[int, str], Prediction] = {}
        self._fakes: dict[bool, Any] = {}
        self._op_line: tuple[float, float] | None = None
        self._optimizer_stage: dict[str, MemoryBreakdown] = {}
        self.device: Device | None = find_device(settings.device, settings.cuda_context)

    def predict(self, seq_len: int, mode: str | None = None) -> Prediction:
        mode = mode or self.settings.mode
        key = (seq_len, mode)
        if key not in self._memo:
            if mode == "decode":
                from archlint.cost.decode import decode_prediction
                self._memo[key] = decode_prediction(self, seq_len)
            elif self.ops(seq_len, mode) > OP_BUDGET:
                self._memo[key] = self._extrapolated(seq_len, mode)
            else:
                self._memo[key] = self._run(seq_len, mode)
        return self._memo[key]

    def pairwise_rule(self, seq_len: int) -> PairwiseRule:
        """How attention scores are recognized at this length (see :class:`PairwiseRule`)."""
        tokens = seq_len * seq_len if self.graph.input_spec.spatial else seq_len
        return PairwiseRule(tokens, ambiguous=tokens in self.model_dims, scopes=self._scopes)

    @cached_property
    def model_dims(self) -> frozenset[int]:
        tensors = list(self.graph.module.parameters()) + list(self.graph.module.buffers())
        return frozenset(size for t in tensors for size in t.shape)

    @cached_property
    def _scopes(self) -> tuple[str, ...]:
        names = (layer.name.partition(":")[0] for layer in self.graph.layers
                 if layer.kind is LayerKind.ATTENTION)
        return tuple(sorted(set(names)))

    # -- fake runs -------------------------------------------------------------------

    def _run(self, seq_len: int, mode: str) -> Prediction:
        with _guarded(seq_len):
            if mode == "train":
                return self._train(seq_len)
            return self._infer(seq_len)

    def _fake(self, train: bool) -> Any:
        """The fake model (and warmed optimizer) shared by every run of one kind."""
        _ = self.routing            # measured for real, before any fake mode is entered
        if train not in self._fakes:
            fake = fake_model(self.graph.module)
            optimizer = None
            if train and self.settings.optimizer in _OPTIMIZERS and fake.parameters:
                with fake.mode:
                    optimizer = _OPTIMIZERS[self.settings.optimizer](fake.parameters, lr=1e-3)
                    for param in fake.parameters:
                        param.grad = torch.zeros_like(param)
                    optimizer.step()                  # creates the steady-state buffers
                    optimizer.zero_grad(set_to_none=True)
            self._fakes[train] = (fake, optimizer)
        return self._fakes[train]

    def _tracker(self, seq_len: int, fake: Any, optimizer: Any) -> Any:
        tracker = new_tracker(self.pairwise_rule(seq_len), self.fallback)
        if self.device is not None:
            tracker.log_allocations()             # replayed on the caching allocator
        params = {id(t) for t in fake.parameters}
        tracker.register_state(fake.parameters, "Parameter")
        unique = {id(t): t for t in fake.state.values() if id(t) not in params}
        tracker.register_state(list(unique.values()), "Buffer")
        if optimizer is not None:
            tracker.track_external(optimizer)
        return tracker

    def _train(self, seq_len: int) -> Prediction:
        fake, optimizer = self._fake(train=True)
        tracker = self._tracker(seq_len, fake, optimizer)
        rule = self.pairwise_rule(seq_len)
        forward, backward = FlopTally(rule), FlopTally(rule)
        spec, module = self.graph.input_spec, self.graph.module
        with preserved(module, True), stock_causal_masks(), fake.mode, tracker, \
                self._kernels() as kernels:
            # the fake weights stay in place through backward: activation checkpointing
            # (torch.utils.checkpoint) runs the block's forward again there
            with reparametrized(module, fake.state):
                with tracker.saved_tensor_hooks():
                    args, kwargs = make_inputs(spec, seq_len, self.settings.batch)
                    with forward, autocast(self.settings.dtype):
                        out = module(*args, **kwargs)
                tracker.phase = "backward"
                with backward:
                    backward_from(out)
                del out, args, kwargs
            tracker.phase = "optimizer"
            stateless = not any(tracker.totals[c] for c in _TRANSIENT)
            # (on a GPU the allocator replay needs the optimizer's own allocations too)
            if optimizer is not None and not (stateless and self._optimizer_stage
                                              and tracker.allocation_events is None):
                optimizer.step()
            for param in fake.parameters:
                param.grad = None
        prediction = self._prediction(seq_len, "train", tracker, forward, backward, kernels)
        if stateless and optimizer is not None:
            # Nothing of length n survives the step: the optimizer's peak is the same at
            # every n (weights, gradients, state, its temporaries). Run it once.
            stage = self._optimizer_stage or {k: v for k, v in prediction.phases.items()
                                              if k.startswith("optimizer:")}
            self._optimizer_stage = stage
            phases = {**prediction.phases, **stage}
            prediction = replace(prediction, phases=phases, memory=overall(phases))
        return prediction

    def _infer(self, seq_len: int) -> Prediction:
        fake, _ = self._fake(train=False)
        tracker = self._tracker(seq_len, fake, None)
        forward = FlopTally(self.pairwise_rule(seq_len))
        spec, module = self.graph.input_spec, self.graph.module
        with preserved(module, False), stock_causal_masks(), fake.mode, tracker, \
                self._kernels() as kernels, torch.no_grad():
            args, kwargs = make_inputs(spec, seq_len, self.settings.batch)
            with forward, autocast(self.settings.dtype):
                out = functional_call(module, fake.state, args, kwargs)
            del out, args, kwargs
        return self._prediction(seq_len, "infer", tracker, forward, None, kernels)

    def decode_step(self, seq_len: int) -> tuple[Prediction | None, str | None]:
        """One token generated against the model's own cache of ``seq_len`` positions
        (:mod:`.decode`): a prefill builds the cache, the step runs under the tracker.
        ``(None, why)`` where the model cannot be run so."""
        from archlint.cost.decode import CacheFollower, cache_argument, cache_tensors, find_cache

        spec, module = self.graph.input_spec, self.graph.module
        if spec.spatial or len(spec.seq_dims) != 1:
            return None, "a decode step takes token ids alone, this model more inputs"
        fake, _ = self._fake(train=False)
        kwargs = {**spec.kwargs, "use_cache": True}
        with _guarded(seq_len), preserved(module, False), stock_causal_masks(), fake.mode, \
                self._sizes(), torch.no_grad():
            args, _ = make_inputs(spec, seq_len, self.settings.batch)
            with autocast(self.settings.dtype):
                cache = find_cache(functional_call(module, fake.state, args, kwargs))
            del args
        if cache is None:
            return None, "forward(use_cache=True) returned no cache"
        tracker = self._tracker(seq_len, fake, None)
        forward = FlopTally(self.pairwise_rule(seq_len))
        held = cache_tensors(cache)
        cache_bytes = sum({id(t.untyped_storage()): t.untyped_storage().nbytes()
                           for t in held}.values())
        tracker.register_kv_cache(held)
        del held
        follower = CacheFollower(tracker, cache_tensors(cache))
        with _guarded(seq_len), preserved(module, False), stock_causal_masks(), fake.mode, \
                tracker, self._kernels() as kernels, follower, torch.no_grad():
            args, _ = make_inputs(spec, 1, self.settings.batch)
            with forward, autocast(self.settings.dtype):
                out = functional_call(module, fake.state, args,
                                      {**kwargs, cache_argument(module): cache})
            del out, args, cache
        prediction = self._prediction(seq_len, "decode", tracker, forward, None, kernels)
        return replace(prediction, kv_cache_bytes=cache_bytes,
                       method="one decode step against the model's own KV cache, on fake "
                              "tensors"), None

    @cached_property
    def routing(self) -> Routing | None:
        """The sizes of data-dependent ops (a mixture of experts' routing), measured once
        for real at the trace length (:mod:`.routing`); None when there are none."""
        graph = self.graph
        if graph.frontend == "torch.export" and \
                not uses_data_dependent_sizes(graph.graph_module):
            return None
        spec, length = graph.input_spec, graph.trace_len
        with _guarded(length), preserved(graph.module, False), stock_causal_masks():
            args, kwargs = make_inputs(spec, length, 1)
            return measure_routing(graph.module, args, kwargs, length,
                                   self.settings.capacity_factor)

    def _sizes(self) -> contextlib.AbstractContextManager:
        """The mode answering data-dependent sizes in one fake run (none without them)."""
        routing = self.routing
        return DataDependentSizes(routing) if routing is not None else contextlib.nullcontext()

    @contextlib.contextmanager
    def _kernels(self) -> Iterator[Any]:
        """The device's kernels for one fake run: this CPU's (with the allocations its
        fused kernels hide, :mod:`.kernels`), or a GPU's attention (:mod:`.sdpa`) and
        CUDA autocast's float32 ops (:mod:`.cuda_autocast`), and the sizes of
        data-dependent ops (:mod:`.routing`)."""
        with self._kernel_modes() as chosen, self._sizes():
            yield chosen

    @contextlib.contextmanager
    def _kernel_modes(self) -> Iterator[Any]:
        if self.device is None:
            with KernelMemoryMode():
                yield None
            return
        from archlint.cost.cuda_autocast import CudaAutocastFp32
        from archlint.cost.fake import AUTOCAST_DTYPES

        half = AUTOCAST_DTYPES.get(self.settings.dtype)
        with cuda_attention(self.device, half) as chosen, \
                (CudaAutocastFp32() if half is not None else contextlib.nullcontext()), \
                KernelMemoryMode(cpu_kernels=False):
            yield chosen

    def _prediction(self, seq_len: int, mode: str, tracker: Any, forward: FlopTally,
                    backward: FlopTally | None, kernels: Any = None) -> Prediction:
        phases = tracker.breakdowns()
        modules = forward.module_totals()
        if backward is not None:
            for name, count in backward.module_totals().items():
                modules[name] = modules.get(name, 0) + count
        peaks = None
        if tracker.allocation_events is not None:
            allocator = replay(tracker.allocation_events)
            peaks = (allocator.peak_allocated, allocator.peak_reserved)
        return Prediction(
            seq_len=seq_len, mode=mode, memory=overall(phases), phases=phases,
            allocator_peaks=peaks,
            flops_forward=forward.get_total_flops(),
            flops_backward=0 if backward is None else backward.get_total_flops(),
            attention_flops=forward.attention + (0 if backward is None else backward.attention),
            module_flops=modules,
            kernels=() if kernels is None else tuple(kernels.choices),
        )

    # -- loop-over-time models ------------------------------------------------------

    def loops_over_time(self) -> bool:
        """True when the forward dispatches more ops at a longer length (a time loop)."""
        return self._ops_per_position() > 0

    def ops(self, seq_len: int, mode: str) -> float:
        """Estimated ops a fake run of ``mode`` dispatches at ``seq_len``."""
        base, per_position = self._op_line or self._measure_op_line()
        return (3 if mode == "train" else 1) * (base + per_position * seq_len)

    def _ops_per_position(self) -> float:
        return (self._op_line or self._measure_op_line())[1]

    @property
    def _unit(self) -> int:
        """The shortest fit length: a multiple of 13 the model accepts."""
        return FIT_UNIT * -(-max(1, self.graph.input_spec.min_len) // FIT_UNIT)

    def _measure_op_line(self) -> tuple[float, float]:
        unit = self._unit
        try:
            counts = [self._op_count(n) for n in (unit, 2 * unit)]
        except CostError:                 # too short for this model: run it directly
            counts = [0, 0]
        per_position = (counts[1] - counts[0]) / unit
        self._op_line = (counts[0] - per_position * unit, per_position)
        return self._op_line

    def _op_count(self, seq_len: int) -> int:
        fake, _ = self._fake(train=False)
        counter = OpCounter()
        with _guarded(seq_len), preserved(self.graph.module, False), stock_causal_masks(), \
                fake.mode, counter, self._sizes(), torch.no_grad():
            args, kwargs = make_inputs(self.graph.input_spec, seq_len, self.settings.batch)
            functional_call(self.graph.module, fake.state, args, kwargs)
        return counter.count

    def _extrapolated(self, seq_len: int, mode: str) -> Prediction:
        unit = self._unit
        while self.ops(10 * (unit + FIT_UNIT), mode) <= FIT_BUDGET:
            unit += FIT_UNIT                       # the longest lengths within budget
        for attempt in range(2):                    # one retry at double lengths
            lengths = (unit, 2 * unit, 3 * unit)
            points = [self.predict(n, mode) for n in lengths]
            check_len = 4 * unit
            guess = lagrange(points, check_len, mode)
            check = self.predict(check_len, mode)
            error = abs(guess.peak - check.peak) / max(check.peak, 1)
            if error <= FIT_TOLERANCE or 8 * unit >= seq_len or attempt == 1:
                break
            unit *= 2
        verdict = ("within" if error <= FIT_TOLERANCE else
                   f"off by more than the {FIT_TOLERANCE:.1%} the fit is trusted to: off by")
        method = (f"extrapolated from fake runs at n={', '.join(map(str, lengths))} "
                  f"(peak at n={check_len} {verdict} {error:.2%})")
        return replace(lagrange(points, seq_len, mode), method=method)


@contextlib.contextmanager
def _guarded(seq_len: int) -> Iterator[None]:
    """Quiet the fake-tensor logger; turn failures into :class:`CostError`.

    A length whose tensors overflow int64 sizes is the user's input: ArchlintError.
    """
    logger = logging.getLogger("torch._subclasses.fake_tensor")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    except (ArchlintError, CostError):
        raise
    except Exception as error:  # noqa: BLE001 - any failure of user code on fake tensors
        if is_out_of_memory(error):
            raise ArchlintError(_out_of_memory(seq_len, error)) from error
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "overflow" in text.lower():
            raise ArchlintError(
                f"--seq-len {seq_len}: tensor sizes overflow int64 at this length ({text}); "
                "use a smaller --seq-len"
            ) from error
        raise CostError(f"the step failed on fake tensors at n={seq_len}: "
                        f"{type(error).__name__}: {text}") from error
    finally:
        logger.setLevel(level)


def _out_of_memory(seq_len: int, error: BaseException) -> str:
    """One line for a fake run whose real allocations (the model's numpy or Python code:
    shapes are plain ints under fake tensors) went past the machine's limit."""
    stage = current_stage() or "predicting the cost"
    return (f"{stage}: the model's code ran out of memory at n={seq_len} "
            f"({describe(error)}); its own numpy/Python allocations follow the length "
            f"there and must fit the {memory_limit()} this machine allows; allocate "
            "with torch (fake tensors cost nothing) or check a shorter --seq-len")
