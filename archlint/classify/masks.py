"""Reading the band structure of an attention mask.

A mask is reduced to (left, right): the farthest key a query may see behind and ahead
of itself. Global attention at length n is (n-1, n-1); causal is (n-1, 0); a causal
sliding window of w positions is (w-1, 0). ``window`` is the number of keys a query
sees, left + right + 1.
"""

from __future__ import annotations

import math
from typing import Any

import torch


def keep_matrix(mask: Any, blocked_when_true: bool = False) -> torch.Tensor | None:
    """The (n, n) boolean matrix of allowed query->key pairs, or None if not 2-D after
    removing broadcast dims, or if it differs across batch/heads (data-dependent)."""
    if not isinstance(mask, torch.Tensor) or mask.dim() < 2:
        return None
    if mask.dtype == torch.bool:
        keep = ~mask if blocked_when_true else mask
    else:
        keep = torch.isfinite(mask) & (mask > torch.finfo(mask.dtype).min / 2)
    keep = keep.reshape(-1, keep.shape[-2], keep.shape[-1])
    if keep.shape[-1] != keep.shape[-2]:
        return None
    if not bool((keep == keep[0]).all()):
        return None
    return keep[0]


def band_offsets(keep: torch.Tensor) -> tuple[float, float, bool] | None:
    """(lowest, highest) allowed key offset ``j - i`` of an (n, n) keep matrix, and
    whether some row has holes (then the band is its envelope). A side that reaches the
    first (last) key on every row is unbounded (``-inf`` / ``inf``): at another length
    it would reach it too."""
    rows, cols = keep.shape
    if rows != cols or rows < 2:
        return None
    inner_lo, inner_hi, gaps, any_row = [], [], False, False
    for i in range(rows):
        allowed = torch.nonzero(keep[i]).flatten()
        if allowed.numel() == 0:
            continue
        any_row = True
        first, last = int(allowed[0]), int(allowed[-1])
        gaps |= allowed.numel() != last - first + 1
        if first > 0:
            inner_lo.append(first - i)
        if last < cols - 1:
            inner_hi.append(last - i)
    if not any_row:
        return None
    lo = float(min(inner_lo)) if inner_lo else -math.inf
    hi = float(max(inner_hi)) if inner_hi else math.inf
    return lo, hi, gaps


def mask_params(keep: torch.Tensor | None) -> dict[str, Any]:
    """Attention params implied by a mask: causal, window and band when bounded."""
    if keep is None:
        return {"mask": "data-dependent"}
    offsets = band_offsets(keep)
    if offsets is None:
        return {"mask": "constant"}
    lo, hi, _ = offsets
    causal = hi <= 0
    params: dict[str, Any] = {"causal": causal, "mask": "constant"}
    right = 0 if causal else hi
    if math.isfinite(lo) and math.isfinite(right):
        left = int(-lo)
        params["window"] = left + int(right) + 1
        params["band"] = (left, int(right))
    return params
