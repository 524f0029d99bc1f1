"""What a layer does along the sequence axis: the vocabulary every stage shares."""

from __future__ import annotations

from enum import Enum


class LayerKind(str, Enum):
    """How a layer mixes information across sequence positions."""

    CONV = "conv"                # local window: kernel, stride, dilation, padding, causal?
    POOL = "pool"                # local window without weights (max/avg pooling)
    RECURRENCE = "recurrence"    # RNN/LSTM/GRU and hand-written cell loops: n serial steps
    ATTENTION = "attention"      # global, causal, sliding-window, linear/kernelized
    SSM = "ssm"                  # state-space scan or long convolution
    GLOBAL_MIX = "global_mix"    # mean/max/sum over the whole sequence, flatten into Linear
    POINTWISE = "pointwise"      # acts per position: Linear over channels, norms, activations
    EMBEDDING = "embedding"      # token table lookup
    POSITIONAL = "positional"    # learned table with a maximum length, sinusoidal, rotary

    @property
    def mixes_positions(self) -> bool:
        """True for kinds that move information between sequence positions."""
        return self in _MIXING


_MIXING = frozenset(
    {LayerKind.CONV, LayerKind.POOL, LayerKind.RECURRENCE, LayerKind.ATTENTION,
     LayerKind.SSM, LayerKind.GLOBAL_MIX}
)
