"""Running the user's model on fake tensors: every shape and allocation, no data.

The model is constructed once, for real, by the loader. Its parameters and buffers are
converted to fake CPU tensors of one :class:`FakeTensorMode` and the forward runs through
``torch.func.functional_call``, so the real CPU kernels' shape rules apply (an LSTM stays
one ``mkldnn_rnn_layer`` op, SDPA stays the fused flash kernel) while nothing of size n
is ever allocated.

Why not build the model under ``FakeTensorMode``: ``nn.TransformerEncoder`` clones its
layer with ``copy.deepcopy``, and deep-copying a fake parameter yields a tensor bound to
a *new* fake mode, so the forward fails with "Mixing fake modes NYI". Faking the tensors
of an already built module keeps every tensor in one mode.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._pytree import tree_flatten

from archlint.graph import InputSpec

#: autocast dtype per ``Settings.dtype``; float32 runs without autocast
AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class FakeModel:
    """The fake twin of a module's state: one fake tensor per real storage."""

    mode: FakeTensorMode
    state: dict[str, torch.Tensor]           # name -> fake tensor, tied names share one
    parameters: list[torch.Tensor] = field(default_factory=list)   # unique, trainable


def fake_model(module: nn.Module) -> FakeModel:
    """Fake every parameter and buffer of ``module``; tied weights stay tied.

    CPU tensors go through ``FakeTensorMode.from_tensor`` (which keeps views of one
    storage as views); tensors on other devices (meta, cuda) become fake CPU tensors of
    the same shape, stride and dtype, so the CPU kernels' rules apply to them too.
    """
    mode = FakeTensorMode(allow_non_fake_inputs=True)   # tensors kept as plain attributes
    memo: dict[int, torch.Tensor] = {}
    state: dict[str, torch.Tensor] = {}
    parameters: list[torch.Tensor] = []
    # one name per tensor: functional_call(tie_weights=True) fills in the other names
    # of a tied tensor, and refuses two values for them
    named = list(module.named_parameters()) + list(module.named_buffers())
    for name, tensor in named:
        key = id(tensor)
        if key not in memo:
            memo[key] = _fake_like(mode, tensor)
            if isinstance(tensor, nn.Parameter) and memo[key].requires_grad:
                parameters.append(memo[key])
        state[name] = memo[key]
    return FakeModel(mode=mode, state=state, parameters=parameters)


def _fake_like(mode: FakeTensorMode, tensor: torch.Tensor) -> torch.Tensor:
    requires_grad = isinstance(tensor, nn.Parameter) and tensor.requires_grad
    if tensor.device.type == "cpu" and not isinstance(tensor, torch._subclasses.FakeTensor):
        fake = mode.from_tensor(tensor.detach())
    else:
        with mode:
            fake = torch.empty_strided(tensor.shape, tensor.stride(), dtype=tensor.dtype,
                                       device="cpu")
    if requires_grad:
        fake.requires_grad_(True)
    return fake


@contextlib.contextmanager
def preserved(module: nn.Module, training: bool) -> Iterator[None]:
    """Set train/eval mode for one run and put every submodule back as it was.

    Restored: parameters and buffers (``functional_call`` restores a module registered
    under two names in the wrong order and leaves fake tensors behind), list attributes
    such as ``nn.LSTM._flat_weights``, and plain attributes a forward may set (a
    recurrent memory, a cache), which would hold fake tensors afterwards.
    """
    saved = []
    for sub in module.modules():
        lists = {key: list(value) for key, value in sub.__dict__.items() if isinstance(value, list)}
        saved.append((sub, sub.training, dict(sub.__dict__), dict(sub._parameters),
                      dict(sub._buffers), lists))
    module.train(training)
    try:
        yield
    finally:
        for sub, was_training, attributes, parameters, buffers, lists in saved:
            for key in [k for k in sub.__dict__ if k not in attributes]:
                del sub.__dict__[key]
            for key, value in attributes.items():
                if sub.__dict__.get(key) is not value:
                    sub.__dict__[key] = value
            _refill(sub._parameters, parameters)
            _refill(sub._buffers, buffers)
            for key, items in lists.items():
                current = sub.__dict__[key]
                if len(current) != len(items) or any(a is not b for a, b in zip(current, items)):
                    current[:] = items
            sub.training = was_training


def _refill(target: dict, original: dict) -> None:
    if target.keys() != original.keys() or any(target[k] is not v for k, v in original.items()):
        target.clear()
        target.update(original)


@contextlib.contextmanager
def stock_causal_masks() -> Iterator[None]:
    """Recognize ``nn.Transformer.generate_square_subsequent_mask`` masks by origin.

    ``nn.TransformerEncoder`` decides whether a mask is causal by value
    (``bool((mask == causal).all())``), which a fake tensor does not have. During a
    fake run, masks made by the stock generator are causal (as the real comparison
    finds), other fake masks are not.
    """
    from torch.nn.modules import transformer
    from torch.utils.weak import WeakIdKeyDictionary

    made = WeakIdKeyDictionary()
    generate = transformer._generate_square_subsequent_mask
    detect = transformer._detect_is_causal_mask

    def generating(*args: Any, **kwargs: Any) -> torch.Tensor:
        mask = generate(*args, **kwargs)
        made[mask] = True
        return mask

    def detecting(mask: torch.Tensor | None, is_causal: bool | None = None,
                  size: int | None = None) -> bool:
        if is_causal is None and isinstance(mask, torch._subclasses.FakeTensor):
            return mask in made and (size is None or mask.size(-2) == size)
        return detect(mask, is_causal, size)

    transformer._generate_square_subsequent_mask = generating
    transformer._detect_is_causal_mask = detecting
    try:
        yield
    finally:
        transformer._generate_square_subsequent_mask = generate
        transformer._detect_is_causal_mask = detect


def reparametrized(module: nn.Module, state: dict[str, torch.Tensor]
                   ) -> contextlib.AbstractContextManager:
    """``module`` with ``state`` (its fake tensors) in place of its own for as long as the
    block lasts: what ``functional_call`` does for one call, kept through backward, where
    activation checkpointing calls the block again (with the real weights otherwise,
    writing fake gradients into the user's parameters)."""
    from torch.nn.utils.stateless import _reparametrize_module

    return _reparametrize_module(module, state, tie_weights=True)


def make_inputs(spec: InputSpec, seq_len: int,
                batch: int) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The forward's arguments at length ``seq_len``; fake when called under a fake mode."""
    args = spec.make(seq_len, batch)
    if not isinstance(args, tuple):
        args = (args,)
    return args, dict(spec.kwargs)


def autocast(dtype: str) -> contextlib.AbstractContextManager:
    """Mixed precision as ``torch.autocast`` runs it on CPU; float32 runs as is."""
    if dtype in AUTOCAST_DTYPES:
        return torch.autocast("cpu", dtype=AUTOCAST_DTYPES[dtype])
    return contextlib.nullcontext()


def backward_from(output: Any) -> None:
    """Backward from every floating-point output that requires grad, seeded with ones.

    The seed is a dense tensor of each output's shape, as the gradient of a real loss
    (cross-entropy over logits) is; ``out.sum().backward()`` would seed an expanded
    stride-0 tensor that several CPU backward kernels copy internally, where no fake
    tensor sees it.
    """
    leaves, _ = tree_flatten(output)
    outputs = [t for t in leaves if isinstance(t, torch.Tensor)
               and t.is_floating_point() and t.requires_grad]
    if not outputs:
        raise ValueError("no floating-point output requires grad: nothing to train")
    torch.autograd.backward(outputs, [torch.ones_like(t) for t in outputs])
