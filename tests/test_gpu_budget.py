"""Budgets for a GPU, predicted on this CPU-only machine (issue 9).

The backend choice is checked case by case against the constraints of ``sdp_utils.cpp``;
the bytes each backend keeps come from the CUDA kernels' own meta functions, and the
whole-model figures are derived by hand: a 12-layer, 12-head, d=768 decoder at n=8192 in
bf16 training holds no scores with flash attention, and (L + 1) · 6 · B·h·n² bytes of
them with the math kernel (per layer the float32 softmax it keeps for backward and the
bf16 copy autocast makes for ``attn @ v``, plus one layer's score gradients at the
backward peak).
"""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from torch._subclasses.fake_tensor import FakeTensorMode

from archlint.api import analyze
from archlint.cli import main
from archlint.cost.devices import DEVICES, RESERVE, find_device
from archlint.cost.sdpa import Call, choose_backend, remedy, run_backend
from archlint.errors import ArchlintError
from archlint.settings import make_settings

GiB, MiB = 1 << 30, 1 << 20
BF16, FP16, FP32 = torch.bfloat16, torch.float16, torch.float32


def call(dtype=BF16, d=64, n=1024, n_k=None, mask=False, dropout=0.0, causal=True,
         grad=True, heads=12, kv_heads=None) -> Call:
    n_k = n if n_k is None else n_k
    return Call((1, heads, n, d), (1, kv_heads or heads, n_k, d), (1, kv_heads or heads, n_k, d),
                dtype, mask, dropout, causal and not mask, grad)


@pytest.mark.parametrize("device, the_call, backend, why", [
    ("a100-80gb", call(), "flash", None),
    ("a100-80gb", call(dtype=FP32), "efficient", "flash: needs float16 or bfloat16"),
    ("a100-80gb", call(mask=True), "efficient", "flash: no arbitrary attn_mask"),
    ("a100-80gb", call(n=128, n_k=512), "efficient", "flash: is_causal needs as many"),
    ("a100-80gb", call(d=320), "efficient", "flash: q, k, v need one head dim <= 256"),
    ("a100-80gb", call(dtype=FP32, d=18), "math", "efficient: head dims must be multiples of 4"),
    ("a100-80gb", call(kv_heads=4), "flash", None),                         # GQA
    ("h100-80gb", call(), "cudnn", None),
    ("h100-80gb", call(d=192), "flash", "cudnn: training needs head dims <= 128"),
    ("h100-80gb", call(d=192, grad=False), "cudnn", None),
    ("h100-80gb", call(dropout=0.1), "flash", "cudnn: dropout must be a multiple of 1/16"),
    ("h100-80gb", call(dropout=0.125), "cudnn", None),
    ("rtx4090-24gb", call(d=200), "efficient", "flash: no training with head dim in (192, 224]"),
    ("rtx4090-24gb", call(d=200, grad=False), "flash", None),
    ("t4-16gb", call(), "math", "efficient: needs float16 or float32 (or bfloat16 from sm 8.0)"),
    ("t4-16gb", call(dtype=FP16), "efficient", "flash: needs sm 8.0 or newer"),
    ("v100-32gb", call(dtype=FP32, d=18), "efficient", "flash: needs sm 8.0"),  # sm 7: align 1
])
def test_the_backend_is_the_first_whose_constraints_hold(device, the_call, backend, why):
    chosen, reason = choose_backend(DEVICES[device], the_call)
    assert chosen == backend
    if why is None:
        assert ":" not in reason                  # the call's facts only: nothing refused
    else:
        assert why in reason


def test_the_remedy_of_a_math_call_is_checked_to_give_a_fused_kernel():
    t4, a100 = DEVICES["t4-16gb"], DEVICES["a100-80gb"]
    assert remedy(t4, call()) == ("compute attention in float16 (autocast or --dtype "
                                  "float16): then efficient runs")
    assert remedy(a100, call(dtype=FP32, d=18)).startswith("compute attention in bfloat16")
    fixed = call(dtype=FP32, d=24)                            # what the padding remedy says
    assert choose_backend(a100, fixed)[0] == "efficient"


def _saved(backend: str, dtype: torch.dtype, b=2, h=4, n=256, d=64) -> list:
    saved = []
    with FakeTensorMode(allow_non_fake_inputs=True):
        q, k, v = (torch.empty(b, h, n, d, dtype=dtype, requires_grad=True) for _ in "qkv")
        with torch.autograd.graph.saved_tensors_hooks(
                lambda t: saved.append((tuple(t.shape), t.dtype)) or t, lambda t: t):
            run_backend(backend, q, k, v, None, 0.0, True, None, True)
    return saved


def test_flash_keeps_the_output_and_a_float32_logsumexp_per_head_and_row_and_no_scores():
    saved = _saved("flash", BF16)
    assert ((2, 4, 256), FP32) in saved                     # logsumexp, B·h·n float32
    assert ((2, 4, 256, 64), BF16) in saved                 # the output
    assert not [s for s, _ in saved if s.count(256) >= 2]   # nothing n×n


def test_the_math_kernel_keeps_float32_scores_and_a_half_copy():
    with torch.autocast("cpu", dtype=BF16):
        saved = _saved("math", BF16)
    pairwise = sorted(((s, t) for s, t in saved if s[-2:] == (256, 256)), key=str)
    assert pairwise == sorted([((2, 4, 256, 256), FP32), ((8, 256, 256), BF16)], key=str)


@pytest.fixture(scope="module")
def decoder_at_8k():
    """The 124M decoder (12 layers, 12 heads, d=768), n=8192, bf16 training."""
    def run(device: str):
        return analyze("fixtures/gpt2_124m.py", seq_len="8192", dtype="bfloat16",
                       device=device, dynamic=False)
    return {device: run(device) for device in ("a100-80gb", "v100-32gb")}


def test_flash_holds_no_scores_where_math_holds_them_layer_by_layer(decoder_at_8k):
    layers, b, h, n = 12, 1, 12, 8192
    flash = decoder_at_8k["a100-80gb"].cost.target
    math_ = decoder_at_8k["v100-32gb"].cost.target
    assert {c.backend for c in flash.kernels} == {"flash"} and len(flash.kernels) == layers
    assert {c.backend for c in math_.kernels} == {"math"}
    assert flash.memory.parts.get("attention_scores", 0) == 0
    scores = (layers + 1) * (4 + 2) * b * h * n * n
    assert math_.memory.parts["attention_scores"] == pytest.approx(scores, rel=0.005)
    assert math_.peak - flash.peak >= layers * (4 + 2) * b * h * n * n
    # the arithmetic differs by what flash's backward recomputes: Q·Kᵀ once more per
    # layer, 2·B·h·n²·d FLOPs (d = 64)
    assert flash.flops - math_.flops == layers * 2 * b * h * n * n * 64


def test_al202_fires_for_the_math_kernel_only_and_names_the_change(decoder_at_8k):
    assert "AL202" not in {f.code for f in decoder_at_8k["a100-80gb"].findings}
    fixes = [f.fix for f in decoder_at_8k["v100-32gb"].findings if f.code == "AL202"]
    assert len(fixes) == 12
    assert fixes[0].startswith("on v100-32gb SDPA runs its math kernel here (bfloat16, head "
                               "dim 64, is_causal, no dropout, training; flash: needs sm 8.0")
    assert fixes[0].endswith("compute attention in float16 (autocast or --dtype float16): "
                             "then efficient runs")


def test_encoder_dropout_needs_no_fix_on_a_gpu_but_does_on_the_cpu():
    """nn.TransformerEncoderLayer trains with attention dropout 0.1: CPU SDPA falls back to
    math (AL202: set dropout 0), CUDA's memory-efficient kernel does dropout itself."""
    def run(**options):
        return analyze("fixtures/transformer_model.py", seq_len="512", dynamic=False,
                       **options)
    gpu, cpu = run(device="a100-80gb"), run()
    assert {c.backend for c in gpu.cost.target.kernels} == {"efficient"}
    assert "AL202" not in {f.code for f in gpu.findings}
    assert gpu.cost.target.memory.parts.get("attention_scores", 0) == 0
    assert any(f.code == "AL202" and "dropout to 0.0" in f.fix for f in cpu.findings)


def test_the_device_sets_the_budget_and_its_unusable_parts():
    h100 = make_settings(device="h100-80gb")
    assert h100.device == "h100-80gb" and h100.memory == 81559 * MiB - RESERVE
    assert make_settings(device="h100-80gb", memory="40GB").memory == 40 * 10**9
    assert make_settings(memory="40GB", device="h100-80gb").memory == 40 * 10**9
    assert make_settings(make_settings(device="a100-80gb"), device="t4-16gb").memory \
        == 15360 * MiB - RESERVE                          # a budget from a device follows it
    generic = make_settings(device="CUDA:40GB")
    assert generic.device == "cuda:40gb" and generic.memory == 40 * 10**9 - RESERVE
    assert make_settings(device="cpu").device is None
    gpu = find_device("h100-80gb")
    # CublasHandlePool.cpp: 32 MiB on sm 9.0, else 4096 KiB * 2 + 16 KiB * 8
    assert gpu.cublas_workspace == 32 * MiB
    assert find_device("a100-40gb").cublas_workspace == 4096 * 1024 * 2 + 16 * 1024 * 8
    assert gpu.context + gpu.cublas_workspace + gpu.allocator_headroom == RESERVE


def test_a_configured_cuda_context_replaces_the_documented_one_in_the_budget(tmp_path):
    """cuda_context = "800MiB" on an H100 (documented: 500 MiB): the unusable part grows
    by 300 MiB, workspace and headroom stay: usable = 81559 - (1024 - 500 + 800) MiB."""
    usable = (81559 - (1024 - 500 + 800)) * MiB
    settings = make_settings(device="h100-80gb", cuda_context="800MiB")
    assert settings.memory == usable
    assert make_settings(cuda_context="800MiB", device="h100-80gb").memory == usable
    assert make_settings(settings, device="t4-16gb").memory == \
        (15360 - (1024 - 300 + 800)) * MiB            # a budget from a device follows it
    assert make_settings(device="h100-80gb", cuda_context="800MiB",
                         memory="40GB").memory == 40 * 10**9       # a size stays a size
    gpu = find_device("h100-80gb", 800 * MiB)
    assert (gpu.context, gpu.cublas_workspace) == (800 * MiB, 32 * MiB)
    assert gpu.allocator_headroom == find_device("h100-80gb").allocator_headroom
    (tmp_path / "pyproject.toml").write_text(
        '[tool.archlint]\ndevice = "h100-80gb"\ncuda_context = "800MiB"\n')
    (tmp_path / "model.py").write_text(
        "import torch\nmodel = torch.nn.Linear(8, 8)\n"
        "def example_input(n, b):\n    return torch.randn(b, n, 8)\n")
    result = CliRunner().invoke(main, ["check", str(tmp_path / "model.py"), "--seq-len", "64",
                                       "--no-dynamic", "--format", "json"])
    import json
    report = json.loads(result.stdout)["reports"][0]
    assert report["cost"]["device_memory"]["cuda_context_bytes"] == 800 * MiB
    assert report["cost"]["device_memory"]["usable_bytes"] == usable
    assert report["settings"]["memory"] == usable
    with pytest.raises(ArchlintError, match="setting cuda_context"):
        make_settings(cuda_context="lots")


@pytest.mark.parametrize("text", ["h100", "a100-90gb", "cuda:", "cuda:lots", ""])
def test_an_unknown_device_is_one_line_listing_the_known_ones(text):
    with pytest.raises(ArchlintError) as error:
        make_settings(device=text)
    message = str(error.value)
    assert "\n" not in message
    if text.startswith("cuda:") and text != "cuda:":
        assert "memory size" in message
    else:
        assert "h100-80gb" in message and "cuda:<size>" in message


def test_the_cli_refuses_an_unknown_device_before_running_anything():
    result = CliRunner().invoke(main, ["check", "fixtures/gpt_sdpa.py", "--device", "b300"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "archlint: error: unknown device 'b300': use cpu, cuda:<size> or one of "
        + ", ".join(DEVICES)]


def test_a_device_too_small_for_the_parameters_is_a_finding():
    report = analyze("fixtures/gpt2_124m.py", seq_len="64", mode="infer",
                     device="cuda:1.5GB", dynamic=False)
    parameters = report.cost.target.memory.parts["parameters"]
    assert parameters > report.settings.memory == int(1.5e9) - RESERVE
    assert "AL201" in {f.code for f in report.findings}


def test_the_text_and_json_state_the_device_and_each_layers_kernel():
    report = analyze("fixtures/gpt_sdpa.py", seq_len="1024", dtype="bfloat16",
                     device="h100-80gb", dynamic=False)
    text = report.cost.render_text()
    assert ("device: h100-80gb (NVIDIA H100 80GB HBM3, sm 9.0, 85.5 GB): CUDA context ≈ "
            "524.3 MB, cuBLAS workspace 33.6 MB, allocator headroom 515.9 MB") in text
    assert ("attention kernel: blocks.0.attn and 1 more: cudnn (bfloat16, head dim 16, "
            "is_causal, no dropout, training)") in text
    data = report.cost.to_dict()
    assert data["device_memory"]["cublas_workspace_bytes"] == 32 * MiB
    kernels = data["lengths"][0]["attention_kernels"]
    assert [k["module"] for k in kernels] == ["blocks.0.attn", "blocks.1.attn"]
    assert {k["backend"] for k in kernels} == {"cudnn"}
    cpu = analyze("fixtures/gpt_sdpa.py", seq_len="1024", dynamic=False)
    assert "device: cpu" in cpu.cost.render_text()
    assert cpu.cost.to_dict()["lengths"][0]["attention_kernels"] == []


def _saved_by_block(cuda_rules: bool, n: int = 8, d: int = 64) -> list:
    from archlint.cost.cuda_autocast import CudaAutocastFp32

    torch.manual_seed(0)
    first, norm, second = torch.nn.Linear(d, d), torch.nn.LayerNorm(d), torch.nn.Linear(d, d)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(
            lambda t: saved.append((tuple(t.shape), t.dtype)) or t, lambda t: t), \
            torch.autocast("cpu", dtype=BF16):
        if cuda_rules:
            with CudaAutocastFp32():
                second(norm(first(torch.zeros(1, n, d))))
        else:
            second(norm(first(torch.zeros(1, n, d))))
    return saved


def test_cuda_autocast_runs_layer_norm_in_float32_where_cpu_autocast_does_not():
    """CUDA's autocast float32 list holds layer_norm, CPU's does not: under CUDA rules the
    LayerNorm keeps a float32 copy of its bf16 input (n·d·4 bytes instead of n·d·2); the
    linear layers around it save the same bf16 tensors either way."""
    cpu, cuda = _saved_by_block(False), _saved_by_block(True)
    assert [s for s in cpu if s not in cuda] == [((1, 8, 64), BF16)]
    assert [s for s in cuda if s not in cpu] == [((1, 8, 64), FP32)]
    nbytes = [sum(torch.tensor([], dtype=t).element_size() * torch.Size(s).numel()
                  for s, t in saved) for saved in (cpu, cuda)]
    assert nbytes[1] - nbytes[0] == 8 * 64 * 2


def test_softmax_under_cuda_rules_returns_float32_without_a_cast_copy():
    from archlint.cost.cuda_autocast import CudaAutocastFp32

    x = torch.zeros(4, 8, dtype=BF16)
    with torch.autocast("cpu", dtype=BF16), CudaAutocastFp32():
        assert torch.softmax(x, -1).dtype == FP32              # fp32_set_opt_dtype
        assert x.sum(-1).dtype == FP32
        assert torch.nn.functional.layer_norm(x, (8,)).dtype == FP32     # fp32
        assert (x @ x.T).dtype == BF16                         # lower precision stays
    assert torch.softmax(x, -1).dtype == BF16                  # outside autocast: nothing


def test_sdpa_bound_under_another_name_at_import_runs_the_gpus_kernel(tmp_path):
    """``from torch.nn.functional import scaled_dot_product_attention as sdpa`` binds the
    function before archlint runs: the device's kernel must still be chosen (flash on an
    A100 in bf16: no n×n scores), as for ``F.scaled_dot_product_attention``."""
    source = (
        "import torch\nfrom torch import nn\n"
        "from torch.nn.functional import scaled_dot_product_attention as {name}\n"
        "class Attend(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.qkv = nn.Linear(64, 192)\n"
        "    def forward(self, x):\n"
        "        b, n, _ = x.shape\n"
        "        q, k, v = (t.view(b, n, 4, 16).transpose(1, 2)\n"
        "                   for t in self.qkv(x).split(64, -1))\n"
        "        return {name}(q, k, v, is_causal=True).transpose(1, 2).reshape(b, n, 64)\n"
        "def example_input(n, b):\n    return torch.randn(b, n, 64)\n")
    results = {}
    for name in ("sdpa", "scaled_dot_product_attention"):
        path = tmp_path / f"bound_{name}.py"
        path.write_text(source.format(name=name))
        report = analyze(str(path), seq_len="2048", dtype="bfloat16", device="a100-80gb",
                         dynamic=False)
        target = report.cost.target
        results[name] = (target.peak, [c.backend for c in target.kernels])
        assert [c.backend for c in target.kernels] == ["flash"], name
        assert target.memory.parts.get("attention_scores", 0) == 0
    assert results["sdpa"] == results["scaled_dot_product_attention"]
