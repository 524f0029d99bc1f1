"""Issue 10 target: `--parallel fsdp=8` adds less than 5 s to a check of the 124M decoder.

Times `archlint check fixtures/gpt2_124m.py --seq-len 1k` with and without
`--parallel fsdp=8` in one run, each a fresh process (imports, model construction and
the forked analysis included, as a user sees it), the figure per case the median of
REPEATS runs, the cache off (`--no-cache`: a cached answer would time nothing). Prints
both times, their difference and ratio, the parallel section's own figure (the peak per
device, so a faster simulation is seen to give the same number) and the machine load.
The CPU seconds of each check (user + system, its processes together) are printed too:
on a shared machine whose load exceeds its CPUs the wall times stretch with the load,
the CPU times much less, so they are what to compare across runs; the target is the
wall time added.

    python benchmarks/bench_parallel.py [extra archlint flags...]
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time

MODEL = "fixtures/gpt2_124m.py"
LENGTH = "1k"
REPEATS = 3
#: seconds the simulation may add to a check
BUDGET_S = 5.0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(extra: list[str]) -> tuple[float, float, dict | None]:
    """Median wall and CPU seconds of REPEATS checks, and the last one's section."""
    args = ["check", MODEL, "--seq-len", LENGTH, "--format", "json", "--no-cache", *extra]
    times, cpu, section = [], [], None
    for _ in range(REPEATS):
        start, start_cpu = time.perf_counter(), _children_cpu()
        done = subprocess.run([sys.executable, "-m", "archlint", *args],
                              capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - start)
        cpu.append(_children_cpu() - start_cpu)
        if done.returncode not in (0, 1):
            raise SystemExit(f"archlint exited {done.returncode}: {done.stderr.strip()}")
        section = json.loads(done.stdout)["reports"][0]["parallel"]
    return statistics.median(times), statistics.median(cpu), section


def main() -> int:
    extra = sys.argv[1:]
    plain, plain_cpu, _ = measure(extra)
    layout = ["--parallel", "fsdp=8"]
    sharded, sharded_cpu, section = measure([*layout, *extra])
    added = sharded - plain
    print(f"archlint check {MODEL} --seq-len {LENGTH} {' '.join(extra)}".rstrip())
    print(f"  without --parallel:      {plain:6.2f} s (median of {REPEATS}), "
          f"{plain_cpu:6.2f} s CPU")
    print(f"  with --parallel fsdp=8:  {sharded:6.2f} s, {sharded_cpu:6.2f} s CPU")
    print(f"  added: {added:.2f} s, ratio {sharded / plain:.2f}  (must add < {BUDGET_S} s); "
          f"CPU added {sharded_cpu - plain_cpu:.2f} s, ratio {sharded_cpu / plain_cpu:.2f}")
    if section and section["lengths"]:
        step = section["lengths"][0]
        print(f"  peak per device {step['peak_bytes']:,} bytes, state "
              f"{sum(step['state'].values()):,} bytes ({step['method']})")
    load = os.getloadavg()
    print(f"  load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on "
          f"{os.cpu_count()} CPUs")
    return 0 if added < BUDGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
