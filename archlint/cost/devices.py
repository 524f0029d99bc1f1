"""The devices archlint predicts for: ``--device h100-80gb``, ``--memory a100-80gb``.

``total`` is the memory ``nvidia-smi`` reports for the board (MiB, as the driver sees
it after ECC and firmware reservations); ``usable`` leaves :data:`RESERVE` for the CUDA
context, cuBLAS/cuDNN workspaces and allocator fragmentation, which no tensor can use.
``sm`` is the compute capability: it decides which fused attention kernels exist
(:mod:`archlint.cost.sdpa`) and the cuBLAS workspace size.

=================  ===========  ==========  ====
name               total (MiB)  usable      sm
=================  ===========  ==========  ====
a100-80gb          81920        79 GiB      8.0
a100-40gb          40960        39 GiB      8.0
h100-80gb          81559        78.6 GiB    9.0
h200-141gb         143771       139.4 GiB   9.0
l40s-48gb          46068        44 GiB      8.9
a10g-24gb          23028        21.5 GiB    8.6
l4-24gb            23034        21.5 GiB    8.9
rtx4090-24gb       24564        23 GiB      8.9
rtx3090-24gb       24576        23 GiB      8.6
t4-16gb            15360        14 GiB      7.5
v100-16gb          16160        14.8 GiB    7.0
v100-32gb          32510        30.7 GiB    7.0
cuda:<size>        <size>       size − 1G   8.0
=================  ===========  ==========  ====

``cpu`` (the default) predicts this machine's CPU kernels. ``cuda:<size>`` is a generic
GPU of that memory with A100-class (sm 8.0) kernels.

Inside :data:`RESERVE` two parts are documented constants rather than measurements
here: the CUDA context (:data:`CUDA_CONTEXT`, what ``nvidia-smi`` shows for a process
that has only initialized CUDA with lazy module loading, CUDA 12) and the cuBLAS
workspace PyTorch allocates per handle and stream (``CublasHandlePool.cpp``:
32 MiB on sm 9.0, else 4096 KiB · 2 + 16 KiB · 8). The rest of the reserve is headroom
for the caching allocator's rounding and fragmentation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from archlint.errors import ArchlintError

#: bytes no tensor can use: CUDA context, library workspaces, fragmentation
RESERVE = 1 << 30
_MIB = 1 << 20


#: CUDA context per process, by compute capability major (documented constant)
CUDA_CONTEXT = {7: 300 * _MIB, 8: 420 * _MIB, 9: 500 * _MIB}


@dataclass(frozen=True)
class Device:
    name: str
    description: str
    total: int                      # bytes the driver reports
    sm: tuple[int, int] = (8, 0)    # compute capability
    #: the CUDA context measured by the user (``cuda_context`` in config) instead of the
    #: family's documented constant
    context_override: int | None = None

    @property
    def usable(self) -> int:
        return self.total - self.reserve

    @property
    def reserve(self) -> int:
        """Bytes no tensor gets: :data:`RESERVE`, with the context the user set in place
        of the documented one (workspace and allocator headroom stay)."""
        return RESERVE - self.documented_context + self.context

    @property
    def documented_context(self) -> int:
        return CUDA_CONTEXT.get(self.sm[0], CUDA_CONTEXT[9])

    @property
    def context(self) -> int:
        """Bytes of the CUDA context (a documented constant per family, or the user's)."""
        return self.documented_context if self.context_override is None \
            else self.context_override

    @property
    def cublas_workspace(self) -> int:
        """Bytes of PyTorch's default cuBLAS workspace on this compute capability."""
        return 32 * _MIB if self.sm == (9, 0) else 4096 * 1024 * 2 + 16 * 1024 * 8

    @property
    def allocator_headroom(self) -> int:
        return self.reserve - self.context - self.cublas_workspace


DEVICES: dict[str, Device] = {device.name: device for device in (
    Device("a100-80gb", "NVIDIA A100 80GB", 81920 * _MIB, (8, 0)),
    Device("a100-40gb", "NVIDIA A100 40GB", 40960 * _MIB, (8, 0)),
    Device("h100-80gb", "NVIDIA H100 80GB HBM3", 81559 * _MIB, (9, 0)),
    Device("h200-141gb", "NVIDIA H200 141GB", 143771 * _MIB, (9, 0)),
    Device("l40s-48gb", "NVIDIA L40S", 46068 * _MIB, (8, 9)),
    Device("a10g-24gb", "NVIDIA A10G", 23028 * _MIB, (8, 6)),
    Device("l4-24gb", "NVIDIA L4", 23034 * _MIB, (8, 9)),
    Device("rtx4090-24gb", "NVIDIA GeForce RTX 4090", 24564 * _MIB, (8, 9)),
    Device("rtx3090-24gb", "NVIDIA GeForce RTX 3090", 24576 * _MIB, (8, 6)),
    Device("t4-16gb", "NVIDIA T4", 15360 * _MIB, (7, 5)),
    Device("v100-16gb", "NVIDIA V100 16GB", 16160 * _MIB, (7, 0)),
    Device("v100-32gb", "NVIDIA V100 32GB", 32510 * _MIB, (7, 0)),
)}
#: ``--device`` names that mean this machine's CPU kernels
CPU_NAMES = ("cpu",)
_GENERIC = re.compile(r"^cuda:\s*(\S.*)$")

_SIZE_LIKE = re.compile(r"^\s*\d")


def find_device(name: str | None, cuda_context: int | None = None) -> Device | None:
    """The GPU a canonical device name stands for; None for the CPU (or no device).
    ``cuda_context``: the user's measured CUDA context, in place of the documented one."""
    if name is None or name in CPU_NAMES:
        return None
    if name in DEVICES:
        return replace(DEVICES[name], context_override=cuda_context)
    generic = _GENERIC.match(name)
    if generic:
        from archlint.units import parse_size

        return Device(name, f"a generic GPU of {generic.group(1)}", parse_size(generic.group(1)),
                      context_override=cuda_context)
    raise ArchlintError(f"unknown device {name!r}: use cpu, cuda:<size> or one of "
                        f"{', '.join(DEVICES)}")


def canonical_device(text: str) -> str:
    """``--device`` text -> its canonical name (``cpu``, ``h100-80gb``, ``cuda:40gb``);
    an unknown name raises :class:`ArchlintError` listing the known ones."""
    if not isinstance(text, str) or not text.strip():
        raise ArchlintError(f"device {text!r}: use cpu, cuda:<size> or one of "
                            f"{', '.join(DEVICES)}")
    name = text.strip().lower().replace(" ", "")
    device = find_device(name)
    if device is not None and device.total <= RESERVE:
        raise ArchlintError(f"device {text!r}: {name.partition(':')[2]} is no more than the "
                            "1 GiB a GPU keeps for its context and workspaces")
    return name


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
