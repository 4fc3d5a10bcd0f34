"""The tiny configuration of the workflow tests and the Snakemake calls they share."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import yaml
from snakemake.utils import update_config, validate

SNAKEFILE = Path(__file__).resolve().parent.parent / "Snakefile"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
DEMO = SNAKEFILE.parent / "config" / "config.yaml"
SCHEMA = SNAKEFILE.parent / "workflow" / "schemas" / "config.schema.yaml"
TINY = {
    "results": "out",
    "threads": 2,  # every PyTorch job's, whatever --cores: a rerun with other cores gives the same bytes
    "synthetic": {
        "datasets": ["eyeq", "idrid", "chestxray14"],
        "eyeq": {"n_train": 8, "n_test": 6, "height": 96, "width": 120},
        "idrid": {"n_train": 2, "n_test": 2, "height": 96, "width": 144},
        # Half the abnormal images boxed: the boxed test images leave the test split, the others keep it diseased.
        "chestxray14": {"n_patients": 12, "size": 96, "bbox_share": 0.5},
    },
    "datasets": {
        "eyeq": {"format": "eyeq", "root": "out/synthetic/eyeq"},
        "chestxray14": {"format": "chestxray14", "root": "out/synthetic/chestxray14"},
    },
    "preprocess": {"size": 96},
    # One of the 4 EyeQ training patients to validation: with this seed, one whose eyes leave the train split every level.
    "index": {"val_share": 0.25, "seed": 10},
    "detector": {
        "annotations": {"eyeq": {"format": "idrid", "root": "out/synthetic/idrid"}},
        "model": "faster_rcnn_r18_fpn_small",
        "scale": [144, 96],
        "iterations": 4,
        "batch_size": 2,
        "warmup_iterations": 2,
        "checkpoint_interval": 2,
        "workers": 0,
        "pretrained": None,
    },
    "detect": {"workers": 0},
    "patches": {"size": 16, "conf": 0.05, "k": 2},  # of the images at finetune.input_size
    "pretrain": {
        "runs": [{"variants": ["basic_cl", "comcl"], "versions": ["original"]}],
        "arch": "resnet18",
        "dim": 8,
        "hidden": 16,
        "queue_size": 2,  # the tiny detector finds a handful of low-quality lesions
        "batch_size": 2,
        "epochs": 1,
        "view_size": 40,  # above a ResNet's stride of 32: its last stage sees a 2x2 map
        "image_view_size": 48,
        "workers": 0,
    },
    "finetune": {"baselines": [], "seeds": [0], "input_size": 64, "epochs": 1, "batch_size": 4, "workers": 0},
    "figures": {"tsne": {"per_level": 8}, "gradcam": {"images": 2}},
}


def over_the_demo(*files: Path) -> list[str]:
    """``--configfile`` for the demo's configuration with ``files`` merged over it, key by key: files given alone
    would start from the schema's defaults (the paper's sizes)."""
    return ["--configfile", str(DEMO), *map(str, files)]


def snakemake(workdir: Path, *args: str) -> str:
    command = [
        *SNAKEMAKE,
        "--snakefile",
        str(SNAKEFILE),
        "--directory",
        str(workdir),
        "--cores",
        "2",
        *over_the_demo(workdir / "tiny.yaml"),
        *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=workdir)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def planned_jobs(output: str) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a dry run."""
    if "Nothing to be done" in output:
        return {}
    table = output.split("Job stats:")[1].split("total")[0]
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)\s*$", table, flags=re.MULTILINE)}


def planned_wildcards(output: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of each job a dry run lists: which dataset, version or variant a change reruns."""
    parts = re.split(r"^(?:local)?rule (\w+):$", output, flags=re.MULTILINE)
    jobs = []
    for rule, block in zip(parts[1::2], parts[2::2], strict=True):
        line = re.search(r"^\s+wildcards: (.+)$", block, flags=re.MULTILINE)
        jobs.append((rule, dict(pair.split("=", 1) for pair in line[1].split(", ")) if line else {}))
    return jobs


def resolved(overlay: dict, base: Path = DEMO) -> dict:
    """The configuration the workflow makes of ``overlay`` given over ``base`` (the demo's): merged key by key, the
    schema's defaults filled in; what the tests count the expected jobs from."""
    config = yaml.safe_load(base.read_text())
    update_config(config, copy.deepcopy(overlay))
    validate(config, str(SCHEMA))
    return config
