"""Changes applied mechanically to a copy of the user's module, and the cost re-run.

Each function takes a parameter-free copy (:func:`archlint.parallel.simulate.meta_copy`:
every parameter and buffer on the meta device, nothing copied, tied weights still tied),
changes it the way a user would edit the model, and returns what it changed. The cost
model (:class:`archlint.cost.CostModel`) then runs on the changed copy exactly as it ran
on the original: same input, same settings, fake tensors, nothing allocated at n.

- :func:`checkpoint_blocks`: each block (the repeated stack FSDP would wrap,
  :func:`archlint.parallel.plan.blocks_of`) recomputed in backward through
  ``torch.utils.checkpoint.checkpoint(use_reentrant=False)``;
- :func:`fused_attention`: each ``nn.MultiheadAttention`` called with
  ``need_weights=False`` and attention dropout 0.0, the two things that keep PyTorch
  from taking its fused ``scaled_dot_product_attention`` kernel in training;
- :func:`dilated_tcn`: a recurrence replaced by a causal dilated convolution stack with
  the recurrence's input and output widths (and its ``(output, state)`` return value).

bf16 needs no copy: it is the cost model's own ``dtype`` setting (autocast).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from archlint.graph import ModelGraph


class _Wrapper(nn.Module):
    """A module in a block's place that still answers for the block's attributes
    (``nn.TransformerEncoder`` reads ``self.layers[0].self_attn.batch_first``)."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("block"), name)


class CheckpointedBlock(_Wrapper):
    """A block whose activations are recomputed in backward instead of kept.

    The cost model runs the module through ``functional_call`` with fake parameters; the
    recomputation happens in backward, after that call has put the module's own
    parameters back, so the state in use at forward time is captured and used again.
    """

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        from torch.utils.checkpoint import checkpoint

        state = {**dict(self.block.named_parameters(remove_duplicate=False)),
                 **dict(self.block.named_buffers(remove_duplicate=False))}

        def run(*inputs: Any) -> Any:
            return functional_call(self.block, state, inputs, kwargs)

        return checkpoint(run, *args, use_reentrant=False)


def copy_of(graph: ModelGraph) -> nn.Module:
    from archlint.parallel.simulate import meta_copy

    return meta_copy(graph.module)


def with_module(graph: ModelGraph, module: nn.Module) -> ModelGraph:
    """The traced graph with another module (same input, same layers) for the cost model."""
    return dataclasses.replace(graph, module=module)


def _replace(root: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, new)


def checkpoint_blocks(module: nn.Module) -> tuple[nn.Module, tuple[str, ...]]:
    """``module`` with each block checkpointed; the block paths (empty: none found, or
    the root itself is the only block)."""
    from archlint.parallel.plan import blocks_of

    blocks = tuple(path for path in blocks_of(module) if path)
    for path in blocks:
        _replace(module, path, CheckpointedBlock(module.get_submodule(path)))
    return module, blocks


def fused_attention(module: nn.Module, paths: list[str]) -> list[str]:
    """Make each ``nn.MultiheadAttention`` at ``paths`` take the fused kernel in training.

    Returns the paths changed (an attention layer that is not an ``nn.MultiheadAttention``
    cannot be switched mechanically)."""
    changed = []
    for path in paths:
        try:
            attention = module.get_submodule(path)
        except AttributeError:
            continue
        if not isinstance(attention, nn.MultiheadAttention):
            continue
        attention.dropout = 0.0
        original = attention.forward

        def forward(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            kwargs["need_weights"] = False
            return _original(*args, **kwargs)

        attention.forward = forward
        changed.append(path)
    return changed


class Pooled(_Wrapper):
    """The block fed the sequence average-pooled by ``factor`` (the tail padded by
    repeating the last position); with ``repeat`` its output repeated back to n."""

    def __init__(self, block: nn.Module, factor: int, pool: bool, repeat: bool,
                 lengths: dict[str, int], dim: int = 1) -> None:
        super().__init__(block)
        self.factor, self.pool, self.repeat, self.dim = factor, pool, repeat, dim
        self.lengths = lengths                  # shared by the pooling and repeating ends

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        f, dim = self.factor, self.dim
        if self.pool:
            self.lengths["n"] = n = x.shape[dim]
            groups = -(-n // f)
            if groups * f != n:
                tail = x.narrow(dim, n - 1, 1)
                x = torch.cat([x] + [tail] * (groups * f - n), dim=dim)
            x = x.unflatten(dim, (groups, f)).mean(dim + 1)
        out = self.block(x, *args, **kwargs)
        if self.repeat:
            n = self.lengths["n"]
            out = out.repeat_interleave(f, dim=dim).narrow(dim, 0, n)
        return out


def downsampled(module: nn.Module, blocks: tuple[str, ...], factor: int) -> nn.Module:
    """``module`` with the sequence pooled by ``factor`` into the first block and repeated
    back after the last (the blocks between run at n/factor)."""
    first, last = blocks[0], blocks[-1]
    lengths: dict[str, int] = {}
    if first == last:
        _replace(module, first, Pooled(module.get_submodule(first), factor, True, True,
                                       lengths))
        return module
    head = Pooled(module.get_submodule(first), factor, True, False, lengths)
    tail = Pooled(module.get_submodule(last), factor, False, True, lengths)
    _replace(module, first, head)
    _replace(module, last, tail)
    return module


class DilatedTCN(nn.Module):
    """A causal dilated convolution stack in a recurrence's place (Bai et al., 2018).

    Kernel ``k``, dilations ``d_i``; each layer is left-padded by ``(k-1)·d_i`` so output
    t reads inputs t-(k-1)·Σd .. t: R = 1 + (k-1)·Σd. It reads and returns what the
    recurrence did: ``(B, n, C)`` (``batch_first``) or ``(n, B, C)``, and an
    ``(output, state)`` pair whose state is the last position, so the code around it
    runs unchanged.
    """

    def __init__(self, inputs: int, width: int, kernel: int, dilations: tuple[int, ...],
                 batch_first: bool, layers: int, cell: str) -> None:
        super().__init__()
        self.batch_first, self.kernel, self.dilations = batch_first, kernel, dilations
        self.layers, self.cell, self.width = layers, cell, width
        self.convs = nn.ModuleList(
            nn.Conv1d(inputs if i == 0 else width, width, kernel, dilation=d)
            for i, d in enumerate(dilations))

    def forward(self, x: torch.Tensor, state: Any = None) -> Any:
        h = x.transpose(1, 2) if self.batch_first else x.permute(1, 2, 0)   # (B, C, n)
        for conv in self.convs:
            pad = (self.kernel - 1) * conv.dilation[0]
            h = torch.relu(conv(nn.functional.pad(h, (pad, 0))))
        out = h.transpose(1, 2) if self.batch_first else h.permute(2, 0, 1)
        last = h[:, :, -1].unsqueeze(0).expand(self.layers, -1, -1)
        if self.cell == "lstm":
            return out, (last, last)
        return out, last


def dilated_tcn(module: nn.Module, path: str, kernel: int,
                dilations: tuple[int, ...]) -> nn.Module | None:
    """``module`` with the ``nn.LSTM``/``nn.GRU``/``nn.RNN`` at ``path`` replaced by a
    :class:`DilatedTCN` of the same widths; None when ``path`` is not such a module."""
    recurrence = module.get_submodule(path) if path else module
    if not isinstance(recurrence, nn.RNNBase):
        return None
    cell = "lstm" if isinstance(recurrence, nn.LSTM) else "gru"
    directions = 2 if recurrence.bidirectional else 1
    width = getattr(recurrence, "proj_size", 0) or recurrence.hidden_size
    tcn = DilatedTCN(recurrence.input_size, width * directions, kernel, dilations,
                     recurrence.batch_first, recurrence.num_layers * directions, cell)
    tcn = tcn.to("meta")
    if not path:
        return tcn
    _replace(module, path, tcn)
    return module
