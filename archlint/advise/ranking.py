"""Order of the suggestions: what meets every goal first, then what misses fewest.

Within one level, changes that keep the model computing the same function come first
(a fused kernel, bf16 autocast, checkpointing, a parallel layout, a smaller batch with
gradient accumulation), then changes of the architecture (windowed or linear attention,
a TCN, downsampling), then changes of the task (a shorter sequence); then fewer
devices, fewer FLOPs (the cost every step pays), the lower peak. A change that could
not be evaluated comes last. Ties are broken by the change's key: the order is
deterministic.
"""

from __future__ import annotations

from archlint.advise.suggestion import Suggestion

#: 0 same function, 1 another architecture, 2 another task
TIERS = {"fused-attention": 0, "bf16": 0, "checkpoint": 0, "checkpoint+bf16": 0,
         "parallel": 0, "smaller-batch": 0,
         "window": 1, "linear-attention": 1, "tcn": 1, "downsample": 1,
         "shorter-n": 2}
TIER_LABELS = ("same model", "architecture", "task")


def tier(suggestion: Suggestion) -> int:
    return TIERS.get(suggestion.key, 1)


def rank(suggestions: list[Suggestion]) -> list[Suggestion]:
    return sorted(suggestions, key=_key)


def _key(suggestion: Suggestion) -> tuple:
    standing = suggestion.standing
    if standing is None:
        return (1, 0, 0, 0, 0, 0, suggestion.key)
    devices = suggestion.details.get("devices", 1)
    return (0, standing.unmet, tier(suggestion), devices, standing.flops, standing.peak,
            suggestion.key)
