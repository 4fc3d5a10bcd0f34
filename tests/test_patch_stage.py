"""The patch stage on hand-made images and detections: Omega, RandC, the fine-tuning scale, the summary, and bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from comcl.detector.detect import DETECTION_COLUMNS
from comcl.errors import DataError
from comcl.images import resize_square
from comcl.io import save_image, write_table
from comcl.patches.stage import run_patches
from comcl.patches.store import PatchDataset

# No rim guard here (fov_margin 0): these tests cut windows at the image border; the guard has its own.
PARAMS = dict(
    size=32, conf=0.5, k=3, merge_iou=0.5, min_fov_coverage=1.0, fov_threshold=15, fov_margin=0.0, row_group_bytes=4096, seed=1
)
SIZE = (128, 128)  # height, width: the fine-tuning size of these tests, so that windows are in the images' own pixels
META = {"dataset": "eyeq", "proportion": "original", "format": "eyeq", "modality": "fundus", "task": "grading"}


def fundus(seed: int) -> np.ndarray:
    """A bright disc (the field of view) of noise on black: every pixel value differs, so crops are traceable."""
    rng = np.random.default_rng(seed)
    image = rng.integers(60, 255, (*SIZE, 3), dtype=np.uint8)
    yy, xx = np.mgrid[: SIZE[0], : SIZE[1]]
    image[(yy - 64) ** 2 + (xx - 64) ** 2 > 62**2] = 0
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
    write_table(index, pd.DataFrame(rows), META)
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
    summary = run_patches(index, detections, PARAMS, 128, tmp_path / "patches.parquet", tmp_path / "patches.json", workers=1)
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
    assert summary["per_split_level"]["train"]["L~"] == {"images": 1, "patches": 0, "rim_detections_dropped": 0}
    assert json.loads((tmp_path / "patches.json").read_text()) == summary
    assert store.metadata["dataset"] == "eyeq" and store.metadata["params"]["conf"] == 0.5
    assert store.metadata["input_size"] == summary["input_size"] == 128


def test_detections_on_the_rim_of_the_field_of_view_are_dropped_and_counted(version, tmp_path):
    """The disc of the test images has radius 62 around (64, 64): a margin of 0.08 drops boxes centred beyond ~57 px."""
    index, _, _ = version
    found = [
        ("lesion", "train", "L", 2.0, 40.0, 12.0, 50.0, 0.9, "HE"),  # centre 60 px from the disc's centre: on the rim
        ("lesion", "train", "L", 110.0, 110.0, 126.0, 126.0, 0.9, "HE"),  # on the black corner
        ("lesion", "train", "L", 60.0, 60.0, 70.0, 70.0, 0.7, "EX"),  # at the centre: kept
        ("faint", "train", "L~", 60.0, 0.0, 70.0, 6.0, 0.9, "HE"),  # top rim
    ]
    detections = tmp_path / "rim.parquet"
    write_table(detections, pd.DataFrame(found, columns=DETECTION_COLUMNS), {})
    params = PARAMS | {"fov_margin": 0.08}
    summary = run_patches(index, detections, params, 128, tmp_path / "patches.parquet", tmp_path / "patches.json", workers=1)
    lesion = PatchDataset(tmp_path / "patches.parquet").index.query("level in ['L', 'L~']")
    assert lesion[["image_id", "label", "score"]].values.tolist() == [["lesion", "EX", 0.7]]
    assert summary["per_split_level"]["train"]["L"]["rim_detections_dropped"] == 2
    assert summary["per_split_level"]["train"]["L~"]["rim_detections_dropped"] == 1
    assert summary["rim_detections_dropped"] == 3 and summary["lesion_images_without_detection"]["images"] == ["faint"]


def test_healthy_windows_do_not_depend_on_the_other_images(version, tmp_path):
    index, detections, _ = version
    run_patches(index, detections, PARAMS, 128, tmp_path / "a.parquet", tmp_path / "a.json", workers=2)
    first = PatchDataset(tmp_path / "a.parquet").index
    frame = pd.read_parquet(index).iloc[[2]]
    write_table(tmp_path / "one.parquet", frame, META | {"proportion": "lq70"})
    run_patches(tmp_path / "one.parquet", detections, PARAMS, 128, tmp_path / "b.parquet", tmp_path / "b.json", workers=1)
    alone = PatchDataset(tmp_path / "b.parquet").index
    columns = ["x0", "y0", "x1", "y1"]
    assert alone[columns].values.tolist() == first[first["image_id"] == "healthy"][columns].values.tolist()


def test_a_corrupt_image_is_named_and_no_store_is_left(version, tmp_path):
    index, detections, _ = version
    (tmp_path / "healthy.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DataError, match=r"healthy.png: image 'healthy': missing or undecodable"):
        run_patches(index, detections, PARAMS, 128, tmp_path / "patches.parquet", tmp_path / "patches.json", workers=1)
    assert not (tmp_path / "patches.parquet").exists()


def test_patches_larger_than_the_fine_tuning_images_are_refused(version, tmp_path):
    index, detections, _ = version
    with pytest.raises(ValueError, match=r"patches of 32 px cannot be cut from images resized to 24 px"):
        run_patches(index, detections, PARAMS, 24, tmp_path / "p.parquet", tmp_path / "p.json", workers=1)
    assert not (tmp_path / "p.parquet").exists()


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A 200 x 100 px lesion image of bright noise with two dark lesions: 24 x 12 px at (96, 40) and 80 x 40 px at (0, 50).

    Fine-tuning at 50 px scales x by 1/4 and y by 1/2: the lesions become 6 x 6 px at (24, 20) and 20 x 20 px at (0, 25).
    """
    image = np.random.default_rng(5).integers(150, 256, (100, 200, 3), dtype=np.uint8)
    image[40:52, 96:120] = 20
    image[50:90, 0:80] = 20
    image[50:54, 0:8] = 255  # a mark in the large lesion's corner: a centre cut would miss it
    save_image(tmp_path / "planted.png", image)
    row = {"image_id": "planted", "path": str(tmp_path / "planted.png"), "split": "train", "level": "L"}
    write_table(tmp_path / "index.parquet", pd.DataFrame([row]), META)
    return tmp_path / "index.parquet", image


def _detections(tmp_path: Path, *boxes: tuple[float, float, float, float]) -> Path:
    rows = [("planted", "train", "L", *box, 0.9 - 0.1 * i, "HE") for i, box in enumerate(boxes)]
    write_table(tmp_path / "detections.parquet", pd.DataFrame(rows, columns=DETECTION_COLUMNS), {})
    return tmp_path / "detections.parquet"


def _one_patch(index: Path, tmp_path: Path, box: tuple[float, float, float, float]) -> tuple[PatchDataset, Any, dict]:
    """The store of 12 px patches cut at a 50 px fine-tuning scale from one detection, its one row, the summary."""
    detections = _detections(tmp_path, box)
    summary = run_patches(index, detections, dict(PARAMS, size=12), 50, tmp_path / "p.parquet", tmp_path / "p.json", workers=1)
    store = PatchDataset(tmp_path / "p.parquet")
    (row,) = store.index.itertuples()
    return store, row, summary


def test_patches_are_cut_at_the_fine_tuning_scale(planted, tmp_path):
    index, image = planted
    store, row, summary = _one_patch(index, tmp_path, (96.0, 40.0, 120.0, 52.0))
    assert (row.box_x1, row.box_y1, row.box_x2, row.box_y2) == (24.0, 20.0, 30.0, 26.0)  # the box in the fine-tuning frame
    assert (row.x0, row.y0, row.x1, row.y1) == (21, 17, 33, 29) and not row.box_exceeds_patch
    patch = store[0]
    assert np.array_equal(patch, resize_square(image, 50)[17:29, 21:33])
    # The lesion is 6 x 6 px in its 12 px patch, as in the 50 px image fine-tuning sees: not 24 x 12 px.
    assert (patch[3:9, 3:9] == 20).all()
    assert (np.delete(np.delete(patch, range(3, 9), axis=0), range(3, 9), axis=1) > 100).all()
    assert store.metadata["input_size"] == summary["input_size"] == 50


def test_a_box_larger_than_a_patch_is_resized_into_it_not_cut_to_its_centre(planted, tmp_path):
    index, image = planted
    store, row, summary = _one_patch(index, tmp_path, (0.0, 50.0, 80.0, 90.0))
    assert (row.x0, row.y0, row.x1, row.y1) == (0, 25, 20, 45) and row.box_exceeds_patch
    patch = store[0]
    resized = resize_square(image, 50)
    assert np.array_equal(patch, resize_square(resized[25:45, 0:20], 12))
    assert not np.array_equal(patch, resized[29:41, 4:16]), "not the centre of the box"
    assert patch[0, 0].min() > 100 and patch[6, 6].max() == 20  # the corner mark and the middle of the lesion
    assert summary["box_exceeds_patch"] == 1
