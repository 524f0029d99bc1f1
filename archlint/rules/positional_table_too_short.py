"""AL106: a positional table with fewer rows than the target sequence length."""

from __future__ import annotations

from collections.abc import Iterable

from archlint.findings import Finding
from archlint.kinds import LayerKind
from archlint.rules import Rule


class PositionalTableTooShort(Rule):
    """Positional table has fewer positions than the target sequence length.

    ## What it does
    Finds learned positional embeddings (``nn.Embedding(max_len, d)`` indexed by
    ``arange(n)``) and fixed positional buffers (sinusoidal tables sliced to ``n``) whose
    number of rows is smaller than ``--seq-len``.

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
    flagged = [("fixtures/transformer_model.py", {"seq_len": "4096"})]
    clean = [("fixtures/transformer_model.py", {"seq_len": "512"})]

    def check(self, report) -> Iterable[Finding]:
        n = self.settings.target_len
        for layer in report.graph.layers_of(LayerKind.POSITIONAL):
            rows = layer.params.get("max_len")
            if rows is None or rows >= n:
                continue
            yield self.finding(
                f"positional table {layer.name} has {rows} rows < seq_len {n}: "
                f"positions {rows}..{n - 1} index past the table",
                fix=(f"grow the table to {n} rows (e.g. nn.Embedding({n}, ...)) or use a "
                     "length-free positional scheme (rotary/ALiBi, sinusoidal computed for n)"),
                layer=layer)
