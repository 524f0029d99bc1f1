"""A parallel layout: how one training step is spread over devices.

``--parallel dp=4,fsdp=8,tp=2,cp=2`` (or ``parallel = {fsdp = 8, tp = 2}`` in
``[tool.archlint]``, or ``parallel={"fsdp": 8}`` in the Python and pytest API) names the
degree of each mesh dimension; the devices are their product:

- ``dp``: data parallel, a full replica per group (HSDP's replicate dimension when
  ``fsdp`` is also given); gradients are all-reduced;
- ``fsdp``: fully sharded data parallel (ZeRO-3): parameters, gradients and optimizer
  state sharded, parameters all-gathered per block for its forward and backward;
- ``tp``: tensor parallel: attention and MLP weights split colwise/rowwise (Megatron);
- ``cp``: context parallel: the sequence split, attention exchanging keys and values.

``--zero 1|2|3`` is the DeepSpeed spelling of the sharding over the data-parallel ranks
(the ``fsdp`` degree, or ``dp`` when no ``fsdp`` is given): 3 shards everything (FSDP's
full shard), 2 keeps parameters gathered from forward to backward (FSDP2's
``reshard_after_forward=False``), 1 shards only the optimizer state
(``ZeroRedundancyOptimizer``). Stages 1 and 2 over data-parallel ranks alone are
printed ``dp=N`` (``fsdp`` names ZeRO-3's full shard), with what the stage shards.
``--checkpoint full`` recomputes each block's activations in backward, keeping only its
input (Korthikanti et al. 2022's full recompute);
``selective`` (their recompute of the attention scores alone) is refused: PyTorch's
op-level selective checkpointing keeps every output an op policy marks, not what
autograd saves, so it cannot be made to hold that figure;
``--offload`` keeps the sharded parameters, gradients and optimizer state in host memory
at ZeRO-3 (FSDP2's ``CPUOffloadPolicy``), the optimizer state at ZeRO-1/2 (ZeRO-Offload).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from archlint.errors import ArchlintError

#: mesh dimensions, outermost first (the order torchtitan builds its mesh in)
DIMENSIONS = ("dp", "fsdp", "cp", "tp")
CHECKPOINTS = ("none", "full")
ZERO_STAGES = (1, 2, 3)
#: largest world a layout may name (a fake process group of this size is cheap, but a
#: layout beyond it is a typo)
MAX_DEVICES = 1 << 16


@dataclass(frozen=True)
class Layout:
    """Degrees per mesh dimension and how the step uses them."""

    dp: int = 1
    fsdp: int = 1
    cp: int = 1
    tp: int = 1
    zero: int = 3                   # sharding stage over the data-parallel ranks
    checkpoint: str = "none"
    offload: bool = False

    @property
    def devices(self) -> int:
        return self.dp * self.fsdp * self.cp * self.tp

    @property
    def shard(self) -> int:
        """Ranks the parameters (stage 3), gradients (2) or optimizer state (1) split over."""
        return self.fsdp

    def degrees(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in DIMENSIONS}

    def named_degrees(self) -> dict[str, int]:
        """The degrees as the layout is spelled: ZeRO-1/2 over data-parallel ranks alone
        (``--parallel dp=8 --zero 1``) name their ranks ``dp``, not ``fsdp``, which is
        ZeRO-3's full sharding (the mesh still calls that dimension ``fsdp``)."""
        degrees = self.degrees()
        if self.zero < 3 and self.dp == 1 and self.fsdp > 1:
            degrees["dp"], degrees["fsdp"] = self.fsdp, 1
        return degrees

    def text(self) -> str:
        """``fsdp=8,tp=2``: the dimensions above 1 (``dp=1`` for a single device); the
        ``--parallel`` text that, with this ``--zero``, gives this layout back."""
        named = [f"{k}={v}" for k, v in self.named_degrees().items() if v > 1]
        return ",".join(named) or "dp=1"

    def sharded(self) -> str:
        """What the data-parallel ranks split at this ZeRO stage."""
        return {1: "optimizer state", 2: "gradients and optimizer state",
                3: "parameters, gradients and optimizer state"}[self.zero]

    def describe(self) -> str:
        """One line for the report: layout, stage, checkpointing, offload."""
        parts = [f"{self.text()} ({self.devices} device{'s' * (self.devices > 1)})"]
        if self.shard > 1:
            parts.append(f"ZeRO-{self.zero} over {self.shard} ({self.sharded()} sharded)")
        if self.checkpoint != "none":
            parts.append(f"{self.checkpoint} checkpointing")
        if self.offload:
            parts.append("parameter and gradient shards and optimizer state offloaded to "
                         "host" if self.zero == 3 else "optimizer state offloaded to host")
        return ", ".join(parts)

    def with_degrees(self, **degrees: int) -> Layout:
        values = {**self.__dict__, **degrees}
        return Layout(**values)

    def to_dict(self) -> dict[str, Any]:
        return {**self.named_degrees(), "devices": self.devices, "zero": self.zero,
                "sharded_over": self.shard, "checkpoint": self.checkpoint,
                "offload": self.offload}


def parse_degrees(value: Any) -> str:
    """``"fsdp=8,tp=2"`` or ``{"fsdp": 8, "tp": 2}`` -> the canonical text ``fsdp=8,tp=2``.

    Raises :class:`ValueError` naming the constraint (an unknown dimension, a degree that
    is not a positive integer, a dimension given twice, more than :data:`MAX_DEVICES`).
    """
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, str):
        items = []
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            key, sep, degree = part.partition("=")
            if not sep:
                raise ValueError(f"{part!r} is not dimension=degree (e.g. fsdp=8,tp=2)")
            items.append((key.strip(), degree.strip()))
    else:
        raise ValueError(f"{value!r} is not a layout: use e.g. \"fsdp=8,tp=2\"")
    degrees: dict[str, int] = {}
    for key, degree in items:
        name = str(key).lower()
        if name not in DIMENSIONS:
            raise ValueError(f"unknown dimension {key!r}: use {', '.join(DIMENSIONS)}")
        if name in degrees:
            raise ValueError(f"dimension {name} given twice")
        degrees[name] = _degree(name, degree)
    if not degrees:
        raise ValueError("no dimension given: use e.g. fsdp=8 or dp=4,fsdp=8,tp=2,cp=2")
    if math.prod(degrees.values()) > MAX_DEVICES:
        raise ValueError(f"{math.prod(degrees.values())} devices exceed {MAX_DEVICES}")
    return ",".join(f"{name}={degrees[name]}" for name in DIMENSIONS if name in degrees)


def _degree(name: str, degree: Any) -> int:
    if isinstance(degree, bool):
        raise ValueError(f"{name}={degree!r}: a degree is a positive integer")
    try:
        number = int(str(degree))
    except ValueError:
        raise ValueError(f"{name}={degree!r}: a degree is a positive integer") from None
    if number < 1:
        raise ValueError(f"{name}={number}: a degree must be at least 1 "
                         f"({name}=1 means no {name} sharding)")
    return number


def parse_checkpoint(value: Any) -> str:
    """``none`` or ``full``; ``selective`` is named and refused with the reason."""
    text = value.strip().lower() if isinstance(value, str) else None
    if text == "selective":
        raise ValueError("'selective' is not simulated (op-level selective checkpointing "
                         "does not keep Korthikanti's 34·s·b·h per layer): use none or full")
    if text not in CHECKPOINTS:
        raise ValueError(f"{value!r} is not one of {', '.join(CHECKPOINTS)}")
    return text


def parse_zero(value: Any) -> int:
    if isinstance(value, bool) or str(value).strip() not in {str(s) for s in ZERO_STAGES}:
        raise ValueError(f"{value!r} is not a ZeRO stage: use 1, 2 or 3")
    return int(str(value).strip())


def layout_of(settings: Any) -> Layout | None:
    """The layout a run's settings ask for; None when no parallel setting was given."""
    if settings.parallel is None and settings.zero is None and not settings.offload \
            and settings.checkpoint == "none":
        return None
    degrees: dict[str, int] = {}
    for part in (settings.parallel or "").split(","):
        if part:
            key, _, degree = part.partition("=")
            degrees[key] = int(degree)
    zero = settings.zero if settings.zero is not None else 3
    if settings.zero is not None and degrees.get("fsdp", 1) == 1 and degrees.get("dp", 1) > 1:
        degrees["fsdp"], degrees["dp"] = degrees["dp"], 1     # dp ranks become the shards
    if settings.zero is not None and degrees.get("fsdp", 1) == 1:
        raise ArchlintError(
            f"--zero {settings.zero}: no data-parallel ranks to shard over; give a degree, "
            "e.g. --parallel dp=8 --zero 2")
    return Layout(**degrees, zero=zero, checkpoint=settings.checkpoint,
                  offload=settings.offload)
