"""The lesion-truth measurement: boxes carried through preprocessing, detections matched, rim drops and purity
counted, on a rendered photograph whose every lesion is known, and the box file's refusals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from comcl.datasets.lesion_boxes import read_lesion_boxes, write_lesion_boxes
from comcl.datasets.preprocess import preprocess_folder
from comcl.detector.detect import DETECTION_COLUMNS
from comcl.errors import DataError
from comcl.io import save_image, write_table
from comcl.patches.stage import run_patches
from comcl.patches.truth import boxes_in_index_frame, holds_lesion, match, run_lesion_truth
from comcl.synth.fundus import render_fundus

PARAMS = dict(
    size=16, conf=0.5, k=2, merge_iou=0.5, min_fov_coverage=0.95, fov_threshold=15, fov_margin=0.08, row_group_bytes=4096, seed=1
)
META = {"dataset": "eyeq", "proportion": "original", "format": "eyeq", "modality": "fundus", "task": "grading"}


def boxes(rows: list[tuple[float, float, float, float]], score: float = 0.9) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["x1", "y1", "x2", "y2"]).assign(score=score)


def test_a_detection_is_true_once_per_lesion_and_by_score():
    truth = boxes([(10, 10, 20, 20), (50, 50, 60, 60)])
    found = boxes([(11, 11, 21, 21), (10, 10, 20, 20), (80, 80, 90, 90), (52, 52, 64, 62)]).assign(score=[0.6, 0.9, 0.8, 0.7])
    # The two on the first lesion: only the higher-scored one is true; the third is on nothing; the fourth overlaps 0.52.
    assert match(found, truth).tolist() == [False, True, False, True]
    assert match(found, truth.iloc[:0]).tolist() == [False] * 4
    assert match(found, truth, threshold=0.6).tolist() == [False, True, False, False]


def test_a_window_holds_a_lesion_when_the_lesion_s_centre_is_in_it():
    windows = pd.DataFrame({"x0": [0, 30], "y0": [0, 30], "x1": [16, 46], "y1": [16, 46]})
    truth = boxes([(10, 10, 20, 20), (46, 30, 50, 34)])  # centres (15, 15) and (48, 32)
    assert holds_lesion(windows, truth).tolist() == [True, False]


@pytest.fixture
def photographed(tmp_path):
    """One rendered 160 x 200 photograph with its lesions, preprocessed to 96 px as the workflow does."""
    rendering = render_fundus(160, 200, {"HE": 4, "EX": 3}, "left", np.random.default_rng(3), lesion_scale=2.0)
    (tmp_path / "raw").mkdir()
    save_image(tmp_path / "raw" / "7_left.png", rendering.image)
    write_lesion_boxes(tmp_path / "boxes.csv", [("7_left.jpeg", lesion.kind, *lesion.box) for lesion in rendering.lesions])
    preprocess_folder([("7_left", tmp_path / "raw" / "7_left.png")], tmp_path / "pre", 96, workers=1, suffix=".png")
    row = {"image_id": "7_left", "path": str(tmp_path / "pre" / "7_left.png"), "split": "train", "level": "L", "width": 96}
    write_table(tmp_path / "index.parquet", pd.DataFrame([row]), META)
    return tmp_path, rendering


def test_boxes_follow_the_preprocessing_crop(photographed):
    tmp_path, _ = photographed
    index = pd.read_parquet(tmp_path / "index.parquet")
    raw = read_lesion_boxes(tmp_path / "boxes.csv")
    moved = boxes_in_index_frame(raw, index, preprocessed=True)
    # The disc (radius ~0.47 of 160 px) fills the 96 px square: about 96 / 150 of a pixel per pixel, shifted by the crop.
    scale = (moved["x2"] - moved["x1"]) / (raw["x2"] - raw["x1"])
    assert scale.between(0.55, 0.7).all()
    assert ((moved[["x1", "y1"]] >= 0).all(axis=None)) and ((moved[["x2", "y2"]] <= 96).all(axis=None))
    assert boxes_in_index_frame(raw, index, preprocessed=False)[["x1", "x2"]].equals(raw[["x1", "x2"]])
    assert boxes_in_index_frame(raw.assign(image_id="elsewhere"), index, preprocessed=True).empty


def test_precision_recall_rim_drops_and_purity(photographed):
    tmp_path, rendering = photographed
    index = pd.read_parquet(tmp_path / "index.parquet")
    truth = boxes_in_index_frame(read_lesion_boxes(tmp_path / "boxes.csv"), index, preprocessed=True)
    found = [("7_left", "train", "L", b.x1, b.y1, b.x2, b.y2, 0.9, "HE") for b in truth.iloc[:3].itertuples()]
    found.append(("7_left", "train", "L", 0.0, 44.0, 5.0, 50.0, 0.8, "HE"))  # the rim: dropped, not a lesion
    found.append(("7_left", "train", "L", 44.0, 44.0, 50.0, 50.0, 0.7, "EX"))  # near the centre, on nothing
    found.append(("7_left", "train", "L", 30.0, 30.0, 36.0, 36.0, 0.3, "EX"))  # below conf
    write_table(tmp_path / "detections.parquet", pd.DataFrame(found, columns=DETECTION_COLUMNS), {})
    run_patches(
        tmp_path / "index.parquet", tmp_path / "detections.parquet", PARAMS, 96, tmp_path / "p.parquet", tmp_path / "p.json", 1
    )
    args = (tmp_path / "index.parquet", tmp_path / "index.parquet", tmp_path / "detections.parquet", tmp_path / "p.parquet")
    result = run_lesion_truth(*args, tmp_path / "boxes.csv", True, PARAMS, 96, tmp_path / "truth.json")
    cell = result["per_split_level"]["train"]["L"]
    assert cell["lesions"] == len(rendering.lesions) == 7 and cell["detections"] == 5 and cell["true_detections"] == 3
    assert cell["precision"] == pytest.approx(3 / 5) and cell["recall"] == pytest.approx(3 / 7)
    assert cell["rim_dropped"] == 1 and cell["rim_dropped_true"] == 0
    windows = pd.read_parquet(tmp_path / "p.parquet")
    assert cell["patches"] == len(windows) and cell["patches_with_lesion"] <= cell["patches"]
    assert cell["purity"] == pytest.approx(cell["patches_with_lesion"] / cell["patches"]) and cell["patches_with_lesion"] >= 3 - 1
    assert result["per_split_level"]["all"]["L"] == cell
    assert json.loads((tmp_path / "truth.json").read_text()) == result


def test_a_preprocessed_image_without_its_crop_is_refused(photographed):
    tmp_path, _ = photographed
    index = pd.read_parquet(tmp_path / "index.parquet")
    save_image(tmp_path / "pre" / "7_left.png", np.zeros((96, 96, 3), np.uint8))  # written by something else
    with pytest.raises(DataError, match="without the field of view it was cut around"):
        boxes_in_index_frame(read_lesion_boxes(tmp_path / "boxes.csv"), index, preprocessed=True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("image,label,x,y\n", "unexpected header"),
        ("image,label,x,y,w,h\na.png,HE,1,2,3\n", "expected 6 fields"),
        ("image,label,x,y,w,h\na.png,HE,1,2,three,4\n", "not four numbers"),
        ("image,label,x,y,w,h\na.png,HE,1,2,nan,4\n", "NaN or infinite"),
        ("image,label,x,y,w,h\na.png,HE,1,2,0,4\n", "no area"),
    ],
)
def test_a_bad_box_file_is_named_with_its_line(tmp_path, text, message):
    (tmp_path / "boxes.csv").write_text(text)
    with pytest.raises(DataError, match=message) as caught:
        read_lesion_boxes(tmp_path / "boxes.csv")
    assert "boxes.csv" in str(caught.value)
    with pytest.raises(DataError, match="lesion box file not found"):
        read_lesion_boxes(tmp_path / "missing.csv")
