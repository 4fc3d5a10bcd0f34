"""Configurations refused when the workflow loads, each with one short message that says what to set."""

from __future__ import annotations

import subprocess

import yaml

from comcl.detector.model_files import model_digest, model_files
from comcl.pretrain.model import backbone
from comcl.schema import size_problem
from tests.conftest import REPO
from tests.test_bad_input import load
from tests.tiny_workflow import SNAKEMAKE, over_the_demo


def test_a_misspelt_key_is_named_with_its_sections_keys_and_the_likely_one_in_a_few_lines(tmp_path):
    output = load(tmp_path, {"pretrian": {"arch": "resnet50"}})
    assert "configuration error at the top level: Additional properties are not allowed ('pretrian' was unexpected)" in output
    assert "Did you mean: 'pretrian' -> 'pretrain'" in output
    assert "$schema" not in output and len(output.splitlines()) < 20


def test_results_must_not_be_empty(tmp_path):
    assert "configuration error at results: '' should be non-empty" in load(tmp_path, {"results": ""})


def test_an_unknown_backbone_is_refused_before_any_job_starts(tmp_path):
    output = load(tmp_path, {"pretrain": {"arch": "resnet51"}})
    assert "configuration error at pretrain.arch: 'resnet51' is not one of ['resnet18'" in output


def test_every_backbone_the_schema_allows_is_one_pretraining_builds():
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    for arch in schema["properties"]["pretrain"]["properties"]["arch"]["enum"]:
        _network, width = backbone(arch)
        assert width in (512, 2048), arch


def test_the_detector_model_is_its_content_not_its_path(tmp_path):
    """A moved checkout keeps the digest (no detector reruns); an edit of an inherited file changes it."""
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "base.py").write_text("model = dict(type='FasterRCNN')\n")
        (tmp_path / folder / "small.py").write_text('_base_ = "base.py"\nmodel = dict(neck=dict(out_channels=64))\n')
    assert model_files(tmp_path / "a/small.py") == [tmp_path / "a/small.py", tmp_path / "a/base.py"]
    assert model_digest(tmp_path / "a/small.py") == model_digest(tmp_path / "b/small.py")
    (tmp_path / "b/base.py").write_text("model = dict(type='RetinaNet')\n")
    assert model_digest(tmp_path / "a/small.py") != model_digest(tmp_path / "b/small.py")
    assert [path.name for path in model_files(REPO / "config/detector/faster_rcnn_r18_fpn_small.py")] == [
        "faster_rcnn_r18_fpn_small.py",
        "faster_rcnn_r50_fpn.py",
    ]


def test_a_yaml_alias_bomb_is_refused_at_once_not_expanded(tmp_path):
    """Nine levels of nine aliases: 9^9 values once expanded, a few hundred bytes as written."""
    lines = ["a0: &a0 [x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    (tmp_path / "bomb.yaml").write_text("\n".join([*lines, "bomb: *a9"]) + "\n")
    command = [*SNAKEMAKE, "-n", *over_the_demo(tmp_path / "bomb.yaml")]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode != 0
    assert "more than 100,000 values once its YAML aliases (*name) are expanded" in result.stdout + result.stderr
    assert size_problem({"a": [1, 2, {"b": 3}]}) is None and size_problem(list(range(10)), limit=5)
