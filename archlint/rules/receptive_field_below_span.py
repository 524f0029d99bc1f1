"""AL101: a receptive field shorter than the dependency span the model must cover."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

from archlint.findings import Finding
from archlint.reach.measures import doubling_dilations
from archlint.rules import Rule


class ReceptiveFieldBelowSpan(Rule):
    """Receptive field is shorter than the required dependency span.

    ## What it does
    With ``--span d`` (the distance in positions the task's dependencies cover), compares
    the model's receptive field R, the input positions one output position can read, with
    d. Convolution and pooling stacks have a bounded R = 1 + sum (k-1) * dilation * jump
    however long the input is. The fix is computed for this model: how many more layers
    at its kernel size, or a dilation schedule that reaches d, or attention.

    ## Why is this bad?
    An output cannot depend on an input outside its receptive field: no amount of
    training teaches an 8-layer, kernel-3 CNN (R = 17) a dependency 512 positions long
    (selection guide: "almost blind for n = 512 tasks").

    ## Example
    ```python
    self.convs = nn.ModuleList([nn.Conv1d(16, 16, 3, padding=1) for _ in range(8)])
    ```
    checked with ``--span 512``: ``receptive field 17 < span 512``.

    ## Fix
    Grow R to the span: more layers (k=3 needs 256 layers for d = 512), dilations
    doubling per layer (1, 2, 4, ..., 256: 9 layers), downsampling, or a self-attention
    layer (R = n).
    """

    code = "AL101"
    name = "receptive-field-below-span"
    severity = "warning"
    flagged = [("fixtures/cnn_stack_k3.py", {"span": 512}),
               ("fixtures/dilated_cnn.py", {"span": 512})]
    clean = [("fixtures/cnn_stack_k3.py", {"span": 17}),
             ("fixtures/gpt_sdpa.py", {"span": 512})]

    def check(self, report) -> Iterable[Finding]:
        reach, span = report.reach, self.settings.span
        if reach is None or not span or span > self.settings.target_len:
            return
        if any(row.kind == "attention" and row.detail.get("band") for row in reach.layers
               if _windowed(row)):
            return                      # windowed attention: AL103 says it better
        for axis in reach.axes:
            rf = reach.fields[axis]
            size = rf.size.at(self.settings.target_len)
            if rf.shape != "bounded" or size >= span:
                continue
            size = int(size)
            convs = [row for row in reach.layers if row.kind in ("conv", "pool")]
            where = convs[-1] if convs else (reach.layers[-1] if reach.layers else None)
            axis_text = "" if len(reach.axes) == 1 else f" along {axis}"
            yield self.finding(
                f"receptive field {size} < span {span}{axis_text}",
                fix=self.fix(size, span, convs),
                layer=where.layer if where else None,
                location=where.location if where else None)
            return


    def fix(self, size: int, span: int, convs) -> str:
        kernel, jump = _typical_kernel(convs)
        if kernel is None:
            return ("add layers that mix positions until R reaches the span, or a "
                    "self-attention layer (R = n)")
        step = (kernel - 1) * jump
        more = math.ceil((span - size) / step)
        total = math.ceil((span - 1) / (kernel - 1))
        dilations = doubling_dilations(span, kernel)
        reach = 1 + (kernel - 1) * sum(dilations)
        schedule = ", ".join(str(d) for d in dilations[:3]) + ", ..., " + str(dilations[-1]) \
            if len(dilations) > 4 else ", ".join(str(d) for d in dilations)
        return (f"add {more} more layers of kernel {kernel} (R grows by {step} per layer; "
                f"a plain kernel-{kernel} stack needs {total} layers for span {span}), or "
                f"use dilations {schedule} ({len(dilations)} layers of kernel {kernel}: "
                f"R = {reach}), or add a self-attention layer (R = n)")


def _windowed(row) -> bool:
    band = row.detail.get("band")
    return bool(band) and (band[0] != -math.inf or band[1] != math.inf) \
        and not (band[0] == -math.inf and band[1] == 0)


def _typical_kernel(convs) -> tuple[int | None, int]:
    """The most common kernel among the conv layers, and the last layer's jump."""
    kernels = Counter()
    for row in convs:
        params = row.layer.params if row.layer is not None else {}
        size = params.get("kernel_size")
        if isinstance(size, (tuple, list)) and size:
            kernels[int(size[0])] += 1
        elif row.reach_left + row.reach_right > 0:
            kernels[int(row.reach_left + row.reach_right) + 1] += 1
    kernels = Counter({k: c for k, c in kernels.items() if k > 1})
    if not kernels:
        return None, 1
    jump = int(convs[-1].jump or 1)
    return kernels.most_common(1)[0][0], jump
