"""scripts/lesion_scale_sweep.sh: its summary is what its runs' metrics say, and no number in it is typed in."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SWEEP = REPO / "docs" / "evidence" / "lesion_scale_sweep"


def _summarise(folder: Path) -> str:
    env = {**os.environ, "OUT": str(folder), "VENV": sys.prefix}
    subprocess.run(["bash", str(REPO / "scripts" / "lesion_scale_sweep.sh")], check=True, env=env, capture_output=True)
    return (folder / "summary.md").read_text()


def test_the_committed_summary_is_the_scripts_reading_of_the_committed_metrics(tmp_path):
    for file in SWEEP.glob("*.json"):
        shutil.copy(file, tmp_path)
    assert _summarise(tmp_path) == (SWEEP / "summary.md").read_text()


def test_the_summary_gives_mean_and_sample_std_of_each_scale_and_version(tmp_path):
    for seed, kappa in enumerate((0.5, 0.7)):
        for version in ("original", "lq70", "lq100"):
            test = {"kappa": kappa if version == "original" else 0.1, "accuracy": 0.4}
            (tmp_path / f"ls1.5_eyeq_{version}_resnet18_seed{seed}.json").write_text(json.dumps({"test": test}))
    row = _summarise(tmp_path).splitlines()[-1]
    assert row.startswith("| 1.5 | 2 | 0.600 ± 0.141 | 0.400 ± 0.000 | 0.100 ± 0.000 |"), row
