"""Running a user's forward without changing the user's model.

Some models keep state across calls (a recurrent memory stored on ``self``, BatchNorm
running statistics). archlint runs forward several times (validation, tracing, probes),
so each run happens inside :func:`preserved_state`, which puts plain attributes and
buffers back as they were.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

_TORCH_INTERNALS = frozenset(
    {"_parameters", "_buffers", "_modules", "_non_persistent_buffers_set", "training"}
)


@contextlib.contextmanager
def preserved_state(model: nn.Module) -> Iterator[None]:
    """Restore every module's plain attributes and buffer values after the block."""
    saved = []
    for module in model.modules():
        attributes = {k: v for k, v in vars(module).items()
                      if k not in _TORCH_INTERNALS and not k.startswith("_forward")
                      and not k.startswith("_backward") and not k.endswith("_hooks")}
        buffers = {k: v.detach().clone() for k, v in module._buffers.items()
                   if isinstance(v, torch.Tensor) and not v.is_meta}
        saved.append((module, attributes, buffers, module.training))
    try:
        yield
    finally:
        for module, attributes, buffers, training in saved:
            for key in [k for k in vars(module) if k not in _TORCH_INTERNALS
                        and k not in attributes and not k.startswith("_")]:
                delattr(module, key)
            vars(module).update(attributes)
            with torch.no_grad():
                for key, value in buffers.items():
                    if key in module._buffers and module._buffers[key] is not None:
                        module._buffers[key].copy_(value)
            module.training = training
