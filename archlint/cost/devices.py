"""Named devices a memory budget can be given as: ``--memory a100-80gb``.

``total`` is the memory ``nvidia-smi`` reports for the board (MiB, as the driver sees
it after ECC and firmware reservations); ``usable`` leaves :data:`RESERVE` for the CUDA
context, cuBLAS/cuDNN workspaces and allocator fragmentation, which no tensor can use.

=================  ===========  ==========
name               total (MiB)  usable
=================  ===========  ==========
a100-80gb          81920        79 GiB
a100-40gb          40960        39 GiB
h100-80gb          81559        78.6 GiB
h200-141gb         143771       139.4 GiB
l40s-48gb          46068        44 GiB
a10g-24gb          23028        21.5 GiB
l4-24gb            23034        21.5 GiB
rtx4090-24gb       24564        23 GiB
rtx3090-24gb       24576        23 GiB
t4-16gb            15360        14 GiB
v100-16gb          16160        14.8 GiB
v100-32gb          32510        30.7 GiB
=================  ===========  ==========
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from archlint.errors import ArchlintError

#: bytes no tensor can use: CUDA context, library workspaces, fragmentation
RESERVE = 1 << 30
_MIB = 1 << 20


@dataclass(frozen=True)
class Device:
    name: str
    description: str
    total: int                      # bytes the driver reports

    @property
    def usable(self) -> int:
        return self.total - RESERVE


DEVICES: dict[str, Device] = {device.name: device for device in (
    Device("a100-80gb", "NVIDIA A100 80GB", 81920 * _MIB),
    Device("a100-40gb", "NVIDIA A100 40GB", 40960 * _MIB),
    Device("h100-80gb", "NVIDIA H100 80GB HBM3", 81559 * _MIB),
    Device("h200-141gb", "NVIDIA H200 141GB", 143771 * _MIB),
    Device("l40s-48gb", "NVIDIA L40S", 46068 * _MIB),
    Device("a10g-24gb", "NVIDIA A10G", 23028 * _MIB),
    Device("l4-24gb", "NVIDIA L4", 23034 * _MIB),
    Device("rtx4090-24gb", "NVIDIA GeForce RTX 4090", 24564 * _MIB),
    Device("rtx3090-24gb", "NVIDIA GeForce RTX 3090", 24576 * _MIB),
    Device("t4-16gb", "NVIDIA T4", 15360 * _MIB),
    Device("v100-16gb", "NVIDIA V100 16GB", 16160 * _MIB),
    Device("v100-32gb", "NVIDIA V100 32GB", 32510 * _MIB),
)}

_SIZE_LIKE = re.compile(r"^\s*\d")


def device_memory(text: str) -> int | None:
    """Usable bytes of a named device; None for text that looks like a size (``16GX``).

    An unknown name raises :class:`ArchlintError` listing the known ones.
    """
    name = text.strip().lower()
    if name in DEVICES:
        return DEVICES[name].usable
    if _SIZE_LIKE.match(name):
        return None
    raise ArchlintError(
        f"unknown device {text!r}: use a size (16GB, 80GiB) or one of {', '.join(DEVICES)}")
