"""Small models for the cost tests, each with a shape a closed form can be worked on."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archlint.graph import InputSpec, Layer, ModelGraph
from archlint.kinds import LayerKind


def sequence_spec(width: int, dtype: torch.dtype = torch.float32) -> InputSpec:
    return InputSpec("sequence", f"(B, n, {width})",
                     lambda n, b: (torch.randn(b, n, width, dtype=dtype),), (1,))


def channels_spec(channels: int) -> InputSpec:
    return InputSpec("channels", f"(B, {channels}, n)",
                     lambda n, b: (torch.randn(b, channels, n),), (2,))


def token_spec(vocab: int) -> InputSpec:
    return InputSpec("tokens", f"token ids < {vocab}",
                     lambda n, b: (torch.randint(0, vocab, (b, n)),), (1,))


def graph_of(module: nn.Module, spec: InputSpec, layers: list[Layer] | None = None) -> ModelGraph:
    """A graph with only what the cost model reads: the module, its input, its layers."""
    return ModelGraph(module=module, input_spec=spec, trace_len=16, graph_module=None,
                      frontend="none", layers=list(layers or []))


class KorthikantiBlock(nn.Module):
    """The transformer layer of Korthikanti et al. 2022 (Megatron), op for op.

    Pre-LN, hand-written attention with dropout on the probabilities, GeLU MLP of 4h,
    dropout after each residual branch: activation memory s·b·h·(34 + 5·a·s/h) bytes
    in 16-bit with 1-byte dropout masks.
    """

    def __init__(self, hidden: int, heads: int, p: float = 0.1):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.ln2 = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, 4 * hidden)
        self.fc2 = nn.Linear(4 * hidden, hidden)
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, h = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, s, 3, self.heads, h // self.heads) \
            .permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-2, -1)) * (h // self.heads) ** -0.5
        probs = F.dropout(torch.softmax(scores, dim=-1), self.p, self.training)
        attended = (probs @ v).transpose(1, 2).reshape(b, s, h)
        x = x + F.dropout(self.proj(attended), self.p, self.training)
        return x + F.dropout(self.fc2(F.gelu(self.fc1(self.ln2(x)))), self.p, self.training)


class SdpaBlock(nn.Module):
    """One GPT block with fused causal SDPA."""

    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.fc1 = nn.Linear(hidden, 4 * hidden)
        self.fc2 = nn.Linear(4 * hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, h = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, s, h))
        return x + self.fc2(F.gelu(self.fc1(x)))


def attention_layer(name: str, heads: int, head_dim: int, **params) -> Layer:
    return Layer(name=name, kind=LayerKind.ATTENTION, type_name="test",
                 params={"heads": heads, "head_dim": head_dim, **params})


MARKER_BYTES = 777_777


def real_decode_peak(module, prefill, step) -> int:
    """What a real CPU decode step holds at its peak, from torch.profiler's memory events.

    The profiler records no free of a block allocated before it started, so the prefill
    (``prefill() -> cache``) runs inside the profile too; a marker allocation of
    :data:`MARKER_BYTES` separates it from the step (``step(cache)``). The peak is the
    running total of the events after the marker (the cache included) on top of the
    weights, which were allocated before and are never freed."""
    from torch.profiler import ProfilerActivity, profile

    weights = sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                   for t in list(module.parameters()) + list(module.buffers())}.values())
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU],
                                  profile_memory=True) as prof:
        cache = prefill()
        marker = torch.empty(MARKER_BYTES, dtype=torch.uint8)
        del marker
        out = step(cache)
        del out, cache
    events = sorted((e for e in prof.profiler.kineto_results.events()
                     if e.name() == "[memory]"
                     and e.device_type() == torch.autograd.DeviceType.CPU),
                    key=lambda e: e.start_ns())
    running, after, peak = 0, False, 0
    for event in events:
        running += event.nbytes()
        if event.nbytes() == -MARKER_BYTES:
            after = True
        elif after:
            peak = max(peak, running)
    assert after, "the marker's free was not recorded"
    return weights + peak
