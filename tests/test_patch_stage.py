"""The patch stage on hand-made images and detections: Omega, RandC, the summary, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from comcl.detector.detect import DETECTION_COLUMNS
from comcl.errors import DataError
from comcl.io import save_image, write_table
from comcl.patches.stage import check_levels, run_patches
from comcl.patches.store import PatchDataset

PARAMS = dict(size=32, conf=0.5, k=3, merge_iou=0.5, min_fov_coverage=1.0, fov_threshold=15, row_group_bytes=4096, seed=1)
SIZE = (96, 128)  # height, width


def fundus(seed: int) -> np.ndarray:
    """A bright disc (the field of view) of noise on black: every pixel value differs, so crops are traceable."""
    rng = np.random.default_rng(seed)
    image = rng.integers(60, 255, (*SIZE, 3), dtype=np.uint8)
    yy, xx = np.mgrid[: SIZE[0], : SIZE[1]]
    image[(yy - 48) ** 2 + (xx - 64) ** 2 > 46**2] = 0
    return image


@pytest.fixture
def version(tmp_path: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    images = {name: fundus(i) for i, name in enumerate(["lesion", "faint", "healthy", "healthy_lq"])}
    rows = []
    for (name, image), level in zip(images.items(), ["L", "L~", "H", "H~"], strict=True):
        path = tmp_path / f"{name}.png"
        save_image(path, image)
        rows.append({"image_id": name, "path": str(path), "split": "train", "level": level})
    index = tmp_path / "index.parquet"
    write_table(index, pd.DataFrame(rows), {"dataset": "eyeq", "proportion": "original", "format": "eyeq", "task": "grading"})
    found = [
        ("lesion", "train", "L", 2.0, 40.0, 12.0, 50.0, 0.9, "HE"),  # at the left border: window shifted inside
        ("lesion", "train", "L", 4.0, 41.0, 13.0, 51.0, 0.8, "MA"),  # the same place: merged into the first
        ("lesion", "train", "L", 80.0, 20.0, 90.0, 30.0, 0.3, "EX"),  # below conf
        ("faint", "train", "L~", 60.0, 40.0, 70.0, 50.0, 0.2, "HE"),  # the only box is below conf
    ]
    detections = tmp_path / "detections.parquet"
    write_table(detections, pd.DataFrame(found, columns=DETECTION_COLUMNS), {})
    return index, detections, images


def test_lesion_windows_healthy_windows_and_the_summary(version, tmp_path):
    index, detections, images = version
    summary = run_patches(index, detections, PARAMS, tmp_path / "patches.parquet", tmp_path / "patches.json", workers=1)
    store = PatchDataset(tmp_path / "patches.parquet")
    rows = store.index
    lesion = rows[rows["image_id"] == "lesion"]
    assert lesion[["x0", "y0", "x1", "y1"]].values.tolist() == [[0, 29, 32, 61]]
    assert lesion[["label", "score"]].values.tolist() == [["HE", 0.9]]
    assert np.array_equal(store[int(lesion["patch_id"].iloc[0])], images["lesion"][29:61, 0:32])
    for name in ("healthy", "healthy_lq"):
        windows = rows[rows["image_id"] == name]
        assert 1 <= len(windows) <= 3 and windows["label"].isna().all() and windows["score"].isna().all()
        for window in windows.itertuples():
            patch = store[int(window.patch_id)]
            assert np.array_equal(patch, images[name][window.y0 : window.y1, window.x0 : window.x1])
            assert (patch.max(axis=2) > 15).all()  # inside the field of view, never on the black border
    assert summary["lesion_images_without_detection"] == {"count": 1, "images": ["faint"]}
    assert summary["per_split_level"]["train"]["L~"] == {"images": 1, "patches": 0}
    assert json.loads((tmp_path / "patches.json").read_text()) == summary
    assert store.metadata["dataset"] == "eyeq" and store.metadata["params"]["conf"] == 0.5


def test_healthy_windows_do_not_depend_on_the_other_images(version, tmp_path):
    index, detections, _ = version
    run_patches(index, detections, PARAMS, tmp_path / "a.parquet", tmp_path / "a.json", workers=2)
    first = PatchDataset(tmp_path / "a.parquet").index
    frame = pd.read_parquet(index).iloc[[2]]
    write_table(tmp_path / "one.parquet", frame, {"dataset": "eyeq", "proportion": "lq70", "format": "eyeq", "task": "grading"})
    run_patches(tmp_path / "one.parquet", detections, PARAMS, tmp_path / "b.parquet", tmp_path / "b.json", workers=1)
    alone = PatchDataset(tmp_path / "b.parquet").index
    columns = ["x0", "y0", "x1", "y1"]
    assert alone[columns].values.tolist() == first[first["image_id"] == "healthy"][columns].values.tolist()


def test_a_corrupt_image_is_named_and_no_store_is_left(version, tmp_path):
    index, detections, _ = version
    (tmp_path / "healthy.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DataError, match=r"healthy.png: image 'healthy': missing or undecodable"):
        run_patches(index, detections, PARAMS, tmp_path / "patches.parquet", tmp_path / "patches.json", workers=1)
    assert not (tmp_path / "patches.parquet").exists()


def test_an_image_smaller_than_a_patch_is_refused(version, tmp_path):
    index, detections, _ = version
    with pytest.raises(DataError, match=r"image 'lesion': the image is 128 x 96 px and patches are 128 px"):
        run_patches(index, detections, dict(PARAMS, size=128), tmp_path / "p.parquet", tmp_path / "p.json", workers=1)


def test_a_level_without_patches_stops_training_with_what_to_change(version, tmp_path):
    index, detections, _ = version
    run_patches(index, detections, PARAMS, tmp_path / "patches.parquet", tmp_path / "patches.json", workers=1)
    rows = PatchDataset(tmp_path / "patches.parquet").index
    check_levels(rows, ["L", "H", "H~"], tmp_path / "patches.parquet")
    with pytest.raises(DataError, match=r"level L~ has no patches in the train split\n.*lower patches.conf"):
        check_levels(rows, ["L", "L~"], tmp_path / "patches.parquet")
