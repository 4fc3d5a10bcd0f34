"""The configurations of config/examples/, one per modality and scale, each planned alone (``--configfile`` with
only the data's paths written over it) against a small table dataset the test makes: no demo dataset comes in,
and every stage of the method is planned."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.table_dataset import write_multilabel_table, write_table_dataset
from tests.tiny_workflow import SNAKEMAKE, planned_jobs

EXAMPLES = REPO / "config" / "examples"
# Example -> (pretrainings, fine-tunings) of its plan: 13 variant-version pairs by default; fine-tuning adds the
# baselines on every version (one on a CPU, the paper's three on a GPU), once per seed (one, or the paper's three).
PLANS = {
    "fundus_small_cpu": (13, (13 + 1 * 3) * 1),
    "fundus_paper_gpu": (13, (13 + 3 * 3) * 3),
    "chest_small_cpu": (13, (13 + 1 * 3) * 1),
    "chest_paper_gpu": (13, (13 + 3 * 3) * 3),
}
# What a paper example sets: the data and where each stage runs; every size is the schema's, the paper's.
PAPER_KEYS = {"results": None, "datasets": None, "detector": {"annotations", "device"}, "detect": {"device"}}
PAPER_KEYS |= {"pretrain": {"device"}, "finetune": {"device"}}


def example(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())


def test_there_is_one_example_per_modality_and_scale():
    assert sorted(path.stem for path in EXAMPLES.glob("*.yaml")) == sorted(PLANS)


@pytest.mark.parametrize("name", [name for name in PLANS if name.endswith("small_cpu")])
def test_a_small_example_is_resnet18_on_the_cpu_with_batches_a_few_dozen_images_fill(name):
    config = example(name)
    assert config["pretrain"]["arch"] == "resnet18" and config["finetune"]["baselines"] == ["resnet18"]
    assert {config[stage]["device"] for stage in ("detector", "detect", "pretrain", "finetune")} == {"cpu"}
    assert max(config["pretrain"]["batch_size"], config["pretrain"]["queue_size"]) <= 4  # per level of the train split
    assert config["detector"]["iterations"] <= 500 and config["detector"]["model"] == "faster_rcnn_r18_fpn_small"


@pytest.mark.parametrize("name", [name for name in PLANS if name.endswith("paper_gpu")])
def test_a_paper_example_sets_only_the_data_and_the_devices(name):
    config = example(name)
    assert set(config) == set(PAPER_KEYS)
    for section, keys in PAPER_KEYS.items():
        assert keys is None or set(config[section]) == keys, section
    assert {config[stage]["device"] for stage in ("detector", "detect", "pretrain", "finetune")} == {"cuda"}


def write_dataset(name: str, root: Path) -> None:
    """The example's dataset, small, under ``root``: a fundus table with quality, or a chest table of the example's
    findings without it (the chest score decides)."""
    dataset = next(iter(example(name)["datasets"].values()))
    if dataset["modality"] == "fundus":
        write_table_dataset(root)
    else:
        write_multilabel_table(root, dataset["findings"])


@pytest.mark.parametrize("name", sorted(PLANS))
def test_an_example_alone_plans_every_stage_on_its_own_data_and_no_demo_dataset(tmp_path, name):
    config = example(name)
    (dataset,) = config["datasets"]
    write_dataset(name, tmp_path / "data")
    # Only the paths: the example's own keys are merged under them, key by key.
    paths = {"datasets": {dataset: {"root": str(tmp_path / "data")}}}
    paths["detector"] = {"annotations": {dataset: {"root": str(tmp_path / "data")}}}
    (tmp_path / "paths.yaml").write_text(yaml.safe_dump(paths))
    command = [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path), "-n"]
    command += ["--configfile", str(EXAMPLES / f"{name}.yaml"), str(tmp_path / "paths.yaml")]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Data to provide" not in output
    jobs = planned_jobs(result.stdout)
    assert "synthesize" not in jobs and jobs["index"] == 1 and jobs["train_detector"] == 1
    assert jobs.get("preprocess", 0) == (config["datasets"][dataset]["modality"] == "fundus")
    assert (jobs["pretrain"], jobs["finetune"]) == PLANS[name]
    assert jobs["tables"] == 1 and f"{config['results']}/{dataset}/original/index.parquet" in output
