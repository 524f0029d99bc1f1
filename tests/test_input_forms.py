"""``example_input`` may return positional arguments, a dict of keyword arguments, or
``(args, kwargs)``, with tensors anywhere inside dataclasses, tuples and dicts, or taken
only by ``**kwargs``: each form is the same call of forward, so every figure archlint
reports equals the plain positional form's. What archlint cannot follow (a plain number
that follows seq_len, a scripted or quantized module with nothing declared) is one line
naming what to declare."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import archlint
from archlint.cli import main
from archlint.load import load_target

HOSTILE = "tests/hostile"


def figures(target: str) -> dict:
    report = archlint.analyze(target, seq_len="1k,2k", dynamic=False)
    document = report.to_dict()
    return {"cost": [{k: entry[k] for k in ("seq_len", "peak_bytes", "memory", "flops")}
                     for entry in document["cost"]["lengths"]],
            "receptive_field": str(report.reach.receptive_field.size),
            "serial_steps": str(report.reach.serial_steps),
            "parameters": document["model"]["parameters"],
            "layers": [(layer.name, layer.kind.value) for layer in report.graph.layers]}


@pytest.fixture(scope="module")
def positional():
    return figures(f"{HOSTILE}/inputs_positional.py")


@pytest.mark.parametrize("form", ["kwargs", "args_kwargs"])
def test_keyword_forms_report_what_the_positional_form_reports(form, positional):
    spec = load_target(f"{HOSTILE}/inputs_{form}.py").input_spec
    assert spec.seq_dims == (1, 1)                      # input_ids and attention_mask
    assert spec.description == "example_input: (1, 16), (1, 16) at n=16"
    assert figures(f"{HOSTILE}/inputs_{form}.py") == positional
    # the attention at n=2k: scores 2 heads x 2048 x 2048 float32 appear in both forms
    assert positional["cost"][1]["peak_bytes"] > positional["cost"][0]["peak_bytes"]


@pytest.mark.parametrize("form", ["dataclass", "var_kwargs", "nested"])
def test_tensors_inside_structures_report_what_the_positional_form_reports(form, positional):
    loaded = load_target(f"{HOSTILE}/inputs_{form}.py")
    # every tensor of the call is an argument: ids and mask, each with its axis at dim 1
    assert loaded.input_spec.seq_dims == (1, 1)
    assert loaded.input_spec.description == \
        "example_input: (1, 16), (1, 16) at n=16 (flattened from its structures)"
    # the model's own module tree, names and class: nothing of the flattening shows
    assert type(loaded.module).__name__ == "Tiny"
    assert [name for name, _ in loaded.module.named_modules()] == \
        ["", "embed", "attn", "attn.out_proj"]
    assert figures(f"{HOSTILE}/inputs_{form}.py") == positional


def test_the_gradient_probe_sees_through_a_structure():
    """The probe varies the flattened ids like positional ones: same effective field."""
    def erf(target):
        reach = archlint.analyze(target, seq_len="1k").reach.to_dict()
        return reach["effective_receptive_field"], reach["probe"]
    positional_erf, positional_probe = erf(f"{HOSTILE}/inputs_positional.py")
    assert positional_probe is not None and positional_erf    # the probe ran
    assert erf(f"{HOSTILE}/inputs_dataclass.py") == (positional_erf, positional_probe)


def test_a_declared_seq_dim_chooses_among_axes_that_follow_seq_len():
    spec = load_target(f"{HOSTILE}/inputs_seq_dim.py").input_spec
    assert spec.seq_dims == (2,)


def run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("name, expected", [
    ("inputs_length_constant", "example_input(seq_len, batch) returns a different "
                               "structure, or plain values that differ, at seq_len 16 and "
                               "24; only its tensors may follow seq_len (derive a length "
                               "from a tensor's shape in forward)"),
    ("scripted_module", f"{HOSTILE}/scripted_module.py:model: is a TorchScript module "
                        "(torch.jit.script/trace), whose layers archlint cannot trace; point "
                        "archlint at the nn.Module before scripting (the Tiny instance "
                        "itself, not torch.jit.script of it)"),
    ("scripted_with_example", f"{HOSTILE}/scripted_with_example.py:model: is a TorchScript "
                              "module (torch.jit.script/trace), whose layers archlint cannot "
                              "trace; point archlint at the nn.Module before scripting (the "
                              "Tiny instance itself, not torch.jit.script of it)"),
    ("quantized_module", f"{HOSTILE}/quantized_module.py:model: has quantized layers (proj: "
                         "torch.ao.nn.quantized.dynamic.modules.linear.Linear), whose input "
                         "cannot be inferred; check it with --mode infer (quantized weights "
                         "take no gradients) and define example_input(seq_len, batch) in "
                         "the model file"),
])
def test_what_cannot_be_followed_is_one_line_saying_what_to_declare(name, expected):
    result = run("check", f"{HOSTILE}/{name}.py", "--no-dynamic", "--isolated")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == f"archlint: error: {expected}", lines[-1]
