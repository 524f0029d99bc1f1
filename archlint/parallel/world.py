"""A fake world of W devices in this one process: PyTorch's fake process group.

``torch.testing._internal.distributed.fake_pg`` registers the ``"fake"`` backend: a
process group whose collectives return at once without moving data, so rank 0 of a
world of any size runs alone, with every tensor the real rank 0 would hold. FSDP2,
DTensor and the device mesh run on it unchanged. Their shapes are all a memory
simulation needs.

``init_process_group`` is process-global (one default group per process), so a world is
a context: created on entry, destroyed on exit, and one at a time. A process that
already has a default group (a user's ``torchrun`` job calling the pytest API) is left
alone: :class:`WorldUnavailable` is raised and the simulation is skipped with that
reason, never run on the user's real group.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch.distributed as dist

from archlint.parallel.layout import DIMENSIONS, Layout

_LOCK = threading.Lock()


class WorldUnavailable(Exception):
    """No fake world can be created in this process (the reason is the text)."""


@contextlib.contextmanager
def fake_world(world_size: int) -> Iterator[None]:
    """A default process group of ``world_size`` fake ranks, this process being rank 0."""
    if not dist.is_available():
        raise WorldUnavailable("this torch build has no torch.distributed")
    from torch.testing._internal.distributed.fake_pg import FakeStore

    with _LOCK:
        if dist.is_initialized():
            raise WorldUnavailable("this process already has a default process group "
                                   "(torch.distributed is initialized)")
        dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=world_size)
        try:
            yield
        finally:
            dist.destroy_process_group()


def device_mesh(layout: Layout):  # noqa: ANN201 - DeviceMesh, imported lazily
    """The CPU mesh of ``layout``, one named dimension per entry of :data:`DIMENSIONS`."""
    from torch.distributed.device_mesh import init_device_mesh

    shape = tuple(getattr(layout, name) for name in DIMENSIONS)
    return init_device_mesh("cpu", shape, mesh_dim_names=DIMENSIONS)
