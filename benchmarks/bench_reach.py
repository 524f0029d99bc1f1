"""Reach analysis on the 124M-parameter GPT-2 decoder (fixtures/gpt2_124m.py).

Targets (issue 3):
- static analysis time independent of n: n = 1k and n = 1M within 20%;
- the dynamic probes on that decoder finish in under 15 s on this machine.

Run: ``.venv/bin/python benchmarks/bench_reach.py`` from the repository root. Prints the
figures; exits 1 if a target is missed.
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from archlint.classify import classify  # noqa: E402
from archlint.load import load_target  # noqa: E402
from archlint.reach import analyze  # noqa: E402
from archlint.settings import Settings  # noqa: E402
from archlint.trace import trace_model  # noqa: E402

FIXTURE = str(ROOT / "fixtures" / "gpt2_124m.py")
REPEATS = 31


def static_seconds(graph) -> tuple[float, float]:
    """Median time at n = 1k and n = 1M, runs interleaved so that load from other
    processes on the machine hits both alike."""
    times: dict[int, list[float]] = {1024: [], 2 ** 20: []}
    for _ in range(REPEATS):
        for n, found in times.items():
            settings = Settings(seq_len=(n,), span=512, dynamic=False)
            start = time.perf_counter()
            analyze(graph, settings)
            found.append(time.perf_counter() - start)
    return statistics.median(times[1024]), statistics.median(times[2 ** 20])


def main() -> int:
    warnings.filterwarnings("ignore")
    start = time.perf_counter()
    graph = classify(trace_model(load_target(FIXTURE)))
    print(f"load + trace + classify (not part of the reach targets): "
          f"{time.perf_counter() - start:.2f} s")
    small, large = static_seconds(graph)
    ratio = large / small
    print(f"static reach, median of {REPEATS} interleaved runs: n=1k {small * 1000:.1f} ms, "
          f"n=1M {large * 1000:.1f} ms, ratio {ratio:.2f} (target within 20%)")
    report = analyze(graph, Settings(seq_len=(2 ** 20,), span=512))
    dict_ = report.to_dict()
    print(f"  R = {dict_['receptive_field']['expr']}, S(n) = {dict_['serial_steps']['expr']}, "
          f"L(511) = {dict_['dependency_path']['at_span']}")
    probe = report.probe
    if probe is None:
        print("dynamic probes FAILED: " + "; ".join(report.notes))
        return 1
    print(f"dynamic probes: {probe.seconds:.2f} s at probe length {probe.probe_len}, "
          f"{probe.seeds} inputs, {probe.dtype} (target < 15 s); "
          f"support {probe.support['n']} vs static {report.expected_support['n']}, "
          f"ERF {probe.erf['n']['span']} positions")
    ok = abs(ratio - 1) <= 0.2 and probe.seconds < 15 and report.agreement
    print("targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
