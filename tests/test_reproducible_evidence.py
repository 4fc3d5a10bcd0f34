"""One fine-tuning of the evidence configuration, at its own sizes (720 photographs, 80 px, six epochs), run twice on
this machine: with --cores 1, then forced again with --cores 2 while another process keeps a core busy. Its paired
statistics assume that a seed names a run, so the two must be the same bytes."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.tiny_workflow import SNAKEMAKE

REPO = Path(__file__).resolve().parent.parent
RUN = "ev/eyeq/original/finetune/resnet18/seed0"


def _burn(seconds: float) -> None:
    """Keep one core busy: the other job a shared machine runs beside."""
    import time

    end = time.monotonic() + seconds
    value = 0
    while time.monotonic() < end:
        value = (value * 31 + 7) % 1_000_003


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.workflow
def test_an_evidence_fine_tuning_gives_the_same_bytes_at_other_cores_and_beside_other_load(tmp_path):
    overlay = {
        "results": "ev",
        "datasets": {"eyeq": {"root": "ev/synthetic/eyeq"}},
        "detector": {"annotations": {"eyeq": {"root": "ev/synthetic/idrid"}}},
    }
    (tmp_path / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    command = [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path)]
    configs = ["--configfile", str(REPO / "config/evidence.yaml"), str(tmp_path / "overlay.yaml")]

    def run(cores: str, *extra: str) -> None:
        result = subprocess.run(
            [*command, "--cores", cores, f"{RUN}/metrics.json", *extra, *configs], capture_output=True, text=True, cwd=tmp_path
        )
        assert result.returncode == 0, result.stdout + result.stderr

    run("1")
    files = ("metrics.json", "predictions.parquet", "training_log.csv")
    first = {name: _digest(tmp_path / RUN / name) for name in files}
    burner = multiprocessing.get_context("spawn").Process(target=_burn, args=(600.0,), daemon=True)
    burner.start()
    try:
        run("2", "--forcerun", "finetune")
    finally:
        burner.terminate()
    assert {name: _digest(tmp_path / RUN / name) for name in files} == first
    metrics = json.loads((tmp_path / RUN / "metrics.json").read_text())
    assert metrics["history"] and metrics["test"]
