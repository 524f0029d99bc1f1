"""DTensor sharding rules for CPU attention kernels, so TP runs as it would on a GPU.

A fake CPU run dispatches ``F.scaled_dot_product_attention`` to
``aten._scaled_dot_product_flash_attention_for_cpu``, for which DTensor (torch 2.13)
registers no sharding strategy, while the CUDA flash kernel has one: replicate, shard
the heads (dim 1, what tensor parallelism does), or shard the batch. The CPU kernel
computes the same function of the same tensors (``(B, h, n, e)`` q/k/v, output of that
shape, log-sum-exp ``(B, h, n)``), so the same three placements are registered for it
and its backward. An attention mask, when given, stays replicated.
"""

from __future__ import annotations

import torch

aten = torch.ops.aten
FORWARD = aten._scaled_dot_product_flash_attention_for_cpu.default
BACKWARD = aten._scaled_dot_product_flash_attention_for_cpu_backward.default


def register_cpu_attention() -> None:
    """Register the strategies once per process (DTensor's registry is global)."""
    from torch.distributed.tensor import DTensor, Replicate, Shard
    from torch.distributed.tensor._op_schema import OpStrategy, RuntimeSchemaInfo
    from torch.distributed.tensor._ops.utils import (
        expand_to_full_mesh_op_strategy,
        register_op_strategy,
    )

    propagator = DTensor._op_dispatcher.sharding_propagator
    if FORWARD in propagator.op_strategy_funcs:
        return

    def tensors(schema) -> int:  # noqa: ANN001
        args = list(schema.args_schema) + list(schema.kwargs_schema.values())
        return sum(isinstance(arg, OpStrategy) for arg in args)

    @register_op_strategy(FORWARD, schema_info=RuntimeSchemaInfo(3, needs_pytree=True))
    def forward(op_schema):  # noqa: ANN001,ANN202
        extra = [Replicate()] * (tensors(op_schema) - 3)        # the mask
        strategies = [[Replicate()] * (5 + len(extra))]
        for dim in (1, 0):
            strategies.append([Shard(dim)] * 5 + extra)
        return expand_to_full_mesh_op_strategy(op_schema.get_mesh_from_args(), op_schema,
                                               strategies, input_index=2)

    @register_op_strategy(BACKWARD, schema_info=RuntimeSchemaInfo(6, needs_pytree=True))
    def backward(op_schema):  # noqa: ANN001,ANN202
        extra = [Replicate()] * (tensors(op_schema) - 6)
        strategies = [[Replicate()] * (9 + len(extra))]
        for dim in (1, 0):
            strategies.append([Shard(dim)] * 9 + extra)
        return expand_to_full_mesh_op_strategy(op_schema.get_mesh_from_args(validate=False),
                                               op_schema, strategies, input_index=3)
