"""AL106: a positional table with fewer rows than the target sequence length."""

from __future__ import annotations

from collections.abc import Iterable

from archlint.findings import Finding
from archlint.limits import short_tables, step_failures
from archlint.rules import Rule


class PositionalTableTooShort(Rule):
    """Positional table has fewer positions than the target sequence length.

    ## What it does
    Finds learned positional embeddings (``nn.Embedding(max_len, d)`` indexed by
    ``arange(n)``), fixed positional buffers (sinusoidal tables sliced to ``n``, sin/cos
    caches indexed by position ids, axial tables, ALiBi biases built for a maximum
    length) that hold fewer positions than ``--seq-len``. A table whose lookups are
    shifted holds ``rows - offset`` positions: OPT's ``nn.Embedding(2048 + 2, d)`` with
    its offset of 2 holds 2048, RoBERTa's 514 rows numbered from ``padding_idx + 1``
    hold 512. When the cost analysis saw the step fail at that length, the message
    quotes the failure.

    ## Why is this bad?
    At ``n > max_len`` the lookup indexes past the table: the forward pass raises an
    index error on CPU or a device-side assert on GPU, usually after the job has been
    scheduled and the data loaded. Even if indices are clipped, positions past
    ``max_len`` were never trained.

    ## Example
    ```python
    self.pos = nn.Embedding(512, d_model)        # 512 rows
    x = self.embed(x) + self.pos(torch.arange(x.size(1)))
    ```
    checked with ``--seq-len 4096``.

    ## Fix
    Grow the table to the target length (``nn.Embedding(4096, d_model)``), or switch to
    a length-free scheme: rotary (RoPE) or ALiBi, or a sinusoidal table computed for
    ``n`` on the fly.
    """

    code = "AL106"
    name = "positional-table-too-short"
    severity = "error"
    flagged = [("fixtures/transformer_model.py", {"seq_len": "4096"}),
               ("fixtures/performer_style.py", {"seq_len": "4096"}),
               ("fixtures/axial_positions.py", {"seq_len": "4096"})]
    clean = [("fixtures/transformer_model.py", {"seq_len": "512"}),
             ("fixtures/performer_style.py", {"seq_len": "2048"}),
             ("fixtures/axial_positions.py", {"seq_len": "2048"})]

    def check(self, report) -> Iterable[Finding]:
        n = self.settings.target_len
        failure = next((f for f in step_failures(report) if f.seq_len == n), None)
        for layer in short_tables(report.graph, n):
            limit = layer.params["max_len"]
            rows, offset = layer.params.get("rows", limit), layer.params.get("offset", 0)
            size = (f"holds {limit} positions ({rows} rows read from row {offset})"
                    if offset else f"has {rows} rows")
            message = (f"positional table {layer.name} {size} < seq_len {n}: "
                       f"positions {limit}..{n - 1} index past the table")
            if failure is not None:
                message += f"; the step fails at n={n}: {failure}"
            grow = (f"{n + offset} rows ({n} positions after the offset of {offset})"
                    if offset else f"{n} rows (e.g. nn.Embedding({n}, ...))")
            yield self.finding(
                message,
                fix=(f"grow the table to {grow} or use a length-free positional scheme "
                     "(rotary/ALiBi computed for n, sinusoidal computed for n)"),
                layer=layer)
