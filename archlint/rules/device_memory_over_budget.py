"""AL207: under the parallel layout, one device's peak memory exceeds the budget."""

from __future__ import annotations

from collections.abc import Iterable

from archlint.cost.locate import layer_for
from archlint.findings import Finding
from archlint.parallel.report import LABELS, ParallelReport
from archlint.rules import Rule
from archlint.units import format_bytes


class DeviceMemoryOverBudget(Rule):
    """One device's peak memory under the parallel layout exceeds the memory budget.

    ## What it does
    With ``--parallel`` (and ``--zero``, ``--checkpoint``, ``--offload``), simulates one
    training step of rank 0 with PyTorch's own FSDP2 / DTensor stack on a fake process
    group and compares its peak (shards of parameters, gradients and optimizer state,
    the parameters all-gathered for the running block, activations, communication
    buffers) with ``--memory``, which is per device. The message names the largest
    category at the peak; the fix names the smallest layout found, by simulation, to
    fit, and the largest n that fits under the layout asked for.

    ## Why is this bad?
    A job that runs out of memory on one rank dies on all of them, after the cluster
    is allocated. ZeRO's 16 bytes per parameter says nothing about the activations or
    the all-gathered block, which usually decide whether a long sequence fits.

    ## Example
    ```text
    archlint check gpt.py --seq-len 64k --memory 80GB --parallel fsdp=8
    ```
    reports
    ```text
    per-device OOM under fsdp=8 at n=65536: needs 91.3 GB on 80.0 GB (activations
    84.1 GB); fits up to n=57344
    ```

    ## Fix
    Take the smallest layout the finding computed (more fsdp ranks shrink the state;
    cp or tp split the activations), checkpoint the blocks (``--checkpoint full``), or
    train at the length the finding says fits.
    """

    code = "AL207"
    name = "device-memory-over-budget"
    severity = "error"
    case_settings = {"dynamic": False}          # a training step
    flagged = [("fixtures/gpt_sdpa.py", {"seq_len": "512", "memory": "4MB",
                                         "parallel": "fsdp=2"})]
    clean = [("fixtures/gpt_sdpa.py", {"seq_len": "512", "memory": "1GB",
                                       "parallel": "fsdp=2"})]

    def check(self, report) -> Iterable[Finding]:
        parallel = report.parallel
        if not isinstance(parallel, ParallelReport) or parallel.budget is None:
            return
        step = parallel.target
        if step is None or step.peak <= parallel.budget:
            return
        category = max(step.parts, key=lambda c: step.parts[c])
        fits = parallel.fits_up_to.value if parallel.fits_up_to is not None else None
        tail = f"; fits up to n={fits}" if fits else "; does not fit at any n"
        fixes = []
        found = parallel.smallest_layout.value if parallel.smallest_layout else None
        if found is not None:
            fixes.append(f"use --parallel {found.text()} ({found.devices} devices), the "
                         "smallest layout found to fit")
        else:
            fixes.append("no fsdp/cp/tp layout within the search fits: checkpoint the "
                         "blocks (--checkpoint full) or shorten n")
        if fits:
            fixes.append(f"or keep n <= {fits}")
        block = parallel.plan.blocks[0] if parallel.plan.blocks else None
        yield self.finding(
            f"per-device OOM under {parallel.layout.text()} at n={step.seq_len}: needs "
            f"{format_bytes(step.peak)} on {format_bytes(parallel.budget)} "
            f"({LABELS[category]} {format_bytes(step.parts[category])}){tail}",
            fix=", ".join(fixes),
            layer=layer_for(report.graph, block))
