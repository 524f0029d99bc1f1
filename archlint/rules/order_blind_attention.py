"""AL105: attention that receives no positional information."""

from __future__ import annotations

from collections.abc import Iterable

from archlint.findings import Finding
from archlint.rules import Rule


class OrderBlindAttention(Rule):
    """Attention without positional information: it sees the sequence as a set.

    ## What it does
    Finds global (unmasked) attention layers whose queries and keys carry no positional
    signal: no positional table, sinusoidal or rotary encoding, relative bias, causal
    mask, convolution or recurrence before them. The gradient probe confirms it by
    permuting the input positions: an order-blind attention's output is permuted the same
    way and otherwise unchanged.

    ## Why is this bad?
    Attention is permutation-equivariant; without positions "the cat sat on the mat" and
    "mat the on sat cat the" are the same input to it (selection guide: "Missing positional
    encoding makes Transformer unable to represent order").

    ## Example
    ```python
    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(32, 4), num_layers=2)
    y = encoder(self.embed(tokens))          # no positional encoding
    ```

    ## Fix
    Add positions before the first attention: a learned ``nn.Embedding(max_len, d)``
    indexed by ``arange(n)``, a sinusoidal table, or rotary/ALiBi inside the attention.
    """

    code = "AL105"
    name = "order-blind-attention"
    severity = "warning"
    flagged = [("fixtures/seed000_transformer.py", {"dynamic": True}),   # probe confirms
               ("fixtures/order_blind_transformer.py", {})]
    clean = [("fixtures/transformer_model.py", {}), ("fixtures/gpt_sdpa.py", {})]

    def check(self, report) -> Iterable[Finding]:
        reach = report.reach
        if reach is None:
            return
        measured = reach.probe.attention_order_blind if reach.probe is not None else {}
        blind = [row for row in reach.order_blind_attention if measured.get(row.name, True)]
        blind += [row for row in reach.layers if measured.get(row.name) is True
                  and row not in blind]
        if not blind:
            return
        first = blind[0]
        others = f" (and {len(blind) - 1} more attention layers)" if len(blind) > 1 else ""
        confirmed = " (confirmed: permuting the input positions only permutes its output)" \
            if measured.get(first.name) else ""
        yield self.finding(
            f"attention {first.name} gets no positional information{others}: "
            f"it treats the sequence as a set{confirmed}",
            fix=("add a positional encoding before the first attention: a learned "
                 "nn.Embedding(max_len, d) over arange(n), a sinusoidal table, or rotary/ALiBi"),
            layer=first.layer, location=first.location)
