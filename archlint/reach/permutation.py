"""The order probe: does permuting the input positions only permute the output?

An attention layer with no positional information is permutation-equivariant: feed it
the positions shuffled and its output comes back shuffled the same way, and otherwise
unchanged (a bag of tokens). The probe runs the model twice, on an input and on the same
input with its positions permuted, and compares the model's output and every attention
layer's output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch.utils._pytree import tree_flatten

from archlint.graph import ModelGraph
from archlint.load.state import preserved_state

if TYPE_CHECKING:
    from archlint.reach.probes import ProbePlan, ProbeResult


def _tensors(output: Any) -> list[torch.Tensor]:
    return [t for t in tree_flatten(output)[0] if isinstance(t, torch.Tensor)]


def _cast(args: tuple, dtype: torch.dtype) -> tuple:
    return tuple(a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                 for a in args)


def order_probe(model, graph: ModelGraph, plan: ProbePlan, result: ProbeResult,
                dtype) -> None:
    """Permute the input positions: is every attention output (and the model's output)
    just permuted the same way?"""
    spec = graph.input_spec
    length = plan.probe_len
    torch.manual_seed(3)
    args = _cast(spec.make(length, 1), dtype)
    index = next((i for i, d in enumerate(spec.seq_dims) if d is not None), 0)
    dim = spec.seq_dims[index]
    order = torch.randperm(length, generator=torch.Generator().manual_seed(4))
    permuted = list(args)
    permuted[index] = args[index].index_select(dim, order)
    plain, shuffled = _record(model, args, spec, plan), _record(model, tuple(permuted), spec,
                                                                plan)
    result.order_blind = _equivariant(plain["<output>"], shuffled["<output>"], order)
    for name in plan.attention_modules:
        if name in plain and name in shuffled:
            result.attention_order_blind[name] = _equivariant(plain[name], shuffled[name], order)


def _record(model, args, spec, plan: ProbePlan) -> dict[str, torch.Tensor]:
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for name in plan.attention_modules:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            continue
        def keep(module, inputs, output, name=name) -> None:
            seen.setdefault(name, _tensors(output)[0].detach())
        handles.append(module.register_forward_hook(keep))
    try:
        with preserved_state(model), torch.no_grad():
            outputs = _tensors(model(*args, **spec.kwargs))
    finally:
        for handle in handles:
            handle.remove()
    seen["<output>"] = outputs[min(plan.output_index, len(outputs) - 1)]
    return seen


def _equivariant(plain: torch.Tensor, shuffled: torch.Tensor, order: torch.Tensor) -> bool:
    """True if ``shuffled`` equals ``plain`` permuted along some axis of the probe length
    (or equals it outright: invariant)."""
    tolerance = 1e-6 if plain.dtype == torch.float64 else 1e-3
    scale = plain.abs().max().clamp_min(1e-12)
    if plain.shape == shuffled.shape and (plain - shuffled).abs().max() <= tolerance * scale:
        return True
    for dim, size in enumerate(plain.shape):
        if size == order.numel() and plain.shape == shuffled.shape:
            moved = plain.index_select(dim, order)
            if (moved - shuffled).abs().max() <= tolerance * scale:
                return True
    return False
