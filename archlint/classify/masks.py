"""Reading the band structure of an attention mask.

A mask is reduced to (left, right): the farthest key a query may see behind and ahead
of itself. Global attention at length n is (n-1, n-1); causal is (n-1, 0); a causal
sliding window of w positions is (w-1, 0). ``window`` is the number of keys a query
sees, left + right + 1.
"""

from __future__ import annotations

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


def band(keep: torch.Tensor) -> tuple[int, int]:
    """(left, right) reach of the widest allowed band."""
    n = keep.shape[-1]
    offsets = torch.arange(n).view(1, n) - torch.arange(n).view(n, 1)   # j - i
    allowed = offsets[keep]
    if allowed.numel() == 0:
        return 0, 0
    return int(-allowed.min().clamp(max=0)), int(allowed.max().clamp(min=0))


def mask_params(keep: torch.Tensor | None) -> dict[str, Any]:
    """Attention params implied by a mask: causal, window (None = unbounded)."""
    if keep is None:
        return {"mask": "data-dependent"}
    n = keep.shape[-1]
    left, right = band(keep)
    params: dict[str, Any] = {"causal": right == 0, "mask": "constant"}
    if left < n - 1 or (right < n - 1 and right != 0):
        params["window"] = left + right + 1
        params["band"] = (left, right)
    return params
