"""Layer kinds of ``torch.nn`` module types.

Each handler reads the module's own attributes (kernel, stride, heads...). Properties
that depend on how the module is called (a causal mask, left padding, a chomp) are
refined from the graph in :mod:`archlint.classify.refine`.
"""

from __future__ import annotations

from torch import nn

from archlint.classify.registry import Classification, register_module
from archlint.kinds import LayerKind


def _tuple(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


@register_module(nn.Conv1d, nn.Conv2d, nn.Conv3d,
                 nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
def convolution(module: nn.modules.conv._ConvNd) -> Classification:
    padding = module.padding if isinstance(module.padding, str) else _tuple(module.padding)
    return Classification(LayerKind.CONV, {
        "kernel_size": _tuple(module.kernel_size),
        "stride": _tuple(module.stride),
        "dilation": _tuple(module.dilation),
        "padding": padding,
        "groups": module.groups,
        "transposed": module.transposed,
    })


@register_module(nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.LPPool1d,
                 nn.LPPool2d)
def pooling(module: nn.Module) -> Classification:
    stride = module.stride if module.stride is not None else module.kernel_size
    return Classification(LayerKind.POOL, {
        "kernel_size": _tuple(module.kernel_size),
        "stride": _tuple(stride),
        "padding": _tuple(getattr(module, "padding", 0)),
        "dilation": _tuple(getattr(module, "dilation", 1)),
    })


@register_module(nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d,
                 nn.AdaptiveMaxPool2d)
def adaptive_pooling(module: nn.Module) -> Classification:
    return Classification(LayerKind.GLOBAL_MIX, {"output_size": _tuple(module.output_size)})


@register_module(nn.RNN, nn.LSTM, nn.GRU)
def recurrence(module: nn.RNNBase) -> Classification:
    return Classification(LayerKind.RECURRENCE, {
        "cell": module.mode.lower().replace("rnn_tanh", "rnn").replace("rnn_relu", "rnn"),
        "hidden_size": module.hidden_size,
        "num_layers": module.num_layers,
        "bidirectional": module.bidirectional,
        "batch_first": module.batch_first,
    })


@register_module(nn.RNNCell, nn.LSTMCell, nn.GRUCell)
def recurrent_cell(module: nn.RNNCellBase) -> Classification:
    """A cell is a recurrence when a loop calls it per step (see refine.loops)."""
    cell = {nn.RNNCell: "rnn", nn.LSTMCell: "lstm", nn.GRUCell: "gru"}[type(module)]
    return Classification(LayerKind.RECURRENCE, {
        "cell": cell, "hidden_size": module.hidden_size, "num_layers": 1,
        "bidirectional": False, "loop": True,
    })


@register_module(nn.MultiheadAttention)
def multihead_attention(module: nn.MultiheadAttention) -> Classification:
    return Classification(LayerKind.ATTENTION, {
        "heads": module.num_heads,
        "head_dim": module.head_dim,
        "causal": False,
        "implementation": "fused",
        "batch_first": module.batch_first,
    }, claims_children=True)


@register_module(nn.Embedding, nn.EmbeddingBag)
def embedding(module: nn.Module) -> Classification:
    kind = LayerKind.GLOBAL_MIX if isinstance(module, nn.EmbeddingBag) else LayerKind.EMBEDDING
    return Classification(kind, {"num_embeddings": module.num_embeddings,
                                 "embedding_dim": module.embedding_dim})


@register_module(nn.Linear, nn.Bilinear, nn.LazyLinear)
def linear(module: nn.Module) -> Classification:
    params = {}
    if hasattr(module, "in_features"):
        params = {"in_features": module.in_features, "out_features": module.out_features}
    return Classification(LayerKind.POINTWISE, params)


@register_module(nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.BatchNorm1d, nn.BatchNorm2d,
                 nn.InstanceNorm1d, nn.LocalResponseNorm)
def normalization(module: nn.Module) -> Classification:
    return Classification(LayerKind.POINTWISE, {"op": type(module).__name__})


@register_module(nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU,
                 nn.Mish, nn.Softplus, nn.Hardswish, nn.PReLU, nn.GLU, nn.Softmax,
                 nn.LogSoftmax, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity,
                 nn.ReLU6, nn.Hardtanh, nn.SELU, nn.CELU)
def activation(module: nn.Module) -> Classification:
    return Classification(LayerKind.POINTWISE, {"op": type(module).__name__})
