"""The degradation stage reaches its target proportions exactly, reproducibly, and only by degrading."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from comcl.degrade.stage import degrade_index, proportion_name, run_degrade, select
from comcl.errors import DataError
from comcl.index.build import build_index, run_index
from comcl.io import read_table
from tests.test_index import CHEST_FILES, EYEQ_LABELS_ONLY, VALIDATION


@pytest.fixture(scope="module")
def eyeq_index(synthetic_eyeq):
    root, _ = synthetic_eyeq
    return build_index({**EYEQ_LABELS_ONLY, "root": str(root)}, check="header", workers=1, **VALIDATION)


@pytest.fixture(scope="module")
def chest_index(synthetic_chest):
    root, _ = synthetic_chest
    return build_index({**CHEST_FILES, "root": str(root)}, check="header", workers=1, **VALIDATION)


def degrade(index, tmp_path, target, degrade_test=True, seed=3):
    frame, meta = index
    return degrade_index(frame, meta, target, degrade_test, seed, tmp_path, tmp_path / "index.parquet", workers=1)


@pytest.mark.parametrize("target", [0.7, 1.0])
@pytest.mark.parametrize("fixture", ["eyeq_index", "chest_index"])
def test_targets_are_reached_exactly_and_labels_kept(fixture, target, request, tmp_path):
    index = request.getfixturevalue(fixture)
    original = index[0]
    degraded = degrade(index, tmp_path, target)
    assert set(degraded["split"]) == {"train", "val", "test"}
    for split, part in degraded.groupby("split"):
        assert (part["quality"] == "low").sum() == round(target * len(part))
    changed = degraded["degraded"]
    assert changed.any() and (original.loc[changed, "quality"] == "high").all()
    labels = [c for c in original.columns if c in ("dr_grade", "Mass", "Nodule", "Effusion")]
    assert degraded[labels].equals(original[labels])
    moved = original.loc[changed, "level"].map({"L": "L~", "H": "H~"})
    assert (degraded.loc[changed, "level"] == moved).all()
    untouched = degraded[~changed]
    assert (untouched["path"] == original.loc[~changed, "path"]).all(), "images not degraded are referenced, not copied"
    assert len(list(tmp_path.iterdir())) == changed.sum()
    params = json.loads(degraded.loc[changed].iloc[0]["degradation"])
    assert "type" in params


def test_test_split_can_be_left_alone_and_validation_is_degraded_as_training(eyeq_index, tmp_path):
    degraded = degrade(eyeq_index, tmp_path, 1.0, degrade_test=False)
    test = degraded[degraded["split"] == "test"]
    assert not test["degraded"].any()
    assert (degraded.loc[degraded["split"].isin(["train", "val"]), "quality"] == "low").all()
    assert degraded.loc[degraded["split"] == "val", "degraded"].any()


def test_higher_proportions_extend_lower_ones_with_the_same_degradations(eyeq_index, tmp_path):
    low = degrade(eyeq_index, tmp_path / "70", 0.7)
    high = degrade(eyeq_index, tmp_path / "100", 1.0)
    shared = low["degraded"]
    assert (high.loc[shared, "degraded"]).all()
    assert (low.loc[shared, "degradation"] == high.loc[shared, "degradation"]).all()
    for row in low.index[shared]:
        assert (tmp_path / "70" / low.at[row, "path"].rsplit("/", 1)[1]).read_bytes() == (
            tmp_path / "100" / high.at[row, "path"].rsplit("/", 1)[1]
        ).read_bytes()


def test_seed_changes_the_choice(eyeq_index):
    frame = eyeq_index[0]
    assert set(select(frame, 0.7, ["train"], 1)) != set(select(frame, 0.7, ["train"], 2))


def test_a_target_below_the_current_share_does_nothing(eyeq_index, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        degraded = degrade(eyeq_index, tmp_path, 0.1)
    assert not degraded["degraded"].any()
    assert "nothing to degrade" in caplog.text


def test_an_impossible_target_is_refused(eyeq_index):
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        select(eyeq_index[0], 1.2, ["train"], 1)


def test_an_unreadable_image_is_named(eyeq_index, tmp_path):
    frame, meta = eyeq_index
    frame = frame.copy()
    bad = tmp_path / "broken.jpeg"
    bad.write_bytes(b"not an image")
    frame.loc[frame["quality"] == "high", "path"] = str(bad)
    with pytest.raises(DataError, match="broken.jpeg") as caught:
        degrade_index(frame, meta, 1.0, True, 1, tmp_path / "out", tmp_path / "index.parquet", workers=1)
    assert "What to do" in str(caught.value)


def test_run_degrade_writes_a_complete_stage_output(synthetic_eyeq, tmp_path):
    root, _ = synthetic_eyeq
    run_index(
        "eyeq",
        {**EYEQ_LABELS_ONLY, "root": str(root)},
        "header",
        1,
        **VALIDATION,
        table=tmp_path / "index.parquet",
        summary=tmp_path / "s.json",
    )
    out = tmp_path / proportion_name(0.7)
    run_degrade(tmp_path / "index.parquet", 0.7, True, 5, out / "index.parquet", out / "images", out / "summary.json", 1)
    frame, meta = read_table(out / "index.parquet")
    assert meta["proportion"] == "lq70" and meta["target_low_quality_share"] == 0.7
    assert all(Path(p).is_file() for p in frame["path"])
    summary = json.loads((out / "summary.json").read_text())
    for split in ("train", "val", "test"):
        n = summary["splits"][split]["images"]
        assert summary["splits"][split]["low_quality_share"] >= round(0.7 * n) / n - 1e-4
    assert not list(out.glob(".*part*"))
