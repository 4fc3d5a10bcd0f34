"""Configurations refused when the workflow loads, each with one short message that says what to set."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from comcl import plan
from comcl.detector.model_files import model_digest, model_files
from comcl.pretrain.model import backbone
from comcl.schema import size_problem
from tests.conftest import REPO
from tests.table_dataset import write_table_dataset
from tests.test_bad_input import load
from tests.tiny_workflow import SNAKEMAKE, over_the_demo

CHEST_TABLE = {"format": "table", "root": "/data/films", "task": "multilabel", "findings": ["Effusion"], "modality": "chest"}


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


def test_a_chest_table_without_lesion_boxes_is_told_the_entry_is_absent_and_both_ways_to_give_them(tmp_path):
    output = load(tmp_path, {"datasets": {"films": CHEST_TABLE}})
    assert "detector.annotations has no entry for films" in output and "lacks root" not in output
    assert "set detector.annotations.films: {format: coco, root: <images folder>, train: train.json, test: test.json}" in output
    assert "or give the dataset as format: chestxray14 (NIH's layout), whose bbox_list" in output
    assert "Traceback" not in output and "PlanError" not in output


def test_a_fundus_dataset_without_an_annotations_entry_is_told_it_is_absent_with_coco_and_idrid():
    config = {"datasets": {"photos": {**CHEST_TABLE, "modality": "fundus"}}, "detector": {"annotations": {}}}
    with pytest.raises(
        plan.PlanError, match=r"detector.annotations has no entry for photos: .* \{format: coco.* \{format: idrid"
    ):
        plan.lesion_sources(config)
    config["detector"]["annotations"]["photos"] = {"format": "coco", "root": "/data/photos", "train": "train.json"}
    with pytest.raises(plan.PlanError, match="detector.annotations.photos lacks test"):  # an entry, incomplete
        plan.lesion_sources(config)


def test_a_fundus_table_without_a_quality_column_is_refused_naming_the_file_and_eyeqs_words(tmp_path):
    setup = write_table_dataset(tmp_path / "mine", n_train=2, n_test=2, size=(64, 64))
    config = {"datasets": {"mine": {**setup["dataset"], "labels": "labels.csv"}}}
    plan.check_quality_labels(config)  # the helper's table has its quality column
    (tmp_path / "mine/labels.csv").write_text("image,split,grade\nphotos/a.jpg,train,0\n")
    with pytest.raises(plan.PlanError, match=r"dataset mine: .*mine/labels\.csv has no quality column") as error:
        plan.check_quality_labels(config)
    assert "chest radiograph score" in str(error.value) and "Good, Usable or Reject (or 0, 1, 2" in str(error.value)
    plan.check_quality_labels({"datasets": {"mine": {**config["datasets"]["mine"], "modality": "chest"}}})  # the score's own
    plan.check_quality_labels({"datasets": {"mine": {**config["datasets"]["mine"], "labels": "absent.csv"}}})  # listed as missing


def test_a_renamed_key_is_refused_with_its_new_name(tmp_path):
    output = load(tmp_path, {"pretrain": {"input_size": 64, "image_size": 64}})
    assert (
        "renamed keys: pretrain.input_size is now pretrain.view_size; pretrain.image_size is now pretrain.image_view_size"
        in output
    )
    assert "Traceback" not in output and len(output.splitlines()) < 20


def variant_file(tmp_path, spl: dict):
    path = tmp_path / "mine.yaml"
    comcl = yaml.safe_load((REPO / "config/pretrain/comcl.yaml").read_text())
    path.write_text(yaml.safe_dump({**comcl, "spl": spl}))
    return {"pretrain": {"runs": [{"variants": [str(path)], "versions": ["original"]}]}}


def test_a_variant_with_the_old_name_of_its_rule_is_refused_with_the_new_one(tmp_path):
    output = load(tmp_path, variant_file(tmp_path, {"enabled": True, "threshold": "curriculum", "min_fraction": 0.25}))
    assert f"pretraining variant {tmp_path / 'mine.yaml'} error: renamed keys: spl.threshold is now spl.rule" in output


def test_a_variant_without_self_paced_learning_sets_no_rule(tmp_path):
    output = load(tmp_path, variant_file(tmp_path, {"enabled": False, "rule": "inverse_k"}))
    assert f"pretraining variant {tmp_path / 'mine.yaml'}: configuration error at spl: Additional properties" in output
    assert "('rule' was unexpected)" in output and "variant.schema.yaml" in output and "$schema" not in output
