"""One training step of rank 0 under a layout, run with PyTorch's own distributed stack.

In a fake world of ``layout.devices`` ranks (:mod:`.world`), a parameter-free copy of the
user's model (every parameter and buffer on the meta device, nothing copied) gets, in
torchtitan's order:

1. the TP plan (:mod:`.plan`): ``parallelize_module`` with ``ColwiseParallel`` /
   ``RowwiseParallel`` over the ``tp`` mesh dimension;
2. activation checkpointing of each block (``checkpoint_wrapper``, non-reentrant: the
   block keeps only its input and recomputes the rest in backward);
3. ``fully_shard`` on each block, then on the root, over the ``dp``×``fsdp`` mesh
   (HSDP when ``dp`` > 1), with a ``MixedPrecisionPolicy`` for bfloat16/float16
   (fp32 master weights and gradients, 16-bit compute);

then its tensors become fake CPU tensors (``to_empty`` under ``FakeTensorMode``), and
one step — forward, backward from a dense gradient, the optimizer step — runs under
:class:`~.tracker.StepTracker`. The optimizer is the user's (Adam, AdamW, SGD) over the
local shard of every parameter, which is what each rank allocates, with its state
already created (steady state). Under ``cp`` the rank runs its n/cp positions, and the
key/value exchange of ring attention is added by formula (:mod:`.ring`).

The build does not depend on the length: :class:`Simulator` builds each layout once and
steps it at every length asked (the target lengths, the largest-n search), resharding
between steps so that each gives a fresh build's figures.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from archlint.cost.fake import backward_from, make_inputs, stock_causal_masks
from archlint.graph import ModelGraph
from archlint.parallel.layout import Layout
from archlint.parallel.plan import Plan
from archlint.parallel.ring import ring_exchange
from archlint.parallel.world import device_mesh, fake_world

_OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
_HALF = {"bfloat16": torch.bfloat16, "float16": torch.float16}


class SimulationError(Exception):
    """The layout could not be applied or run on this model (the reason is the text)."""


@dataclass(frozen=True)
class DeviceStep:
    """What one rank holds during one step at one length."""

    seq_len: int                        # the global sequence length
    peak: int
    parts: dict[str, int]               # category -> bytes live at the peak
    phase: str                          # forward | backward | optimizer
    state: dict[str, int]               # category -> bytes just before the optimizer step
    #                                     ("parameters": every parameter byte held, shards
    #                                     and the whole ones ZeRO-1/2 keep gathered)
    collectives: dict[str, int]         # all_gather | reduce_scatter | ... -> bytes per step
    saved: dict[str, int] = field(default_factory=dict)   # category -> bytes after forward
    method: str = "simulated"           # or "formula (...)" when the simulation failed
    formula: tuple[str, ...] = ()       # parts of a simulated step derived by formula
    host: dict[str, int] = field(default_factory=dict)    # --offload: host bytes at their peak


def simulate(graph: ModelGraph, layout: Layout, plan: Plan, seq_len: int, batch: int,
             dtype: str, optimizer: str) -> DeviceStep:
    """Rank 0's step at ``seq_len`` under ``layout``; :class:`SimulationError` if it fails."""
    with Simulator(graph, batch, dtype, optimizer) as simulator:
        return simulator.step(layout, plan, seq_len)


class Simulator:
    """Steps of one model under layouts, each layout built once and reused across lengths.

    Building a layout (the fake world, the meta copy, the TP plan, checkpoint wrapping,
    ``fully_shard``, ``to_empty``, the warm optimizer) does not depend on the length, so
    consecutive steps under one layout (the target lengths, the largest-n search) share
    one build; between steps the model is put back as a fresh build leaves it (every
    FSDP module resharded, no gradient), so each step gives the figures a fresh build
    gives (tested to the byte). One layout is held at a time: the fake world is
    process-global, so a step under another layout closes the held one first.
    """

    def __init__(self, graph: ModelGraph, batch: int, dtype: str, optimizer: str) -> None:
        self.graph, self.batch, self.dtype, self.optimizer = graph, batch, dtype, optimizer
        self._held: tuple[Any, _Built] | None = None
        self._world = contextlib.ExitStack()

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Destroy the held layout's fake world."""
        self._held = None
        self._world.close()

    def step(self, layout: Layout, plan: Plan, seq_len: int) -> DeviceStep:
        """Rank 0's step at ``seq_len`` under ``layout``; :class:`SimulationError` if it
        fails (the layout's build is then dropped, never reused half-run)."""
        key = (layout, plan.blocks, plan.colwise, plan.rowwise)
        try:
            with _quiet():
                if self._held is None or self._held[0] != key:
                    self.close()
                    self._world.enter_context(fake_world(layout.devices))
                    self._held = (key, _Built(self.graph, layout, plan, self.dtype,
                                              self.optimizer))
                return self._held[1].step(self.graph, seq_len, self.batch)
        except Exception as error:  # noqa: BLE001 - the user's model under a foreign runtime
            self.close()
            if isinstance(error, SimulationError):
                raise
            text = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise SimulationError(f"{type(error).__name__}: {text}") from error


class _Built:
    """One layout applied to a parameter-free copy of the model, ready to step."""

    def __init__(self, graph: ModelGraph, layout: Layout, plan: Plan, dtype: str,
                 optimizer_name: str) -> None:
        from torch._subclasses.fake_tensor import FakeTensorMode

        self.layout, self.dtype = layout, dtype
        mesh = device_mesh(layout)
        module = meta_copy(graph.module)
        module.train(True)
        if plan.colwise or plan.rowwise:
            _tensor_parallel(module, plan, mesh["tp"])
        blocks = [_checkpointed(module, path, layout.checkpoint) for path in plan.blocks]
        _data_parallel(module, blocks, layout, mesh, dtype)
        self.partitions = layout.shard if layout.zero == 1 else 1
        self.mode = FakeTensorMode(allow_non_fake_inputs=True)
        self.mode.cache_enabled = False  # distinct shapes: hashing costs more than it saves
        with self.mode:
            module.to_empty(device="cpu")
            self.params = list(dict.fromkeys(module.parameters()))
            self.shards = [_partition(_local(p), self.partitions).requires_grad_(True)
                           for p in self.params]
            self.optimizer = _warm_optimizer(optimizer_name, self.shards)
        self.module = module

    def step(self, graph: ModelGraph, seq_len: int, batch: int) -> DeviceStep:
        from archlint.parallel.tracker import StepTracker

        layout, module, optimizer = self.layout, self.module, self.optimizer
        params, shards, partitions = self.params, self.shards, self.partitions
        with self.mode, stock_causal_masks():
            args, kwargs = make_inputs(graph.input_spec, seq_len // layout.cp, batch)
            tracker = StepTracker(module, optimizer, host=_host_types(layout))
            tracker.track_inputs(args)
            with tracker:
                out = module(*args, **kwargs)
                tracker.mark_forward()
                backward_from(out)
                del out
                for param, shard in zip(params, shards):
                    shard.grad = (None if param.grad is None
                                  else _partition(_local(param.grad), partitions))
                tracker.mark_state()
                if optimizer is not None:
                    optimizer.step()
                for param, shard in zip(params, shards):
                    param.grad = shard.grad = None
            parts = tracker.peak_parts()
            _reshard(module)
        return self._figures(graph, tracker, parts, seq_len, batch)

    def _figures(self, graph: ModelGraph, tracker: Any, parts: dict[str, int],
                 seq_len: int, batch: int) -> DeviceStep:
        layout, dtype, partitions = self.layout, self.dtype, self.partitions
        collectives = dict(tracker.collectives)
        formula: list[str] = []
        if partitions > 1:
            gathered = sum(-(-p.numel() // partitions) * partitions * p.element_size()
                           for p in self.params)
            collectives["all_gather"] += gathered
            formula.append(f"ZeRO-1's all-gather of the updated parameter partitions "
                           f"({gathered:,} bytes: each parameter padded to a multiple of "
                           f"{partitions}) is by formula (after the optimizer step, "
                           "outside FSDP2)")
        if layout.zero == 1 and dtype not in _HALF and partitions > 1:
            formula.append("FSDP2's replicate holds a compute copy of each block's float32 "
                           "parameters from its forward to its backward (gathered "
                           "parameters), which DDP, using them in place, would not")
        ring = ring_exchange(graph, layout, seq_len, batch, dtype)
        if ring is not None:
            collectives["all_gather"] += ring.all_gather
            collectives["all_to_all"] += ring.all_to_all
            parts["communication"] += ring.buffers
            formula.append(ring.text())
        state = dict(tracker.state)
        state["parameters"] = state.get("parameters", 0) + state.get("gathered_parameters", 0)
        return DeviceStep(seq_len=seq_len, peak=sum(parts.values()), parts=parts,
                          phase=tracker.peak_phase, state=state, saved=tracker.saved,
                          collectives=collectives, formula=tuple(formula),
                          host=tracker.host_peak if layout.offload else {})


def _reshard(module: nn.Module) -> None:
    """Free every FSDP module's gathered parameters, as a fresh build has none (ZeRO-2
    keeps them gathered past backward; ZeRO-3 has already resharded, a no-op)."""
    for sub in module.modules():
        reshard = getattr(sub, "reshard", None)
        if callable(reshard) and hasattr(sub, "_get_fsdp_state"):
            reshard()


def meta_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` whose parameters and buffers live on the meta device.

    ``copy.deepcopy`` with the memo pre-filled: each parameter and buffer maps to a meta
    tensor of its shape, so no weight is copied and tied weights stay tied.
    """
    memo: dict[int, Any] = {}
    for tensor in [*module.parameters(), *module.buffers()]:
        if id(tensor) in memo:
            continue
        empty = torch.empty_like(tensor, device="meta")
        if isinstance(tensor, nn.Parameter):
            empty = nn.Parameter(empty, requires_grad=tensor.requires_grad)
        memo[id(tensor)] = empty
    return copy.deepcopy(module, memo)


def _partition(tensor: torch.Tensor, parts: int) -> torch.Tensor:
    """Rank 0's 1/``parts`` of ``tensor``: its first ⌈numel/parts⌉ elements, flattened
    (a view). ZeRO-1's optimizer-state partition: the same 1/N per rank as DeepSpeed's
    split of the flat parameter buffer. ``parts`` 1: the tensor itself."""
    if parts == 1:
        return tensor
    return tensor.reshape(-1)[:-(-tensor.numel() // parts)]


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """The shard this rank stores (a DTensor's local tensor; a plain tensor itself)."""
    to_local = getattr(tensor, "to_local", None)
    return to_local().detach() if to_local is not None else tensor.detach()


def _tensor_parallel(module: nn.Module, plan: Plan, mesh: Any) -> None:
    from torch.distributed.tensor import Shard
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        RowwiseParallel,
        parallelize_module,
    )

    styles: dict[str, Any] = {path: ColwiseParallel(use_local_output=False)
                              for path in plan.colwise}
    styles.update({path: RowwiseParallel(input_layouts=Shard(-1)) for path in plan.rowwise})
    from archlint.parallel.strategies import register_cpu_attention

    register_cpu_attention()
    parallelize_module(module, mesh, styles)


def _checkpointed(module: nn.Module, path: str, how: str) -> nn.Module:
    """The block at ``path``, wrapped for activation checkpointing when asked."""
    block = module.get_submodule(path)
    if how == "none":
        return block
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
        CheckpointImpl,
        checkpoint_wrapper,
    )

    wrapped = checkpoint_wrapper(block, checkpoint_impl=CheckpointImpl.NO_REENTRANT)
    parent_path, _, name = path.rpartition(".")
    setattr(module.get_submodule(parent_path) if parent_path else module, name, wrapped)
    return wrapped


def _data_parallel(module: nn.Module, blocks: list[nn.Module], layout: Layout, mesh: Any,
                   dtype: str) -> None:
    """Each block, then the root, under the data-parallel stage of ``layout``.

    - ZeRO-3: FSDP2 ``fully_shard`` (parameters resharded after each block's forward and
      again after its backward);
    - ZeRO-2: ``fully_shard(reshard_after_forward=False)`` with
      ``set_reshard_after_backward(False)``: parameters stay gathered from the forward
      through the optimizer step, as DeepSpeed's stage 2 keeps them whole, while
      gradients are reduce-scattered to shards;
    - ZeRO-1: ``replicate`` (FSDP2's data parallel, ``replicate_with_fsdp``): parameters
      and gradients whole on every rank, gradients all-reduced; the optimizer state is
      partitioned by :func:`_partition`.
    """
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

    data = mesh["dp", "fsdp"] if layout.dp > 1 else mesh["fsdp"]
    options: dict[str, Any] = {"mesh": data}
    if dtype in _HALF:
        options["mp_policy"] = MixedPrecisionPolicy(param_dtype=_HALF[dtype],
                                                    reduce_dtype=torch.float32)
    if layout.offload and layout.zero == 3:
        options["offload_policy"] = CPUOffloadPolicy(pin_memory=False)
    if layout.zero == 1:
        from torch.distributed._composable.replicate_with_fsdp import replicate

        if layout.dp > 1:
            options["mesh"] = data._flatten("dp_fsdp")
        for block in blocks:
            replicate(block, **options)
        replicate(module, **options)
        return
    options["reshard_after_forward"] = layout.zero == 3
    for block in [*blocks, module]:
        fully_shard(block, **options)
        if layout.zero == 2:
            block.set_reshard_after_backward(False)


def _host_types(layout: Layout) -> frozenset[str]:
    """FSDPMemTracker's reference types that live in host memory under ``--offload``:
    FSDP2's ``CPUOffloadPolicy`` (ZeRO-3) keeps the sharded parameters and gradients and
    the optimizer state there; ZeRO-1/2 offload the optimizer state (ZeRO-Offload)."""
    if not layout.offload:
        return frozenset()
    if layout.zero == 3:
        return frozenset({"Sharded Param", "Sharded Grad", "OptState"})
    return frozenset({"OptState"})


def _warm_optimizer(name: str, shards: list[torch.Tensor]) -> Any:
    """The optimizer over the local shards with its state already created (steady state).

    The state is created by the optimizer's own lazy initialization (``_init_group``,
    what its first ``step`` runs before the update: Adam's step counter and two moments
    per shard), without the update's arithmetic; where that private hook is missing or
    differs, one step on zero gradients creates the same state."""
    if name not in _OPTIMIZERS or not shards:
        return None
    optimizer = _OPTIMIZERS[name](shards, lr=1e-3, foreach=True)
    for shard in shards:
        shard.grad = torch.zeros_like(shard)
    if not _init_state(optimizer):
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return optimizer


def _init_state(optimizer: Any) -> bool:
    """Run ``optimizer._init_group`` on every group (empty lists for its outputs); False
    when the hook is missing or its signature is not the ``(group, *lists)`` one."""
    import inspect

    init = getattr(optimizer, "_init_group", None)
    if init is None:
        return False
    try:
        names = list(inspect.signature(init).parameters)
    except (TypeError, ValueError):
        return False
    if not names or names[0] != "group":
        return False
    try:
        for group in optimizer.param_groups:
            init(group, *[[] for _ in names[1:]])
    except (TypeError, KeyError, AttributeError):
        optimizer.state.clear()
        return False
    return True


@contextlib.contextmanager
def _quiet():
    """Silence the fake-tensor logger while the user's model runs on a foreign stack."""
    import logging

    logger = logging.getLogger("torch._subclasses.fake_tensor")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
