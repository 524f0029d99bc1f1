"""The changes ``archlint advise`` weighs, each evaluated with archlint's own analyses.

One function per change; each returns its suggestions (none when the change does not
apply, or the model already has it: then it records that in ``ctx.already``). The cost
of a change comes from a re-run of the cost model wherever the change can be applied
mechanically (a changed setting, or a changed copy of the module: :mod:`.copies`), and
otherwise from the per-layer split of the existing prediction at the target length:

- attention scores held at the peak by the attention layers (bytes, B·h·n·n per copy)
  scale with the keys each query sees: ×w/n for a window of w keys, ×0 for linear
  attention or a fused kernel;
- the n² part of the FLOPs (``attention_flops``: QKᵀ and A·V, forward and backward)
  scales the same way; linear attention adds its own 4·B·h·n·d_h² per layer forward
  (φ(K)ᵀV and φ(Q)·(KᵀV)), ×3 for a training step (backward = 2× forward).

The reach of a structural change is computed from its definition, as the reach
analysis composes layers: a causal window of w keys moves information w−1 positions per
layer (R = 1 + L·(w−1), L(d) = ⌈d/(w−1)⌉ layers); a causal dilated convolution stack with
kernel k and dilations d_i has R = 1 + (k−1)·Σd_i and takes one serial step per layer.
"""

from __future__ import annotations

import math
from typing import Any

from archlint.advise import copies
from archlint.advise.context import Context, ceil_div
from archlint.advise.suggestion import ESTIMATED, RERUN, Site, Suggestion
from archlint.kinds import LayerKind
from archlint.units import format_bytes

#: kernel of the dilated TCN that replaces a recurrence (dilations double per layer)
TCN_KERNEL = 3
#: the largest downsampling factor tried before giving up
MAX_FACTOR = 64


def _failed(key: str, title: str, change: str, where: tuple[Site, ...], method: str,
            detail: str, error: Exception) -> Suggestion:
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return Suggestion(key, title, change, where, method, detail, None,
                      error=f"{type(error).__name__}: {text}")


# -- fused attention ------------------------------------------------------------------

def fused_attention(ctx: Context) -> list[Suggestion]:
    """Attention that holds n×n scores at the peak: switch it to the fused SDPA kernel."""
    layers = ctx.attention_layers()
    if not layers:
        return []
    holding = [layer for layer in layers
               if layer.params.get("implementation") == "materialized"
               or ctx.held_by("attention_scores", [layer.name.partition(":")[0]]) > 0]
    if not holding:
        ctx.already.append(f"fused attention kernel ({_names(ctx, layers)}: no n×n "
                           "scores held at the peak)")
        return []
    title = "fused attention kernel (SDPA)"
    paths = [layer.name.partition(":")[0] for layer in holding]
    module = copies.copy_of(ctx.graph)
    changed = copies.fused_attention(module, paths)
    where = ctx.sites(holding)
    if changed and len(changed) == len(paths):
        change = ("call nn.MultiheadAttention with need_weights=False and attention "
                  "dropout 0.0 (e.g. nn.TransformerEncoderLayer(..., dropout=0.0)): PyTorch "
                  "then runs F.scaled_dot_product_attention's fused kernel, which keeps "
                  "no n×n scores")
        detail = "cost model on a copy with need_weights=False, dropout=0.0"
        try:
            prediction = ctx.rerun(copies.with_module(ctx.graph, module))
        except Exception as error:  # noqa: BLE001 - the user's model on a changed copy
            return [_failed("fused-attention", title, change, where, RERUN, detail, error)]
        return [Suggestion("fused-attention", title, change, where, RERUN, detail,
                           ctx.standing(prediction),
                           details={"layers": changed,
                                    "scores_before": ctx.held_by("attention_scores", paths),
                                    "scores_after": prediction.memory.parts.get(
                                        "attention_scores", 0)})]
    held = ctx.held_by("attention_scores", paths)
    prediction = ctx.prediction
    change = ("replace softmax(q @ kᵀ) @ v by F.scaled_dot_product_attention(q, k, v, "
              "is_causal=...), which keeps no n×n scores")
    detail = f"peak minus the {format_bytes(held)} of scores these layers hold at the peak"
    standing = ctx.standing(prediction, peak=prediction.peak - held)
    return [Suggestion("fused-attention", title, change, where, ESTIMATED, detail, standing,
                       details={"scores_before": held, "scores_after": 0},
                       notes=("FLOPs unchanged: the fused kernel does the same matmuls",))]


# -- bf16 -------------------------------------------------------------------------------

def bfloat16(ctx: Context) -> list[Suggestion]:
    """Train or run under bfloat16 autocast (the cost model's ``dtype`` setting)."""
    if ctx.settings.dtype != "float32":
        ctx.already.append(f"16-bit compute (--dtype {ctx.settings.dtype})")
        return []
    title = "bfloat16 autocast"
    change = ("run the step under torch.autocast(device_type, dtype=torch.bfloat16) "
              "(weights and optimizer state stay float32)")
    where = _model_site(ctx)
    detail = "cost model with --dtype bfloat16"
    try:
        prediction = ctx.rerun(dtype="bfloat16")
    except Exception as error:  # noqa: BLE001
        return [_failed("bf16", title, change, where, RERUN, detail, error)]
    return [Suggestion("bf16", title, change, where, RERUN, detail, ctx.standing(prediction),
                       details={"activations_before": ctx.prediction.memory.parts.get(
                           "activations", 0),
                           "activations_after": prediction.memory.parts.get("activations", 0)})]


def _model_line(ctx: Context):
    return ctx.location("")


def _model_site(ctx: Context) -> tuple[Site, ...]:
    """The model itself (a change of the training step rather than of a layer)."""
    return (Site(ctx.report.model.class_name, _model_line(ctx)),)


# -- activation checkpointing ---------------------------------------------------------

def checkpointing(ctx: Context) -> list[Suggestion]:
    """Recompute each block in backward (train mode only)."""
    if ctx.settings.mode != "train":
        return []
    if ctx.settings.checkpoint != "none":
        ctx.already.append(f"activation checkpointing (--checkpoint {ctx.settings.checkpoint})")
        return []
    module = copies.copy_of(ctx.graph)
    module, blocks = copies.checkpoint_blocks(module)
    if not blocks:
        return []
    title = "activation checkpointing per block"
    change = (f"wrap each of the {len(blocks)} blocks in torch.utils.checkpoint.checkpoint("
              "block, x, use_reentrant=False): only block inputs are kept for backward")
    where = ctx.module_sites(blocks)
    detail = "cost model on a copy with every block checkpointed"
    try:
        prediction = ctx.rerun(copies.with_module(ctx.graph, module))
    except Exception as error:  # noqa: BLE001
        return [_failed("checkpoint", title, change, where, RERUN, detail, error)]
    return [Suggestion("checkpoint", title, change, where, RERUN, detail,
                       ctx.standing(prediction),
                       details={"blocks": len(blocks),
                                "activations_before": ctx.prediction.memory.parts.get(
                                    "activations", 0),
                                "activations_after": prediction.memory.parts.get(
                                    "activations", 0)},
                       notes=("recomputing the blocks adds their forward FLOPs to backward",))]


def checkpointing_bf16(ctx: Context, found: list[Suggestion]) -> list[Suggestion]:
    """Both memory savers together, when neither fits alone."""
    chosen = {s.key: s for s in found if s.standing is not None}
    if "checkpoint" not in chosen or "bf16" not in chosen:
        return []
    if any(chosen[key].standing.fits is not False for key in ("checkpoint", "bf16")):
        return []
    module, blocks = copies.checkpoint_blocks(copies.copy_of(ctx.graph))
    title = "activation checkpointing + bfloat16 autocast"
    change = chosen["checkpoint"].change + "; and " + chosen["bf16"].change
    where = chosen["checkpoint"].where
    detail = "cost model on a checkpointed copy with --dtype bfloat16"
    try:
        prediction = ctx.rerun(copies.with_module(ctx.graph, module), dtype="bfloat16")
    except Exception as error:  # noqa: BLE001
        return [_failed("checkpoint+bf16", title, change, where, RERUN, detail, error)]
    return [Suggestion("checkpoint+bf16", title, change, where, RERUN, detail,
                       ctx.standing(prediction), details={"blocks": len(blocks)})]


# -- sliding-window attention -----------------------------------------------------------

def sliding_window(ctx: Context) -> list[Suggestion]:
    """Each global attention layer restricted to a window of w keys."""
    layers = ctx.attention_layers()
    if not layers:
        return []
    windowed = [row for row in ctx.report.reach.layers
                if row.kind == "attention" and _banded(row.detail.get("band"))]
    if windowed:
        ctx.already.append(f"windowed attention ({len(windowed)} layers)")
        return []
    n, goals, prediction = ctx.n, ctx.goals, ctx.prediction
    causal = ctx.report.reach.causal is True
    depth = ctx.attention_depth()
    scores = ctx.held_by("attention_scores", [layer.name.partition(":")[0] for layer in layers])
    rest = prediction.peak - scores
    # largest w that fits: rest + scores·w/n <= budget
    if goals.budget is None or scores == 0:
        w_fit = n if goals.budget is None or rest <= goals.budget else 0
    else:
        w_fit = min(n, (goals.budget - rest) * n // scores) if goals.budget >= rest else 0
    w_reach = None
    if goals.span is not None:
        hop = ceil_div(goals.span - 1, depth)
        w_reach = hop + 1 if causal else 2 * hop + 1
    if w_fit < 2 and w_reach is None:
        ctx.ruled_out.append(
            f"sliding-window attention: no window fits {goals.budget_label} (the step "
            f"without attention scores needs {format_bytes(rest)})")
        return []
    if w_fit >= n and w_reach is not None:
        w, why = min(w_reach, n), f"the smallest that reaches span {goals.span} in {depth} layers"
    elif w_fit >= 2:
        w, why = w_fit, "the largest that fits"
    else:
        w = min(w_reach or 2, n)
        why = "no window fits: the rest of the step alone exceeds the budget"
    step = w - 1 if causal else (w - 1) // 2           # positions one layer moves per side
    needed = ceil_div(goals.span - 1, step) if goals.span is not None and step > 0 else None
    field = min(n, 1 + depth * (w - 1) if causal else 1 + 2 * depth * step)
    path = None if goals.span is None else (needed if needed is not None and needed <= depth
                                            else math.inf)
    peak = rest + scores * w // n
    flops = prediction.flops - prediction.attention_flops + prediction.attention_flops * w // n
    standing = ctx.standing(prediction, peak=peak, flops=flops, receptive_field=str(field),
                            receptive_size=field, dependency_path=path)
    side = "the w-1 keys before each query and itself" if causal else \
        "w keys centred on each query"
    change = (f"restrict attention to a window of w={w} keys ({side}; FlashAttention's "
              f"window_size or FlexAttention's sliding-window mask, not a dense n×n mask)")
    notes = [f"w={w}: {why}"]
    if needed is not None:
        notes.append(f"layers needed to reach span {goals.span}: ⌈{goals.span - 1}/{step}⌉ = "
                     f"{needed} {'<=' if needed <= depth else '>'} {depth} attention layers")
    detail = (f"attention scores ×w/n ({format_bytes(scores)} held at the peak) and the "
              "n² FLOPs ×w/n")
    return [Suggestion("window", "sliding-window attention", change, ctx.sites(layers),
                       ESTIMATED, detail, standing,
                       details={"window": w, "largest_fitting_window": w_fit,
                                "layers_needed": needed, "depth": depth, "causal": causal,
                                "scores_before": scores, "scores_after": scores * w // n},
                       notes=tuple(notes))]


# -- linear attention -------------------------------------------------------------------

def linear_attention(ctx: Context) -> list[Suggestion]:
    """Kernelized attention: φ(Q)·(φ(K)ᵀV), no n×n term at all."""
    layers = ctx.attention_layers()
    linear = [layer for layer in ctx.graph.layers_of(LayerKind.ATTENTION)
              if layer.params.get("implementation") == "linear"]
    if linear and not layers:
        ctx.already.append(f"linear attention ({_names(ctx, linear)})")
    if not layers:
        return []
    prediction, batch = ctx.prediction, ctx.settings.batch
    scores = ctx.held_by("attention_scores", [layer.name.partition(":")[0] for layer in layers])
    passes = 3 if ctx.settings.mode == "train" else 1
    added = 0
    for layer in layers:
        heads = int(layer.params.get("heads") or 1)
        head_dim = int(layer.params.get("head_dim") or 0)
        added += passes * 4 * batch * heads * ctx.n * head_dim * head_dim
    flops = prediction.flops - prediction.attention_flops + added
    standing = ctx.standing(prediction, peak=prediction.peak - scores, flops=flops)
    change = ("replace softmax attention by linear attention φ(Q)·(φ(K)ᵀV) (elu+1 features; "
              "causal: chunked prefix sums), so cost is linear in n")
    detail = ("peak minus the attention scores held at the peak; n² FLOPs replaced by "
              "4·B·h·n·d_h² per layer forward (×3 for a training step)")
    return [Suggestion("linear-attention", "linear attention", change, ctx.sites(layers),
                       ESTIMATED, detail, standing,
                       details={"scores_before": scores, "added_flops": added,
                                "removed_flops": prediction.attention_flops},
                       notes=("path and receptive field unchanged (every position still "
                              "reaches every other in one hop); quality differs from "
                              "softmax attention",))]


# -- recurrence -> dilated TCN ------------------------------------------------------------

def tcn_dilations(span: int, kernel: int = TCN_KERNEL) -> tuple[int, ...]:
    """Dilations 1, 2, 4, ... until R = 1 + (k-1)·Σd covers ``span``."""
    dilations: list[int] = []
    while 1 + (kernel - 1) * sum(dilations) < span:
        dilations.append(2 ** len(dilations))
    return tuple(dilations) or (1,)


def dilated_tcn(ctx: Context) -> list[Suggestion]:
    """Each recurrence replaced by a causal dilated convolution stack covering the span."""
    rows = ctx.report.reach.recurrences
    if not rows:
        return []
    span = ctx.goals.span or ctx.n
    dilations = tcn_dilations(span)
    kernel = TCN_KERNEL
    field = 1 + (kernel - 1) * sum(dilations)
    suggestions = []
    module = copies.copy_of(ctx.graph)
    replaced, sites = [], []
    for row in rows:
        path = (row.layer.name if row.layer is not None else row.name).partition(":")[0]
        if ":" in (row.layer.name if row.layer is not None else row.name):
            path = ""
        changed = copies.dilated_tcn(module, path, kernel, dilations)
        if changed is None:
            continue
        module = changed
        replaced.append(path)
        sites.append(Site(row.name, ctx.location(path, row.location)))
    if not replaced:
        return []
    depth = len(dilations)
    recurrent_steps = ctx.report.reach.serial_steps.coef * ctx.n
    serial = int(ctx.position.serial_steps - recurrent_steps + depth * len(replaced))
    path_hops = depth * len(replaced)
    title = "dilated TCN instead of the recurrence"
    change = (f"replace the recurrence by {depth} causal Conv1d layers, kernel {kernel}, "
              f"dilations {', '.join(map(str, dilations))} (left padding (k-1)·d): "
              f"R = 1 + {kernel - 1}·{sum(dilations)} = {field}")
    detail = "cost model on a copy with the recurrence replaced by the TCN"
    where = tuple(sites)
    try:
        prediction = ctx.rerun(copies.with_module(ctx.graph, module))
    except Exception as error:  # noqa: BLE001
        return [_failed("tcn", title, change, where, RERUN, detail, error)]
    shown = min(field, ctx.n)
    standing = ctx.standing(prediction, receptive_field=str(shown), receptive_size=shown,
                            dependency_path=path_hops if span <= field else math.inf,
                            serial_steps=serial)
    suggestions.append(Suggestion(
        "tcn", title, change, where, RERUN, detail, standing,
        details={"kernel": kernel, "dilations": dilations, "receptive_field": field,
                 "layers": depth},
        notes=(f"serial steps: {depth} per replaced recurrence instead of n per layer",)))
    return suggestions


# -- smaller n / batch ------------------------------------------------------------------

def shorter_sequence(ctx: Context) -> list[Suggestion]:
    """The largest n that fits (the cost report's budget search)."""
    curve = ctx.report.cost.curve
    if ctx.goals.budget is None or ctx.position.fits or curve is None or not curve.fits_up_to:
        return []
    shorter = curve.fits_up_to
    title = "shorter sequence"
    change = (f"train at n={shorter} (the largest n that fits {ctx.goals.budget_label}), "
              "chunking longer inputs")
    where = _model_site(ctx)
    detail = f"cost model at n={shorter}"
    try:
        prediction = ctx.rerun(seq_len=shorter)
    except Exception as error:  # noqa: BLE001
        return [_failed("shorter-n", title, change, where, RERUN, detail, error)]
    text, size, serial = ctx.reach_at(shorter)
    standing = ctx.standing(prediction, receptive_field=text, receptive_size=size,
                            serial_steps=serial)
    notes = ()
    if ctx.goals.span is not None and ctx.goals.span > shorter:
        notes = (f"span {ctx.goals.span} is longer than n={shorter}: out of reach",)
    return [Suggestion("shorter-n", title, change, where, RERUN, detail, standing,
                       details={"seq_len": shorter, "exact": curve.fits_exact}, notes=notes)]


def smaller_batch(ctx: Context) -> list[Suggestion]:
    """The largest batch below the current one that fits (a search of re-runs)."""
    batch = ctx.settings.batch
    if ctx.goals.budget is None or ctx.position.fits or batch <= 1:
        return []
    cache: dict[int, Any] = {}

    def run(b: int) -> Any:
        if b not in cache:
            cache[b] = ctx.rerun(batch=b)
        return cache[b]

    title = "smaller batch"
    where = _model_site(ctx)
    try:
        lo, hi = 0, batch                      # lo fits (0: none yet), hi does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if run(mid).peak <= ctx.goals.budget:
                lo = mid
            else:
                hi = mid
    except Exception as error:  # noqa: BLE001
        return [_failed("smaller-batch", title, "lower the batch", where, RERUN,
                        "cost model at smaller batches", error)]
    chosen = lo or 1
    prediction = run(chosen)
    standing = ctx.standing(prediction, batch=chosen)
    change = (f"batch {chosen} instead of {batch} (the largest that fits), with "
              f"{ceil_div(batch, chosen)} steps of gradient accumulation for the same "
              "effective batch" if lo else "no batch fits: even batch 1 is over the budget")
    return [Suggestion("smaller-batch", title, change, where, RERUN,
                       f"cost model at batch {chosen} (searched {sorted(cache)})", standing,
                       details={"batch": chosen, "searched": sorted(cache)})]


# -- downsample then attend -----------------------------------------------------------

def downsample(ctx: Context) -> list[Suggestion]:
    """Pool the sequence by a factor f before the blocks and repeat it after them."""
    if ctx.goals.budget is None or ctx.position.fits or not ctx.attention_layers():
        return []
    from archlint.parallel.plan import blocks_of

    blocks = tuple(path for path in blocks_of(ctx.graph.module) if path)
    if len(blocks) < 1:
        return []
    curve = ctx.report.cost.curve
    factor = 2
    if curve is not None and curve.fits_up_to:
        factor = max(2, 2 ** math.ceil(math.log2(ctx.n / curve.fits_up_to)))
    title = "downsample, then attend"
    where = ctx.module_sites(blocks)
    detail = "cost model on a copy that pools before the first block and repeats after the last"
    tried: dict[int, Any] = {}
    error = None
    while factor <= MAX_FACTOR:
        module = copies.copy_of(ctx.graph)
        copies.downsampled(module, blocks, factor)
        try:
            tried[factor] = ctx.rerun(copies.with_module(ctx.graph, module))
        except Exception as failure:  # noqa: BLE001
            error = failure
            break
        if tried[factor].peak <= ctx.goals.budget or len(tried) >= 3:
            break
        factor *= 2

    def change_for(f: int) -> str:
        return (f"average-pool the sequence by f={f} before {blocks[0]} and repeat each "
                f"position f times after {blocks[-1]} (the blocks run at n/f={ctx.n // f})")

    if not tried:
        return [_failed("downsample", title, change_for(factor), where, RERUN, detail, error)]
    factor = max(tried)
    prediction = tried[factor]
    notes = [f"resolution inside the blocks: one position per {factor} inputs",
             "tried f=" + ", ".join(str(f) for f in sorted(tried))]
    if ctx.report.reach.causal:
        notes.append(f"causal: pool the previous {factor} positions (shift by {factor - 1}) "
                     "so no output reads ahead")
    return [Suggestion("downsample", title, change_for(factor), where, RERUN, detail,
                       ctx.standing(prediction), details={"factor": factor,
                                                          "tried": sorted(tried)},
                       notes=tuple(notes))]


def _banded(band) -> bool:  # noqa: ANN001
    """A band (lo, hi) of key offsets bounded on the left is a window (a causal prefix,
    (-inf, 0), is not), as AL103 reads it."""
    return bool(band) and not math.isinf(band[0])


def _names(ctx: Context, layers: list) -> str:
    sites = ctx.sites(layers)
    return ", ".join(site.name for site in sites[:3]) + (" ..." if len(sites) > 3 else "")


# -- parallel layout ---------------------------------------------------------------------

def parallel_layout(ctx: Context) -> list[Suggestion]:
    """The smallest layout (fsdp, then cp and tp) whose simulated per-device step fits."""
    goals, settings = ctx.goals, ctx.settings
    if goals.budget is None or ctx.position.fits or settings.mode != "train":
        return []
    if settings.parallel is not None:
        ctx.already.append(f"a parallel layout (--parallel {settings.parallel})")
        return []
    from archlint.parallel.layout import Layout
    from archlint.parallel.plan import blocks_of, make_plan
    from archlint.parallel.search import smallest_layout
    from archlint.parallel.simulate import SimulationError, simulate

    graph, n = ctx.graph, ctx.n
    peaks: dict[Layout, int | None] = {}

    def peak_of(layout: Layout) -> int | None:
        if layout not in peaks:
            try:
                peaks[layout] = simulate(graph, layout, make_plan(graph, layout, (n,)), n,
                                         settings.batch, settings.dtype,
                                         settings.optimizer).peak
            except SimulationError:
                peaks[layout] = None
        return peaks[layout]

    def allowed(layout: Layout) -> bool:
        return not make_plan(graph, layout, (n,)).violations

    title = "parallel layout"
    blocks = tuple(path for path in blocks_of(graph.module) if path)
    where = ctx.module_sites(blocks) if blocks else _model_site(ctx)
    detail = ("one device's step simulated with FSDP2 / DTensor on a fake process group "
              "(archlint.parallel); FLOPs: the step's, divided by cp·tp")
    start = Layout()
    known = peak_of(start)
    if known is None:
        return []
    search = smallest_layout(peak_of, goals.budget, start, allowed, known)
    if search.value is None:
        return [Suggestion("parallel", title, "no fsdp/cp/tp layout within the search fits",
                           where, RERUN, detail, None,
                           error="tried " + "; ".join(search.tried))]
    layout = search.value
    peak = peaks[layout]
    flops = ctx.prediction.flops // (layout.cp * layout.tp)
    standing = ctx.standing(ctx.prediction, peak=peak, flops=flops)
    change = (f"--parallel {layout.text()} ({layout.devices} devices): "
              + ("fully_shard each block" if layout.fsdp > 1 else "")
              + (" and " if layout.fsdp > 1 and (layout.cp > 1 or layout.tp > 1) else "")
              + (f"split the sequence over {layout.cp} ranks (context parallel)"
                 if layout.cp > 1 else "")
              + (f"{' and ' if layout.cp > 1 else ''}split attention and MLP over "
                 f"{layout.tp} ranks (tensor parallel)" if layout.tp > 1 else ""))
    return [Suggestion("parallel", title, change, where, RERUN, detail, standing,
                       details={"layout": layout.text(), "devices": layout.devices,
                                "tried": list(search.tried)},
                       notes=("peak and FLOPs are per device",))]
