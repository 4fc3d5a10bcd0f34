"""comcl.plan, called as the workflow calls it when it loads, without Snakemake: the demo's configuration with
the schema's defaults filled in, changed where a test says."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import torch
import torchvision
import yaml
from snakemake.utils import validate

from comcl import plan
from comcl.weights import IMAGENET_URLS
from tests.conftest import REPO

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"


@pytest.fixture(scope="module")
def demo_config() -> dict:
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    validate(config, str(SCHEMA))
    return config


@pytest.fixture
def config(demo_config) -> dict:
    return copy.deepcopy(demo_config)


def test_the_plan_imports_without_snakemake_or_the_scientific_stack():
    code = "import sys, comcl.plan; print(sorted({m.split('.')[0] for m in sys.modules} & {'snakemake', 'torch', 'numpy', 'pandas'}))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_a_section_has_its_keys_sorted_at_every_depth_and_drops_what_it_is_told():
    config = {"finetune": {"seeds": [1, 0], "lr": 0.1, "arch": {"z": 1, "a": 2}}}
    value = plan.section(config, "finetune", drop=("seeds",))
    assert value == {"arch": {"a": 2, "z": 1}, "lr": 0.1}
    assert list(value) == ["arch", "lr"] and list(value["arch"]) == ["a", "z"]


def test_versions_are_named_by_their_percentage_after_the_original(config):
    config["degrade"]["proportions"] = [0.7, 1.0, 0.455]
    assert plan.proportion_versions(config) == {"lq70": 0.7, "lq100": 1.0, "lq46": 0.455}
    assert plan.dataset_versions(config) == ["original", "lq70", "lq100", "lq46"]


def test_two_proportions_that_name_one_version_are_refused(config):
    config["degrade"]["proportions"] = [0.7, 0.704]
    with pytest.raises(plan.PlanError, match="degrade.proportions 0.7 and 0.704 are both version lq70"):
        plan.proportion_versions(config)


@pytest.mark.parametrize("results", ["/", "  ", str(REPO), str(REPO.parent), str(REPO / "config"), str(REPO / "src/comcl")])
def test_results_must_be_a_folder_of_its_own(config, results):
    config["results"] = results
    with pytest.raises(plan.PlanError, match="set it to a folder of its own"):
        plan.check_results_folder(config, REPO)


def test_results_inside_the_checkout_or_anywhere_else_are_fine(config, tmp_path):
    for results in (str(REPO / "results/mine"), str(tmp_path / "out"), str(REPO / "out")):
        config["results"] = results
        plan.check_results_folder(config, REPO)


def test_only_the_folders_of_the_synthetic_datasets_are_written_by_the_workflow(config):
    assert plan.written_by_workflow(config, "results/demo/synthetic/eyeq/") == ["results/demo/synthetic/eyeq/"]
    assert plan.written_by_workflow(config, "/data/EyeQ") == []


def test_a_preprocessed_dataset_is_indexed_from_its_preprocessed_images_without_its_fetch_keys(config):
    config["datasets"]["eyeq"]["download"] = {"labels": "https://example.org/labels.zip"}
    entry = plan.indexed_dataset(config, "eyeq")
    assert "download" not in entry
    assert entry["images"] == {split: f"../../eyeq/preprocessed/images/{split}" for split in ("train", "test")}
    config["preprocess"]["enabled"] = False
    assert plan.indexed_dataset(config, "eyeq")["images"] == config["datasets"]["eyeq"]["images"]


def test_a_fundus_detector_gets_its_boxes_from_detector_annotations_and_nih_from_its_own_box_list(config):
    fundus = plan.lesion_source(config, "eyeq")
    assert fundus["format"] == "idrid" and fundus["root"] == "results/demo/synthetic/idrid"
    chest = plan.lesion_source(config, "chestxray14")
    assert chest["format"] == "chestxray14" and chest["root"] == "results/demo/synthetic/chestxray14"
    assert list(chest) == sorted(chest) and chest["bbox_list"] == config["datasets"]["chestxray14"]["bbox_list"]


def test_a_fundus_dataset_without_lesion_boxes_is_refused_with_what_to_set(config):
    config["detector"]["annotations"]["eyeq"] = {"format": "idrid", "root": ""}
    with pytest.raises(plan.PlanError, match=r"detector.annotations.eyeq lacks root: .* \{format: coco"):
        plan.lesion_sources(config)


def test_missing_real_data_is_listed_with_the_step_that_provides_it(config, tmp_path):
    assert plan.missing_data(config) == ("", "")  # the demo's data are the workflow's own
    config["datasets"]["eyeq"]["root"] = str(tmp_path / "EyeQ")
    fetched, manual = plan.missing_data(config)
    assert "eyeq: " in manual + fetched and str(tmp_path / "EyeQ") in manual + fetched


def test_the_runs_of_a_table_every_baseline_on_every_version_and_each_encoder_where_it_was_pretrained(config):
    config["pretrain"]["runs"] = [
        {"variants": ["comcl", "basic_cl"], "versions": ["lq70"]},
        {"variants": ["comcl_v1"], "versions": ["original"]},
    ]
    assert plan.variant_names(config) == ["comcl", "basic_cl", "comcl_v1"]
    assert plan.pretrain_runs(config) == [("lq70", "basic_cl"), ("lq70", "comcl"), ("original", "comcl_v1")]
    assert plan.finetune_runs(config) == sorted(
        [("lq70", "basic_cl"), ("lq70", "comcl"), ("original", "comcl_v1")]
        + [(v, "resnet18") for v in ("original", "lq70", "lq100")]
    )
    jobs = plan.finetune_jobs(config, "eyeq", "lq70")
    assert [(job["method"], job["seed"]) for job in jobs] == [("basic_cl", 0), ("comcl", 0), ("resnet18", 0)]
    assert jobs[1]["metrics"] == "results/demo/eyeq/lq70/finetune/comcl/seed0/metrics.json"
    assert jobs[1]["pretraining"] == "results/demo/eyeq/lq70/pretrain/comcl/summary.json" and jobs[2]["pretraining"] is None


def test_a_pretraining_run_on_a_version_that_does_not_exist_is_refused(config):
    config["pretrain"]["runs"] = [{"variants": ["comcl"], "versions": ["lq75"]}]
    with pytest.raises(plan.PlanError, match=r"pretrain.runs names dataset versions \['lq75'\]"):
        plan.pretrain_runs(config)


def test_a_baseline_starts_from_the_family_the_encoders_started_from(config):
    config["pretrain"]["init"] = "imagenet"
    assert plan.finetune_setup(config, "comcl") == {"arch": config["pretrain"]["arch"], "init": "encoder"}
    assert plan.finetune_setup(config, "resnet50") == {"arch": "resnet50", "init": "imagenet"}


def test_imagenet_initialisation_of_an_architecture_without_imagenet_weights_is_refused(config):
    config["pretrain"].update(arch="resnet101", init="imagenet")
    with pytest.raises(
        plan.PlanError, match="pretrain.arch 'resnet101' has no ImageNet weights here.*or set pretrain.init: scratch"
    ):
        plan.check_initialisation(config)


def test_the_imagenet_resnets_are_those_with_weights():
    assert set(plan.IMAGENET_RESNETS) == {arch for arch in IMAGENET_URLS if arch.startswith("resnet")}


def test_a_figure_naming_an_unknown_method_is_refused(config):
    config["figures"]["gradcam"]["methods"] = ["resnet18", "comcl_typo"]
    with pytest.raises(plan.PlanError, match="figures.gradcam.methods names 'comcl_typo'.*comcl_typo.yaml not found"):
        plan.check_figure_methods(config, REPO)
    config["figures"]["gradcam"]["methods"] = ["resnet18", "comcl"]
    plan.check_figure_methods(config, REPO)


def test_the_detector_model_is_a_file_of_config_detector_or_a_path(config):
    expected = os.path.relpath(REPO / "config/detector/faster_rcnn_r18_fpn_small.py")  # as the rules name their inputs
    assert plan.detector_model_file(config, REPO) == expected
    config["detector"]["model"] = "/models/mine.py"
    assert plan.detector_model_file(config, REPO) == "/models/mine.py"
    assert {"resnet18", "resnet50", "inception_v3", "densenet121"} <= set(plan.baseline_architectures(REPO))


def test_figures_show_the_methods_that_ran_on_a_version_and_the_report_waits_for_them(config):
    config["pretrain"]["runs"] = [{"variants": ["basic_cl", "comcl"], "versions": ["original"]}]
    config["figures"]["tsne"]["variants"] = ["comcl", "lesion_cl"]
    assert plan.tsne_variants(config, "original") == ["comcl"] and plan.tsne_variants(config, "lq70") == []
    assert plan.gradcam_methods(config, "lq70") == ["resnet18"]
    outputs = plan.reported_outputs(config)
    assert "results/demo/tables/table2.html" in outputs and "results/demo/figures/finetune_chestxray14_lq100.png" in outputs
    assert "results/demo/figures/tsne_eyeq_original.png" in outputs and "results/demo/figures/tsne_eyeq_lq70.png" not in outputs
    assert plan.method_label("comcl", {"comcl": {"name": "CoMCL"}}) == "CoMCL" and plan.method_label("resnet18", {}) == "resnet18"


@pytest.mark.parametrize(("share", "empty"), [(0.001, "validation"), (0.999, "train")])
def test_a_val_share_that_leaves_a_synthetic_split_empty_is_refused(config, share, empty):
    config["index"]["val_share"] = share
    with pytest.raises(
        plan.PlanError, match=f"dataset eyeq: index.val_share {share} of the 80 training patients leaves the {empty} split empty"
    ):
        plan.check_validation_split(config)


def test_the_training_patients_of_a_synthetic_dataset_are_known_before_it_exists(config):
    assert plan.synthetic_train_patients(config, "eyeq") == 80  # 160 images, both eyes of each patient
    assert plan.synthetic_train_patients(config, "chestxray14") < config["synthetic"]["chestxray14"]["n_patients"]
    config["datasets"]["eyeq"]["root"] = "/data/EyeQ"
    assert plan.synthetic_train_patients(config, "eyeq") is None


def test_patches_larger_than_the_fine_tuning_images_are_refused(config):
    config["patches"]["size"] = 96
    with pytest.raises(plan.PlanError, match="patches.size 96 is larger than finetune.input_size 80.*at most 80"):
        plan.check_patch_size(config)


@pytest.mark.parametrize("key", ["view_size", "image_view_size"])
def test_pretraining_views_whose_last_resnet_map_is_1x1_are_refused_with_the_smallest_size_that_is_not(config, key):
    config["pretrain"][key] = 33
    plan.check_encoder_input(config)
    config["pretrain"][key] = 32
    with pytest.raises(plan.PlanError, match=f"pretrain.{key} is 32 px.*1x1 map.*at least 33"):
        plan.check_encoder_input(config)


def test_a_1x1_last_map_leaves_the_off_centre_taps_without_gradient_and_33_px_gives_them_one():
    """What the refusal above is for, measured on the network itself."""
    network = torchvision.models.resnet18(weights=None)
    for side, starved in ((plan.RESNET_STRIDE, True), (plan.RESNET_STRIDE + 1, False)):
        network.zero_grad()
        network(torch.randn(2, 3, side, side)).square().sum().backward()
        taps = network.layer4[1].conv2.weight.grad  # (512, 512, 3, 3)
        off_centre = taps.clone()
        off_centre[:, :, 1, 1] = 0
        assert bool(off_centre.abs().sum() == 0) is starved
