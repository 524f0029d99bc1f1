"""Dynamic probes on real tensors at a small probe length: the ground truth for reach.

For one output position p (the middle one), the gradient of a random projection of
``y[p]`` with respect to the first floating-point sequence tensor (the token
embedding's output for token models, hooked; the input itself otherwise) shows which
input positions p really depends on:

- **gradient support**: positions with a non-zero gradient in any of several seeded
  random inputs (max pooling and dead ReLUs route the gradient through one element, so
  one input is not enough);
- **effective receptive field** (Luo et al., NIPS 2016): the smallest window around p
  holding 95% of the gradient mass, averaged over the inputs;
- **causality**: whether any output at or before p reads an input after p;
- **order**: whether permuting the input positions only permutes the output (and each
  attention layer's output): nothing tells the model where a token is.

The probe runs on a copy of the model in float64 when it fits (exact zeros and tiny
gradients of long recurrences survive), in evaluation mode, without touching the user's
model.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten

from archlint.graph import ModelGraph
from archlint.load.state import preserved_state
from archlint.reach.permutation import order_probe

#: share of the gradient mass the effective receptive field must hold
ERF_MASS = 0.95
#: a gradient below this fraction of the largest one is rounding (FFT convolutions leave
#: ~5e-18 in float64 and ~1e-9 in float32 where the exact value is 0); far gradients of a
#: contracting recurrence are real and can be as small as 1e-13 at the probe's distances
SUPPORT_THRESHOLD = {torch.float64: 1e-15, torch.float32: 1e-7}
#: models with more parameters than this are probed in float32 (a float64 copy of a
#: 124M-parameter model costs seconds to convert and run), with fewer random inputs
FLOAT64_LIMIT = 20_000_000
LARGE_MODEL_SEEDS = 3


@dataclass
class ProbeResult:
    """What the gradients showed at one probed output position."""

    probe_len: int
    position: int | None                   # probed output position (None: no sequence axis)
    seeds: int
    dtype: str
    support: dict[str, tuple[int, int]]    # per axis: first..last input position read
    erf: dict[str, dict[str, Any]]         # per axis: span, start, end, mass
    #: per axis: the share of the gradient mass at each input position (mean over the
    #: random inputs of each input's normalized mass; sums to 1), what the ERF is cut from
    mass_profile: dict[str, tuple[float, ...]] = field(default_factory=dict)
    #: per axis: the input position aligned with the probed output (offset 0 of the profile)
    aligned_input: dict[str, int | None] = field(default_factory=dict)
    causal: bool | None = None
    ahead: int = 0                         # farthest input read ahead of the output
    order_blind: bool | None = None        # output only permuted by an input permutation
    attention_order_blind: dict[str, bool] = field(default_factory=dict)
    positions: dict[str, int | None] = field(default_factory=dict)
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)   # per-layer probes
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass
class ProbePlan:
    """What the static pass tells the probe: where to look."""

    probe_len: int
    output_index: int = 0                  # which flattened output tensor
    output_dims: tuple[int | None, ...] = (None,)   # its dim per axis (None: none)
    jump: float = 1.0
    attention_modules: tuple[str, ...] = ()
    #: static support for the probed positions; while the measured support is strictly
    #: inside it, more random inputs are tried (dead ReLUs, max pooling)
    expect: Callable[[dict[str, int | None]], dict[str, tuple[int, int]]] | None = None
    max_seeds: int = 4
    #: (module path, effective stride, output length) of layers probed one by one
    layers: tuple[tuple[str, float, float], ...] = ()
    #: run the permutation probe (worth it only where some attention is unmasked)
    order: bool = True


def run_probes(graph: ModelGraph, plan: ProbePlan, seeds: int = 4) -> ProbeResult:
    start = time.perf_counter()
    with _probe_model(graph.module) as (model, dtype):
        if dtype is torch.float32:
            seeds = min(seeds, LARGE_MODEL_SEEDS)
        result = _run(model, dtype, graph, plan, seeds)
    result.seconds = time.perf_counter() - start
    return result


def _run(model, dtype, graph: ModelGraph, plan: ProbePlan, seeds: int) -> ProbeResult:
    result = _probe_batch(model, dtype, graph, plan, seeds, 0)
    total = seeds
    while plan.expect is not None and total < plan.max_seeds:
        expected = plan.expect(result.positions)
        if not all(_strictly_inside(result.support[a], expected[a]) for a in expected
                   if a in result.support) or expected == result.support:
            break
        batch = min(seeds * 2, plan.max_seeds - total)
        more = _probe_batch(model, dtype, graph, plan, batch, total)
        for axis, (first, last) in more.support.items():
            old = result.support[axis]
            result.support[axis] = (min(first, old[0]), max(last, old[1]))
        total += batch
        result.seeds = total
    if not graph.input_spec.spatial and plan.order:
        order_probe(model, graph, plan, result, dtype)
    return result


def _strictly_inside(inner: tuple[int, int], outer: tuple[int, int]) -> bool:
    return outer[0] <= inner[0] and inner[1] <= outer[1] and inner != outer


def _probe_batch(model, dtype, graph: ModelGraph, plan: ProbePlan, seeds: int, seed: int
                 ) -> ProbeResult:
    spec = graph.input_spec
    length = plan.probe_len
    torch.manual_seed(seed)
    args = _cast(spec.make(length, seeds), dtype)
    batch_dim = _batch_dim(spec, length)
    seq_index = next((i for i, d in enumerate(spec.seq_dims) if d is not None), 0)
    captured: list[torch.Tensor] = []
    axes = ("h", "w") if spec.spatial else ("n",)
    seq_dims = _probe_dims(spec, seq_index, axes)
    handle = _watch_input(model, args, seq_index, captured)
    layer_outputs: dict[str, torch.Tensor] = {}
    hooks = _watch_layers(model, plan, layer_outputs) if seed == 0 and not spec.spatial else []
    try:
        # the state is restored only after the backward passes: buffers restored in
        # place would invalidate the saved tensors
        with preserved_state(model), torch.enable_grad():
            outputs = _tensors(model(*args, **spec.kwargs))
            for hook in hooks:
                hook.remove()
            if handle is not None:
                handle.remove()
                handle = None
            probe = captured[0] if captured else args[seq_index]
            if not probe.requires_grad:
                raise ValueError("no floating-point sequence tensor to probe")
            out = outputs[min(plan.output_index, len(outputs) - 1)]
            result = _gradients(out, probe, plan, axes, seq_dims, batch_dim, dtype, length,
                                seeds)
            for name, stride, size in plan.layers:
                if name in layer_outputs:
                    found = _layer_probe(layer_outputs[name], probe, stride, size, batch_dim,
                                         seq_dims[0])
                    if found is not None:
                        result.layers[name] = found
            return result
    finally:
        if handle is not None:
            handle.remove()


def _watch_layers(model: nn.Module, plan: ProbePlan, seen: dict[str, torch.Tensor]) -> list:
    hooks = []
    for name, _, _ in plan.layers:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            continue

        def keep(module, inputs, output, name=name) -> None:
            tensors = _tensors(output)
            if tensors and name not in seen:
                seen[name] = tensors[0]
        hooks.append(module.register_forward_hook(keep))
    return hooks


def _layer_probe(output: torch.Tensor, probe: torch.Tensor, stride: float, size: float,
                 batch_dim: int, seq_dim: int) -> dict[str, Any] | None:
    """Gradient support and ERF of the middle position of one layer's own output."""
    sizes = {math.floor(size), math.ceil(size)}
    dims = [d for d, s in enumerate(output.shape) if s in sizes and d != batch_dim]
    if len(dims) != 1 or not output.requires_grad:
        return None
    position = output.shape[dims[0]] // 2
    weights = torch.randn(output.shape, generator=torch.Generator().manual_seed(5),
                          dtype=output.dtype)
    grad, = torch.autograd.grad((output * weights).select(dims[0], position).sum(), probe,
                                retain_graph=True)
    if not bool(torch.isfinite(grad).all()):
        return None
    mass = _mass(grad, batch_dim, seq_dim)
    erf = effective_receptive_field(mass, int(round(stride * position)))
    return {"position": position, "support": _support(mass), **erf}


@contextlib.contextmanager
def _probe_model(module: nn.Module) -> Iterator[tuple[nn.Module, torch.dtype]]:
    """A float64 copy of a small model; a large float32 model is probed in place (a copy
    of 124M parameters costs seconds), in eval mode, its flags restored afterwards."""
    parameters = list(module.parameters())
    count = sum(p.numel() for p in parameters)
    if count <= FLOAT64_LIMIT or any(p.dtype != torch.float32 for p in parameters):
        yield _probe_copy(module, count)
        return
    flags = [p.requires_grad for p in parameters]
    try:
        with preserved_state(module):
            module.eval()
            for parameter in parameters:
                parameter.requires_grad_(False)
            yield module, torch.float32
    finally:
        for parameter, flag in zip(parameters, flags):
            parameter.requires_grad_(flag)


def _probe_copy(module: nn.Module, count: int) -> tuple[nn.Module, torch.dtype]:
    model = copy.deepcopy(module).eval()
    dtype = torch.float64 if count <= FLOAT64_LIMIT else torch.float32
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.requires_grad_(False)
            if parameter.is_floating_point() and parameter.numel() > 1 and \
                    not parameter.view(-1)[:64].any() and not parameter.any():
                parameter.copy_(_reseeded(parameter, generator))
    return model.to(dtype), dtype


def _reseeded(parameter: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A value for a zero-initialised parameter (the last norm of a residual block, a
    zero-init output projection), whose zero would hide its path from the gradient: a
    norm scale becomes ~1, a weight gets the scale of a default init (1/sqrt(fan-in)), so
    the path is as strong as any other and its far taps stay above the support
    threshold."""
    noise = torch.randn(parameter.shape, generator=generator)
    if parameter.dim() == 1:
        return 1.0 + 0.1 * noise
    fan_in = max(1, parameter[0].numel())
    return noise / math.sqrt(fan_in)


def _cast(args: tuple, dtype: torch.dtype) -> tuple:
    return tuple(a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                 for a in args)


def _batch_dim(spec, length: int) -> int:
    one, two = spec.make(length, 1), spec.make(length, 2)
    for a, b in zip(one, two):
        if isinstance(a, torch.Tensor):
            for dim, (x, y) in enumerate(zip(a.shape, b.shape)):
                if x != y:
                    return dim
    return 0


def _watch_input(model: nn.Module, args: tuple, index: int, captured: list):
    """Make the probed tensor a leaf: the input itself, or the first embedding output."""
    source = args[index] if index < len(args) else None
    if isinstance(source, torch.Tensor) and source.is_floating_point():
        source.requires_grad_(True)
        captured.append(source)
        return None

    def hook(module, inputs, output):
        if captured or not inputs or not isinstance(inputs[0], torch.Tensor):
            return None
        ids = inputs[0]
        if ids is source or (not ids.is_floating_point() and ids.shape == source.shape):
            leaf = output.detach().requires_grad_(True)
            captured.append(leaf)
            return leaf
        return None
    return nn.modules.module.register_module_forward_hook(
        lambda m, i, o: hook(m, i, o) if isinstance(m, nn.Embedding) else None)


def _tensors(output: Any) -> list[torch.Tensor]:
    return [t for t in tree_flatten(output)[0] if isinstance(t, torch.Tensor)]


def _probe_dims(spec, index: int, axes) -> list[int]:
    dim = spec.seq_dims[index]
    return [dim, dim + 1] if len(axes) == 2 else [dim]


def _gradients(out, probe, plan: ProbePlan, axes, seq_dims, batch_dim, dtype, length,
               seeds) -> ProbeResult:
    generator = torch.Generator().manual_seed(2)
    weights = torch.randn(out.shape, generator=generator, dtype=out.dtype)
    dims = list(plan.output_dims) + [None] * (len(axes) - len(plan.output_dims))
    positions = {axis: None if dim is None else out.shape[dim] // 2
                 for axis, dim in zip(axes, dims)}
    position = positions[axes[0]]
    if _one_pass(out, dims, batch_dim, seeds, dtype):
        return _gradients_one_pass(out, probe, plan, seq_dims[0], dims[0], batch_dim, dtype,
                                   length, seeds, weights, positions)
    picked = out * weights
    for axis, dim in sorted(zip(axes, dims), key=lambda item: -(item[1] or -1)):
        if dim is not None:
            picked = picked.select(dim, positions[axis])
    grad, = torch.autograd.grad(picked.sum(), probe, retain_graph=True)
    result = ProbeResult(length, position, seeds, str(dtype).replace("torch.", ""), {}, {},
                         positions=positions)
    for axis, dim in zip(axes, seq_dims):
        mass = _mass(grad, batch_dim, dim)
        result.support[axis] = _support(mass)
        at = None if positions[axis] is None else int(round(plan.jump * positions[axis]))
        _record_erf(result, axis, mass, at)
    if len(axes) == 1 and dims[0] is not None:
        _causality(out, probe, plan, dims[0], position, weights, batch_dim, seq_dims[0],
                   result, length)
    return result


def _one_pass(out, dims, batch_dim, seeds, dtype) -> bool:
    """Large models: one backward pass serves both probes, the last input for causality
    (batch elements do not mix in evaluation mode)."""
    return (dtype is torch.float32 and len(dims) == 1 and dims[0] is not None and seeds >= 2
            and dims[0] != batch_dim and out.dim() > batch_dim
            and out.shape[batch_dim] == seeds)


def _gradients_one_pass(out, probe, plan, seq_dim, dim, batch_dim, dtype, length, seeds,
                        weights, positions) -> ProbeResult:
    position = positions["n"]
    weighted = out * weights
    support = weighted.narrow(batch_dim, 0, seeds - 1).select(dim, position).sum()
    prefix = weighted.narrow(batch_dim, seeds - 1, 1).narrow(dim, 0, position + 1).sum()
    grad, = torch.autograd.grad(support + prefix, probe, retain_graph=True)
    result = ProbeResult(length, position, seeds - 1, str(dtype).replace("torch.", ""), {},
                         {}, positions=positions)
    mass = _mass(grad, batch_dim, seq_dim)
    result.support["n"] = _support(mass[: seeds - 1])
    _record_erf(result, "n", mass[: seeds - 1], int(round(plan.jump * position)))
    _judge_causality(result, _support(mass[seeds - 1:])[1], plan, position, length,
                     out.shape[dim])
    return result


def _judge_causality(result, last, plan, position, length, out_length) -> None:
    own = plan.jump * position
    end_aligned = own + (length - 1) - plan.jump * (out_length - 1)
    result.ahead = max(0, int(last - min(own, end_aligned)))
    result.causal = last <= own and last <= end_aligned


def _mass(grad: torch.Tensor, batch_dim: int, seq_dim: int) -> torch.Tensor:
    """(seeds, positions) gradient magnitude per input position; NaN/inf gradients are a
    failed probe (they would read as an empty or a full support), never a measurement."""
    if not bool(torch.isfinite(grad).all()):
        raise FloatingPointError(f"the gradient is NaN or inf in {grad.dtype}: the probe "
                                 "cannot check this model")
    moved = grad.abs().movedim((batch_dim, seq_dim), (0, 1))
    return moved.reshape(moved.shape[0], moved.shape[1], -1).sum(-1)


def _support(mass: torch.Tensor) -> tuple[int, int]:
    peak = mass.max(dim=1, keepdim=True).values
    live = (mass > SUPPORT_THRESHOLD.get(mass.dtype, 1e-7) * peak).any(0)
    found = torch.nonzero(live).flatten()
    if found.numel() == 0:
        return (-1, -1)
    return int(found[0]), int(found[-1])


def _record_erf(result: ProbeResult, axis: str, mass: torch.Tensor, at: int | None) -> None:
    """The ERF of ``axis`` and the mass profile it was cut from."""
    result.erf[axis] = effective_receptive_field(mass, at)
    result.mass_profile[axis] = tuple(float(v) for v in mass_share(mass))
    result.aligned_input[axis] = at


def mass_share(mass: torch.Tensor) -> torch.Tensor:
    """(positions,) float64: each input's normalized gradient mass, averaged over the
    random inputs (every input weighs the same, whatever its gradient's scale)."""
    totals = mass.sum(dim=1, keepdim=True)
    return (mass / totals.clamp_min(torch.finfo(mass.dtype).tiny)).mean(0).double()


def effective_receptive_field(mass: torch.Tensor, position: int | None) -> dict[str, Any]:
    """Smallest window (containing ``position`` if given) holding ERF_MASS of the mean
    normalized gradient mass."""
    share = mass_share(mass)
    cumulative = torch.cat([torch.zeros(1, dtype=share.dtype), share.cumsum(0)])
    count = share.numel()
    best = (0, count - 1)
    right = 0
    for left in range(count):
        if position is not None and left > position:
            break
        right = max(right, left, position if position is not None else left)
        while right < count - 1 and cumulative[right + 1] - cumulative[left] < ERF_MASS:
            right += 1
        if cumulative[right + 1] - cumulative[left] >= ERF_MASS - 1e-12 and \
                right - left < best[1] - best[0]:
            best = (left, right)
    return {"span": best[1] - best[0] + 1, "start": best[0], "end": best[1],
            "mass": ERF_MASS}


def _causality(out, probe, plan, dim, position, weights, batch_dim, seq_dim, result, length):
    """Does any output at or before ``position`` read an input after its own position?"""
    prefix = (out * weights).narrow(dim, 0, position + 1).sum()
    grad, = torch.autograd.grad(prefix, probe, retain_graph=True)
    last = _support(_mass(grad, batch_dim, seq_dim))[1]
    _judge_causality(result, last, plan, position, length, out.shape[dim])
