"""benchmarks/gpu_check.sh in its tiny CPU mode: it runs with the Python it is given, and prints its three
parts, each with its figures and its ratio against a target."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import torch

from tests.conftest import REPO

RATIO = r"(\d+\.\d+) \(target >= [\d.]+: (PASS|FAIL)\)"


def test_gpu_check_runs_tiny_on_cpu():
    result = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--quick", "--threads", "1"],
        env={**os.environ, "PYTHON": sys.executable},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert re.search(rf"torch {re.escape(torch.__version__)}, CUDA ", out)
    assert "1-minute load average:" in out
    parts = {
        "1. Pretraining step: CoMCL": r"CoMCL / bare, img/s at the same batch: ",
        "2. Fine-tuning step at 64 px": r"fine-tuning / bare, img/s at the same batch: ",
        "3. Patch-store loader": r"loader / consumption, patches/s: ",
    }
    for heading, ratio in parts.items():
        assert heading in out, out
        assert re.search(ratio + RATIO, out), out
    # The figures behind the ratios: both steps of each part, and the loader against the step it feeds.
    rows = (
        r"CoMCL, 4 x 8, 3 pairs, SPL +32 +16 +32 ",
        r"bare resnet18, batch 32 +32 +32 +0 ",
        r"fine-tuning, resnet18, batch 4 +4 ",
        r"bare resnet18, batch 4 +4 ",
        r"loader delivers +\d",
        r"CoMCL step \(part 1\) consumes +\d",
    )
    for row in rows:
        assert re.search(row, out), out
