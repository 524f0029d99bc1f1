"""Issue 9: the GPU prediction against a real CUDA step, model by model.

For every fixture (and, with ``--hf``, the tiny Hugging Face models of tests/hf_zoo.py),
in train and infer mode, float32 and bfloat16, at two lengths: archlint's prediction for
this GPU (``--device`` picked from the board's name and memory, so the attention
kernels and autocast rules are the board's) beside ``torch.cuda.max_memory_allocated`` and
``max_memory_reserved`` of one real step, with the error of the allocated peak.
Must hold: |error| <= 5% for float32 and bf16 on at least 10 models; rows outside are
listed with the kernel choices that explain them.

No step runs unless the prediction fits the board. Without a GPU the script says so and
exits 0 (it is the check to run when one is lent; tests never depend on it).

    python benchmarks/bench_gpu.py [--hf] [--only NAME] [--budget-s 420]
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

LENGTHS = {"image": (64, 128)}
DEFAULT_LENGTHS = (512, 2048)
TOLERANCE = 0.05


def board_device() -> str:
    """The archlint device name of GPU 0: a named board, else ``cuda:<its memory>``."""
    import torch

    from archlint.cost.devices import DEVICES

    properties = torch.cuda.get_device_properties(0)
    name, total = properties.name.lower(), properties.total_memory
    for key, device in DEVICES.items():
        family = key.split("-")[0]
        if family in name.replace(" ", "") and abs(device.total - total) < 0.08 * total:
            return key
    return f"cuda:{total}B"


def real_step(module, spec, seq_len: int, settings) -> tuple[int, int]:
    """(max allocated, max reserved) bytes of one step on CUDA, state included."""
    import torch

    from archlint.cost.fake import backward_from, make_inputs, preserved

    train = settings.mode == "train"
    module.cuda()
    optimizer = None
    if train and settings.optimizer != "none":
        optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
        for param in module.parameters():
            param.grad = torch.zeros_like(param)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    args, kwargs = make_inputs(spec, seq_len, settings.batch)
    args = [a.cuda() if isinstance(a, torch.Tensor) else a for a in args]
    kwargs = {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(settings.dtype)
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    with preserved(module, train):
        with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None), \
                torch.set_grad_enabled(train):
            out = module(*args, **kwargs)
        if train:
            backward_from(out)
            del out
            if optimizer is not None:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        else:
            del out
    torch.cuda.synchronize()
    allocated, reserved = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
    module.cpu()
    del optimizer
    torch.cuda.empty_cache()
    return allocated, reserved


def targets(hf: bool, only: str | None) -> list[str]:
    names = [os.path.relpath(p, ROOT) for p in sorted(glob.glob(os.path.join(ROOT, "fixtures",
                                                                        "*.py")))]
    if hf:
        import hf_zoo

        names += [f"tests/hf_zoo.py:{name}" for name in hf_zoo.ZOO]
    return [n for n in names if not only or only in n]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hf", action="store_true", help="also the tests/hf_zoo.py models")
    parser.add_argument("--only", help="only targets whose name contains this")
    parser.add_argument("--budget-s", type=float, default=420.0, help="stop after this long")
    options = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here; nothing measured (run it where a GPU is)")
        return 0
    from tabulate import tabulate

    from archlint.classify import classify
    from archlint.cost.predict import CostError, CostModel
    from archlint.load import load_target
    from archlint.settings import make_settings
    from archlint.trace import trace_model
    from archlint.units import format_bytes

    device = board_device()
    start, rows, outside, models_within = time.monotonic(), [], [], set()
    for name in targets(options.hf, options.only):
        if time.monotonic() - start > options.budget_s:
            outside.append(f"{name}: not run (time budget of {options.budget_s:.0f} s spent)")
            continue
        try:
            loaded = load_target(name)
            graph = classify(trace_model(loaded))
        except Exception as error:  # noqa: BLE001 - a benchmark lists what it cannot load
            outside.append(f"{name}: not loaded: {type(error).__name__}: {error}"[:200])
            continue
        errors = []
        for dtype in ("float32", "bfloat16"):
            for mode in ("train", "infer"):
                settings = make_settings(mode=mode, dtype=dtype, device=device)
                model = CostModel(graph, settings)
                for n in LENGTHS.get(loaded.input_spec.kind, DEFAULT_LENGTHS):
                    try:
                        prediction = model.predict(n)
                    except CostError as error:
                        outside.append(f"{name} {mode} {dtype} n={n}: not predicted: {error}")
                        continue
                    if prediction.peak > settings.memory:
                        outside.append(f"{name} {mode} {dtype} n={n}: predicted "
                                       f"{format_bytes(prediction.peak)} does not fit; not run")
                        continue
                    torch.manual_seed(0)
                    try:
                        allocated, reserved = real_step(loaded.module, loaded.input_spec, n,
                                                        settings)
                    except Exception as error:  # noqa: BLE001 - the model fails at n
                        outside.append(f"{name} {mode} {dtype} n={n}: real step failed: "
                                       f"{type(error).__name__}: {error}"[:200])
                        continue
                    error = (prediction.peak - allocated) / allocated
                    errors.append(abs(error))
                    kernels = sorted({k.backend for k in prediction.kernels}) or ["-"]
                    rows.append([name.removeprefix("fixtures/"), mode, dtype, n,
                                 format_bytes(prediction.peak), format_bytes(allocated),
                                 f"{error:+.2%}", format_bytes(reserved), ",".join(kernels)])
                    print(*rows[-1], sep="\t", file=sys.stderr)
                    if abs(error) > TOLERANCE:
                        outside.append(f"{name} {mode} {dtype} n={n}: {error:+.1%}; kernels "
                                       + "; ".join(f"{k.module}: {k.backend} ({k.reason})"
                                                   for k in prediction.kernels[:2]))
        if errors and max(errors) <= TOLERANCE:
            models_within.add(name)
    print(f"\nPredicted (--device {device}) vs measured on "
          f"{torch.cuda.get_device_name(0)}, batch 1, Adam")
    print(tabulate(rows, headers=["model", "mode", "dtype", "n", "predicted", "allocated",
                                  "error", "reserved", "attention"],
                   tablefmt="github", disable_numparse=True))
    for line in outside:
        print(f"  outside: {line}")
    print(f"\nmodels within {TOLERANCE:.0%} in every row: {len(models_within)} "
          f"(must hold: >= 10): {'OK' if len(models_within) >= 10 else 'FAIL'}; "
          f"{time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
