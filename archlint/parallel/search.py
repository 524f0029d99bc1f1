"""The two budget questions, answered by simulating candidates (never by a formula).

- **Largest n per device**: the peak of one rank is piecewise quadratic in n (weights
  and state constant, activations linear, materialized scores quadratic). The quadratic
  through three simulated lengths is solved for the budget; the root is simulated; a
  root that does not fit is halved until one does (at most :data:`MAX_RUNS` runs), and
  the answer is always a simulated length that fits.
- **Smallest layout**: the peak of one rank under ``fsdp=f`` is ``A + B/f`` (state and
  gathered weights shrink with f, activations do not). Two simulated degrees give A and
  B, the smallest power-of-two f with ``A + B/f`` within the budget is simulated, and
  doubled until it fits. When no fsdp degree can fit (A alone is over the budget), the
  activations must be split: cp then tp are doubled (each only where the model allows
  it, :mod:`.plan`) and the fsdp search repeated.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from archlint.parallel.layout import MAX_DEVICES, Layout
from archlint.parallel.report import Search
from archlint.units import format_bytes

#: simulations one search may spend
MAX_RUNS = 8
#: shortest length the n search reports
SHORTEST = 16

Peak = Callable[..., "int | None"]     # a simulated peak, None when the run failed


def largest_fitting_n(peak_at: Callable[[int], int | None], budget: int, target: int,
                      known: dict[int, int], unit: int = 1) -> Search:
    """Largest multiple of ``unit`` whose simulated per-device peak is within ``budget``."""
    tried: list[str] = []
    peaks = dict(known)

    def run(n: int) -> int | None:
        if n not in peaks:
            value = peak_at(n)
            if value is None:
                return None
            peaks[n] = value
            tried.append(f"n={n}: {format_bytes(value)}")
        return peaks[n]

    lengths = [max(unit, (target // k) // unit * unit) for k in (1, 2, 4)]
    for n in lengths:
        if run(n) is None:
            return Search(None, tuple(tried), exact=False)
    fitting = [n for n in peaks if peaks[n] <= budget]
    guess = _quadratic_root(sorted(peaks.items())[-3:], budget)
    if guess is None:
        guess = max(fitting, default=lengths[-1] // 2)
    guess = max(unit, int(guess) // unit * unit)
    for _ in range(MAX_RUNS - len(tried)):
        value = run(guess)
        if value is not None and value <= budget:
            fitting.append(guess)
            break
        guess = max(unit, guess // 2 // unit * unit)
        if guess < SHORTEST:
            break
    best = max((n for n in fitting if peaks.get(n, budget + 1) <= budget), default=0)
    exact = best > 0 and all(peaks[n] > budget for n in peaks if n > best)
    return Search(best, tuple(tried), exact=exact)


def _quadratic_root(points: list[tuple[int, int]], budget: int) -> float | None:
    """The n > 0 where the quadratic (or line) through ``points`` reaches ``budget``."""
    if len(points) < 2:
        return None
    (x0, y0), (x1, y1), *rest = points
    if rest:
        x2, y2 = rest[0]
        a = ((y2 - y1) / (x2 - x1) - (y1 - y0) / (x1 - x0)) / (x2 - x0)
    else:
        x2, y2, a = x1, y1, 0.0
    b = (y1 - y0) / (x1 - x0) - a * (x0 + x1)
    c = y0 - a * x0 * x0 - b * x0 - budget
    if abs(a) < 1e-12:
        return -c / b if b > 0 else None
    disc = b * b - 4 * a * c
    if disc < 0:
        return None
    root = (-b + math.sqrt(disc)) / (2 * a)
    return root if root > 0 else None


def smallest_layout(peak_of: Callable[[Layout], int | None], budget: int, start: Layout,
                    allowed: Callable[[Layout], bool], known: int) -> Search:
    """The layout with the fewest devices found to fit, searching fsdp, then cp and tp.

    ``known`` is the simulated peak of ``start``.
    """
    tried: list[str] = []
    runs = [0]
    peaks: dict[Layout, int | None] = {start: known}

    def run(layout: Layout) -> int | None:
        if layout in peaks:
            return peaks[layout]
        if runs[0] >= MAX_RUNS or layout.devices > MAX_DEVICES or not allowed(layout):
            return None
        runs[0] += 1
        peaks[layout] = value = peak_of(layout)
        tried.append(f"{layout.text()}: "
                     + ("failed" if value is None else format_bytes(value)))
        return value

    base = start
    while True:
        found = _fsdp_search(run, budget, base)
        if found is not None:
            return Search(found, tuple(tried))
        wider = [base.with_degrees(cp=base.cp * 2), base.with_degrees(tp=base.tp * 2)]
        wider = [layout for layout in wider if allowed(layout)]
        if not wider or runs[0] >= MAX_RUNS:
            return Search(None, tuple(tried), exact=False)
        base = wider[0]


def _fsdp_search(run: Callable[[Layout], int | None], budget: int,
                 base: Layout) -> Layout | None:
    first = base.with_degrees(fsdp=max(1, base.fsdp))
    second = first.with_degrees(fsdp=first.fsdp * 2)
    peak1, peak2 = run(first), run(second)
    if peak1 is not None and peak1 <= budget:
        return first
    if peak1 is None or peak2 is None:
        return None
    if peak2 <= budget:
        return second
    # peak = A + B/f through the two runs
    f1, f2 = first.fsdp, second.fsdp
    b = (peak1 - peak2) / (1 / f1 - 1 / f2)
    a = peak1 - b / f1
    if a >= budget or b <= 0:
        return None
    degree = 2 ** math.ceil(math.log2(max(f2 * 2, b / (budget - a))))
    while True:
        candidate = base.with_degrees(fsdp=degree)
        value = run(candidate)
        if value is None:
            return None
        if value <= budget:
            return candidate
        degree *= 2
