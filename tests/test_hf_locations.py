"""Findings on layers built inside ``transformers`` point at the user's code (issue 15):
the config argument that set the limit, else the line that built the model, with the
library line as a related location in every format; ``noqa`` works on the user's line."""

from __future__ import annotations

import textwrap

import pytest

import archlint
from archlint.format import FormatOptions, render
from archlint.format.sarif import sarif_document

pytestmark = pytest.mark.models
zoo = pytest.importorskip("hf_zoo", reason="needs the [models] extra")

OPT = textwrap.dedent("""\
    import transformers


    def build_model():
        config = transformers.OPTConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2,
                                        ffn_dim=128, num_attention_heads=4,
                                        word_embed_proj_dim=64,
                                        max_position_embeddings=2048){noqa}
        return transformers.OPTModel(config)
    """)


def opt_file(tmp_path, noqa=""):
    path = tmp_path / "model.py"
    path.write_text(OPT.format(noqa=noqa))
    return path


def check(target):
    return archlint.analyze(str(target), seq_len=4096, select=["AL106"], dynamic=False)


def test_finding_points_at_the_config_argument_with_the_library_line_related(tmp_path):
    path = opt_file(tmp_path)
    report = check(path)
    (finding,) = report.findings
    assert finding.location.file.endswith("model.py") and finding.location.line == 8
    (library,) = finding.related
    assert library.file.endswith("transformers/models/opt/modeling_opt.py")
    document = report.to_dict()["findings"][0]
    assert document["location"]["line"] == 8
    assert document["related"] == [{"file": library.file, "line": library.line}]
    sarif = sarif_document([report], tmp_path)["runs"][0]["results"][0]
    assert sarif["locations"][0]["physicalLocation"]["region"]["startLine"] == 8
    related = sarif["relatedLocations"][0]["physicalLocation"]
    assert related["region"]["startLine"] == library.line
    assert related["artifactLocation"]["uri"].endswith("modeling_opt.py")
    text = render([report], "text", FormatOptions(color=False))
    assert f"    built in: {library}" in text


def test_noqa_on_the_users_line_suppresses_it(tmp_path):
    path = opt_file(tmp_path, noqa="  # archlint: noqa: AL106")
    assert check(path).findings == []


def test_a_zoo_factory_is_a_target_and_points_into_the_zoo():
    report = check("tests/hf_zoo.py:opt")
    (finding,) = report.findings
    source = open("tests/hf_zoo.py").read().splitlines()
    assert finding.location.file == "tests/hf_zoo.py"
    assert source[finding.location.line - 1].strip() == "max_position_embeddings=2048)"


def test_without_a_config_argument_the_build_line(tmp_path):
    """DistilBERT's 512 is the config's default: no keyword to point at."""
    path = tmp_path / "model.py"
    path.write_text(textwrap.dedent("""\
        import transformers


        def build_model():
            config = transformers.DistilBertConfig(vocab_size=100, dim=64, n_layers=2,
                                                   n_heads=4, hidden_dim=128)
            return transformers.DistilBertModel(config)
        """))
    (finding,) = check(path).findings
    assert finding.location.line == 7
    assert finding.related[0].file.endswith("modeling_distilbert.py")
