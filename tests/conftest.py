"""Shared fixtures: tiny synthetic datasets (generated once per test session) and the real label files."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from comcl.datasets.chestxray14 import TASK_FINDINGS
from comcl.synth import chestxray14, eyeq, idrid

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("COMCL_SHARED", REPO.parent / "shared"))

TINY_EYEQ = eyeq.EyeQSpec(
    n_train=12,
    n_test=8,
    height=96,
    width=120,
    grade_distribution=[0.3, 0.2, 0.2, 0.15, 0.15],
    low_quality_share={"train": 0.334, "test": 0.5},
    reject_share=0.5,
)
TINY_IDRID = idrid.IDRiDSpec(n_train=3, n_test=2, height=96, width=144)
TINY_CHEST = chestxray14.ChestSpec(
    n_patients=14,
    max_follow_ups=2,
    size=96,
    no_finding_share=0.3,
    max_findings=3,
    finding_weights=dict.fromkeys(TASK_FINDINGS, 1.0),
    test_patient_share=0.3,
    low_quality_share=0.432,
    bbox_share=0.5,
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    data = SHARED / "data"
    if not data.is_dir():
        raise FileNotFoundError(f"{data} not found: clone the project with shared/ beside it, or set COMCL_SHARED")
    return data


@pytest.fixture(scope="session")
def synthetic_eyeq(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("eyeq")
    return root, eyeq.generate(root, TINY_EYEQ, seed=7, workers=1)


@pytest.fixture(scope="session")
def synthetic_idrid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("idrid")
    return root, idrid.generate(root, TINY_IDRID, seed=7, workers=1)


@pytest.fixture(scope="session")
def synthetic_chest(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("chestxray14")
    return root, chestxray14.generate(root, TINY_CHEST, seed=7, workers=1)
