"""Transfer functions of contractions: matmul, einsum, linear, attention and its masks.

Every product is read as an einsum over dim letters. Per frame:

- the same letter in every operand, kept in the output: elementwise (a Linear);
- that letter summed away: every position reaches the result (``k^T v`` of linear
  attention, a Linear over the sequence axis);
- two different letters kept: attention scores with a query and a *key* axis;
- scores contracted with values over the key letter: attention, reaching as far as the
  mask's band allows (``is_causal``, ``tril``, a sliding window).

Masks narrow the band of the key axis (:mod:`archlint.reach.masks`).
"""

from __future__ import annotations

import string
from dataclasses import replace

from torch.fx import Node

from archlint.reach.descriptor import FrameReach, KeyAxis, TensorReach, longest
from archlint.reach.hops import INF
from archlint.reach.masks import add_to_scores, is_float, restrict
from archlint.reach.transfer import (
    TransferContext,
    arg,
    aten,
    merge,
    register_transfer,
    union,
)


def contract(ctx: TransferContext, operands: list[tuple[Node | TensorReach, str]],
             out: str) -> TensorReach | None:
    """Reach of ``einsum(",".join(letters) + "->" + out, *operands)``; an operand may be
    a graph node or the reach of an intermediate the op computes internally."""
    reaches = [(item if isinstance(item, TensorReach) else ctx.reach(item), letters)
               for item, letters in operands]
    present = [(r, letters) for r, letters in reaches if r is not None]
    if not present:
        return None
    names = {name for r, _ in present for name in r.frames}
    frames: dict[str, FrameReach] = {}
    positional = any(r.positional for r, _ in present) or _positional_constant(ctx, operands,
                                                                               reaches)
    for name in names:
        entries = [(r.frames[name], letters) for r, letters in present if name in r.frames]
        frames[name] = _contract_frame(ctx, name, entries, out, positional)
    return TensorReach(frames, positional, longest([r.serial for r, _ in present],
                                                   ctx.trace_len),
                       picked=_common_pick(present))


def _common_pick(present) -> int | None:
    picks = {r.picked for r, _ in present}
    return picks.pop() if len(picks) == 1 else None


def _contract_frame(ctx, name, entries, out, positional) -> FrameReach:
    with_axis = [(f, letters[f.dim], letters[f.key.dim] if f.key else None)
                 for f, letters in entries if f.dim is not None]
    spans = [f.span for f, _ in entries if f.span is not None]
    if not with_axis:
        frame = entries[0][0]
        for other, _ in entries[1:]:
            frame = merge(frame, other)
        return frame
    pairs = [(f, q, k) for f, q, k in with_axis if k is not None]
    plain = [(f, q) for f, q, k in with_axis if k is None]
    letters = {q for _, q, _ in with_axis}
    if pairs and len(pairs) == 1 and plain and all(q == pairs[0][2] for _, q in plain) \
            and pairs[0][1] in out and pairs[0][2] not in out:
        return _attend(ctx, name, pairs[0][0], [f for f, _ in plain], out.index(pairs[0][1]),
                       positional, spans)
    if not pairs and len(letters) == 1:
        letter = letters.pop()
        frame = _merge_all([f for f, _ in plain])
        if letter in out:
            frame = replace(frame, dim=out.index(letter))
            return _with_spans(frame, spans)
        ctx.mix("global", name, INF, INF, order_blind=not positional, reduction="contraction")
        collapsed = frame.collapse(None, ctx.trace_len)
        return _with_spans(replace(frame, dim=None, window=None, key=None, span=collapsed,
                                   left=frame.left.step(INF), right=frame.right.step(INF)), spans)
    if not pairs and len(letters) == 2 and len(plain) == 2 and all(q in out for _, q in plain):
        (fq, lq), (fk, lk) = plain
        key = KeyAxis(out.index(lk), fk.window[0], fk.window[1], fk.length)
        frame = replace(fq, dim=out.index(lq), key=key, left=fq.left.union(fk.left),
                        right=fq.right.union(fk.right))
        return _with_spans(frame, spans)
    ctx.note("an unusual contraction over the sequence axis: treated as global")
    frame = _merge_all([f for f, _, _ in with_axis])
    kept = [q for _, q, _ in with_axis if q in out]
    ctx.mix("global", name, INF, INF)
    if kept:
        return replace(frame, dim=out.index(kept[0]), key=None, window=(-INF, INF),
                       left=frame.left.step(INF), right=frame.right.step(INF))
    return replace(frame, dim=None, window=None, key=None,
                   span=frame.collapse(None, ctx.trace_len),
                   left=frame.left.step(INF), right=frame.right.step(INF))


def _attend(ctx, name, pair: FrameReach, values: list[FrameReach], dim: int, positional,
            spans) -> FrameReach:
    """Scores (query x key, masked to a band) contracted with values over the keys."""
    key = pair.key
    value = _merge_all(values)
    jump = pair.jump
    k_lo, k_hi = min(key.lo, value.window[0]), max(key.hi, value.window[1])
    lo = min(pair.window[0], float(jump * key.band_lo + k_lo) if key.band_lo > -INF else -INF)
    hi = max(pair.window[1], float(jump * key.band_hi + k_hi) if key.band_hi < INF else INF)
    reach_left = INF if key.band_lo == -INF else float(jump * max(0, -key.band_lo))
    reach_right = INF if key.band_hi == INF else float(jump * max(0, key.band_hi))
    full = key.band_lo == -INF and key.band_hi == INF
    ctx.mix("attention", name, reach_left, reach_right, band=(key.band_lo, key.band_hi),
            order_blind=full and not positional)
    base_left, base_right = pair.left.union(value.left), pair.right.union(value.right)
    span = pair.span.union(value.span) if pair.span and value.span else pair.span or value.span
    frame = replace(pair, dim=dim, window=(lo, hi), key=None, span=span,
                    left=base_left.step(reach_left), right=base_right.step(reach_right))
    return _with_spans(frame, spans)


def _merge_all(frames: list[FrameReach]) -> FrameReach:
    frame = frames[0]
    for other in frames[1:]:
        frame = merge(frame, replace(other, dim=frame.dim))
    return frame


def _with_spans(frame: FrameReach, spans) -> FrameReach:
    for span in spans:
        frame = replace(frame, span=span.union(frame.span) if frame.span else span)
    return frame


def _positional_constant(ctx, operands, reaches) -> bool:
    """A constant operand indexed by a frame's letter (a relative-position table)."""
    frame_letters = set()
    for r, letters in reaches:
        for f in (r.frames.values() if r else ()):
            if f.dim is not None and f.length > 1:
                frame_letters.add(letters[f.dim])
    for (node, letters), (r, _) in zip(operands, reaches):
        if not isinstance(node, Node):
            continue
        shape = ctx.shape(node)
        if r is None and shape is not None and node.op != "get_attr":
            if any(letters[i] in frame_letters and shape[i] > 1 for i in range(len(shape))):
                return True
    return False


def _letters(count: int, start: int = 0) -> str:
    return string.ascii_letters[start:start + count]


def matmul_letters(a_rank: int, b_rank: int) -> tuple[str, str, str]:
    """Einsum letters of ``torch.matmul`` for operand ranks (with batch broadcasting)."""
    if a_rank == 1 and b_rank == 1:
        return "k", "k", ""
    batch = max(a_rank, b_rank) - 2
    batch_letters = _letters(batch, 26)
    if a_rank == 1:
        return "k", batch_letters[len(batch_letters) - (b_rank - 2):] + "kn", batch_letters + "n"
    if b_rank == 1:
        return batch_letters[len(batch_letters) - (a_rank - 2):] + "mk", "k", batch_letters + "m"
    a = batch_letters[len(batch_letters) - (a_rank - 2):] + "mk"
    b = batch_letters[len(batch_letters) - (b_rank - 2):] + "kn"
    return a, b, batch_letters + "mn"


@register_transfer(aten.matmul, aten.mm, aten.bmm, aten.dot, aten.mv, aten.vdot)
def matmul(node: Node, ctx: TransferContext):
    a, b = node.args[0], node.args[1]
    la, lb, out = matmul_letters(len(ctx.shape(a)), len(ctx.shape(b)))
    return contract(ctx, [(a, la), (b, lb)], out)


@register_transfer(aten.baddbmm, aten.addmm, aten.addmv, aten.addbmm)
def add_matmul(node: Node, ctx: TransferContext):
    """``c + a @ b``: MultiheadAttention adds its float mask to the scores this way."""
    c, a, b = node.args[0], node.args[1], node.args[2]
    la, lb, out = matmul_letters(len(ctx.shape(a)), len(ctx.shape(b)))
    product = contract(ctx, [(a, la), (b, lb)], out)
    return add_to_scores(ctx, product, c, additive=True)


@register_transfer(aten.outer, aten.ger)
def outer(node: Node, ctx: TransferContext):
    return contract(ctx, [(node.args[0], "a"), (node.args[1], "b")], "ab")


@register_transfer(aten.linear)
def linear(node: Node, ctx: TransferContext):
    x, weight = node.args[0], node.args[1]
    rank = len(ctx.shape(x))
    batch = _letters(rank - 1, 26)
    operands = [(x, batch + "k"), (weight, "nk")]
    product = contract(ctx, operands, batch + "n")
    bias = arg(node, 2, "bias")
    if bias is not None and ctx.reach(bias) is not None:
        return union(ctx, [node.args[0], bias], ctx.out_shape())
    return product


@register_transfer(aten.einsum)
def einsum(node: Node, ctx: TransferContext):
    equation = node.args[0].replace(" ", "")
    tensors = list(node.args[1])
    inputs, _, out = equation.partition("->")
    specs = inputs.split(",")
    if not out and "->" not in equation:
        counts = {c: inputs.count(c) for c in inputs if c.isalpha()}
        out = "".join(sorted(c for c, n in counts.items() if n == 1))
    free = [c for c in string.ascii_letters if c not in equation]
    ellipsis = ""
    expanded = []
    for spec, tensor in zip(specs, tensors):
        if "..." in spec:
            rank = len(ctx.shape(tensor))
            missing = rank - (len(spec) - 3)
            ellipsis = ellipsis if len(ellipsis) >= missing else "".join(free[:missing])
            spec = spec.replace("...", ellipsis[len(ellipsis) - missing:])
        expanded.append(spec)
    out = out.replace("...", ellipsis)
    return contract(ctx, list(zip(tensors, expanded)), out)


# ------------------------------------------------------------------------ attention


@register_transfer(aten.scaled_dot_product_attention,
                   aten._scaled_dot_product_flash_attention_for_cpu)
def sdpa(node: Node, ctx: TransferContext):
    q, k, v = node.args[0], node.args[1], node.args[2]
    if node.target.overloadpacket is aten.scaled_dot_product_attention:
        mask, causal = arg(node, 3, "attn_mask"), arg(node, 5, "is_causal", False)
    else:
        mask, causal = node.kwargs.get("attn_mask"), arg(node, 4, "is_causal", False)
    rank = len(ctx.shape(q))
    batch = _letters(rank - 2, 26)
    scores = contract(ctx, [(q, batch + "ie"), (k, batch + "je")], batch + "ij")
    if scores is None:
        return None
    if causal:
        scores = restrict(scores, -INF, 0.0, ctx, "is_causal")
    if isinstance(mask, Node):
        scores = add_to_scores(ctx, scores, mask, additive=is_float(ctx, mask),
                                keep_when_true=True)
    out = contract_scores(ctx, scores, v, batch)
    if node.target.overloadpacket is aten.scaled_dot_product_attention:
        return out
    return (out, out)


def contract_scores(ctx, scores: TensorReach, values: Node, batch: str) -> TensorReach | None:
    """``scores @ values`` with the scores' reach already computed."""
    return contract(ctx, [(scores, batch + "ij"), (values, batch + "je")], batch + "ie")
