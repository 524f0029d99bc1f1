"""Issue 4 targets: predicted vs measured peak memory, and the 124M decoder at n=1M.

1. For every fixture model, at two lengths, in train and infer mode: the fake-tensor
   prediction beside the peak measured on a real CPU step (torch.profiler memory
   events; CUDA's max_memory_allocated when a GPU is present), and torchinfo's
   "Estimated Total Size" for comparison. Must hold: |error| <= 5%.
2. The 124M GPT-2-style decoder (fixtures/gpt2_124m.py): the cost analysis at n=1k and
   n=1M, each in a fresh process after loading and tracing; must hold: seconds, peak RSS
   (resource.getrusage) under 1.5 GB, and the 1M time within 20% of the 1k time.

    python benchmarks/bench_cost.py [--dtype bfloat16] [--only NAME] [--skip-124m]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

#: lengths per input kind (image fixtures take the side of the image)
LENGTHS = {"image": (32, 64)}
DEFAULT_LENGTHS = (128, 256)
TOLERANCE = 0.05
RSS_LIMIT_MB = 1536
REPEATS = 3

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from archlint.load import load_target
from archlint.trace import trace_model
from archlint.classify import classify
from archlint.settings import make_settings
from archlint import cost
graph = classify(trace_model(load_target(sys.argv[2])))
start = time.perf_counter()
report = cost.analyze(graph, make_settings(seq_len=sys.argv[3]))
elapsed = time.perf_counter() - start
target = report.target
print(json.dumps({"seconds": elapsed, "peak": target.peak, "flops": target.flops,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def torchinfo_estimate(module, spec, seq_len, batch, train):
    import torchinfo

    from archlint.cost.fake import make_inputs, preserved
    args, kwargs = make_inputs(spec, seq_len, batch)
    with preserved(module, train), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = torchinfo.summary(module, input_data=list(args), verbose=0,
                                  mode="train" if train else "eval", **kwargs)
    return stats.total_input + stats.total_output_bytes + stats.total_param_bytes


def fixture_table(dtype: str, only: str | None) -> bool:
    import torch
    from tabulate import tabulate

    from archlint.classify import classify
    from archlint.cost.predict import CostError, CostModel
    from archlint.load import load_target
    from archlint.profile.measure import measure_step
    from archlint.settings import make_settings
    from archlint.trace import trace_model
    from archlint.units import format_bytes

    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows, worst, failures = [], 0.0, []
    for path in sorted(glob.glob(os.path.join(ROOT, "fixtures", "*.py"))):
        name = os.path.relpath(path, ROOT)
        if only and only not in name:
            continue
        loaded = load_target(name)
        graph = classify(trace_model(loaded))
        for mode in ("train", "infer"):
            settings = make_settings(mode=mode, dtype=dtype)
            model = CostModel(graph, settings)
            for n in LENGTHS.get(loaded.input_spec.kind, DEFAULT_LENGTHS):
                torch.manual_seed(0)
                try:
                    predicted = model.predict(n).peak
                except CostError as error:
                    failures.append(f"{name} {mode} n={n}: {error}")
                    continue
                try:
                    measured = measure_step(loaded.module, loaded.input_spec, n, settings).peak
                except Exception as error:  # noqa: BLE001 - the model itself fails at n
                    failures.append(f"{name} {mode} n={n}: real run failed: "
                                    f"{type(error).__name__}: {error}"[:160])
                    continue
                estimate = torchinfo_estimate(loaded.module, loaded.input_spec, n,
                                              settings.batch, mode == "train")
                error = (predicted - measured) / measured
                worst = max(worst, abs(error))
                rows.append([name.removeprefix("fixtures/"), n, mode, format_bytes(predicted),
                             format_bytes(measured), f"{error:+.2%}", format_bytes(estimate),
                             f"{(estimate - measured) / measured:+.1%}"])
                print(*rows[-1], sep="\t", file=sys.stderr)
    print(f"\nPredicted vs measured peak of one step ({device}, {dtype}, batch 1, Adam)")
    print(tabulate(rows, headers=["fixture", "n", "mode", "predicted", "measured", "error",
                                  "torchinfo", "torchinfo error"],
                   tablefmt="github", disable_numparse=True))
    for failure in failures:
        print(f"  not compared: {failure}")
    print(f"\nworst |error|: {worst:.2%} over {len(rows)} comparisons "
          f"(must hold: <= {TOLERANCE:.0%}): {'OK' if worst <= TOLERANCE else 'FAIL'}")
    return worst <= TOLERANCE


def decoder_124m() -> bool:
    from archlint.units import format_count

    results = {}
    for length in ("1k", "1M"):
        runs = []
        for _ in range(REPEATS):
            child = subprocess.run([sys.executable, "-c", CHILD, ROOT, "fixtures/gpt2_124m.py",
                                    length], capture_output=True, text=True, cwd=ROOT, check=True)
            runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
        results[length] = {
            "seconds": statistics.median(r["seconds"] for r in runs),
            "rss_mb": max(r["rss_mb"] for r in runs),
            "peak": runs[0]["peak"], "flops": runs[0]["flops"],
        }
        print(f"124M decoder, n={length}: cost analysis {results[length]['seconds']:.2f} s "
              f"(median of {REPEATS}), peak RSS {results[length]['rss_mb']:.0f} MB, "
              f"predicted peak {results[length]['peak'] / 1e9:.1f} GB, "
              f"{format_count(results[length]['flops'])}FLOP per step")
    ratio = results["1M"]["seconds"] / results["1k"]["seconds"]
    rss = max(r["rss_mb"] for r in results.values())
    ok = rss < RSS_LIMIT_MB and abs(ratio - 1) <= 0.2
    print(f"time(1M) / time(1k) = {ratio:.2f} (must be within 20%), peak RSS {rss:.0f} MB "
          f"(must be < {RSS_LIMIT_MB}): {'OK' if ok else 'FAIL'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--only", help="fixtures whose path contains this text")
    parser.add_argument("--skip-124m", action="store_true")
    parser.add_argument("--skip-fixtures", action="store_true")
    options = parser.parse_args()
    ok = True
    if not options.skip_124m:         # first: Linux keeps a parent's peak RSS in a child
        ok &= decoder_124m()
    if not options.skip_fixtures:
        ok &= fixture_table(options.dtype, options.only)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
