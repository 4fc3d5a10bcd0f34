"""The indexing stage on the real label files and on the synthetic datasets: levels, the patient-wise
validation split, and the boxed chest images that leave the test split."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from comcl.datasets import chestxray14 as nih
from comcl.datasets.chestxray14 import TASK_FINDINGS
from comcl.images import check_images
from comcl.index.build import assign_levels, build_index, run_index, summarize
from comcl.io import read_table

EYEQ_LABELS_ONLY = {
    "format": "eyeq",
    "modality": "fundus",
    "labels": {"train": "Label_EyeQ_train.csv", "test": "Label_EyeQ_test.csv"},
    "images": {"train": "train", "test": "test"},
}
CHEST_FILES = {
    "format": "chestxray14",
    "modality": "chest",
    "data_entry": "Data_Entry_2017.csv",
    "bbox_list": "BBox_List_2017.csv",
    "split_lists": {"train": "train_val_list.txt", "test": "test_list.txt"},
    "images": "images",
    "quality_csv": None,
    "low_quality_share": 0.432,
    "other_findings": "negative",
}
# The validation split of the tests: a quarter of the training patients.
VALIDATION = {"val_share": 0.25, "seed": 0}


def test_levels_follow_lesion_and_quality():
    lesion = pd.Series([True, True, False, False])
    low = pd.Series([False, True, False, True])
    assert assign_levels(lesion, low).tolist() == ["L", "L~", "H", "H~"]


def test_real_eyeq_labels_reproduce_the_published_counts(shared_data):
    frame, meta = build_index({**EYEQ_LABELS_ONLY, "root": str(shared_data / "eyeq")}, "none", 1, val_share=0.1, seed=0)
    frame = frame.replace({"split": {"val": "train"}})  # the published counts are of the official splits
    summary = summarize(frame, meta)
    train, test = summary["splits"]["train"], summary["splits"]["test"]
    # EyeQ (Fu et al. 2019): train 12,543 = 8,347 Good + 1,876 Usable + 2,320 Reject; test 16,249 =
    # 8,471 + 4,558 + 3,220. CoMCL: 33.4 % low quality in the original training set.
    assert (train["images"], test["images"]) == (12543, 16249)
    assert frame.groupby("split")["eyeq_quality"].value_counts().to_dict() == {
        ("test", 0): 8471,
        ("test", 1): 4558,
        ("test", 2): 3220,
        ("train", 0): 8347,
        ("train", 1): 1876,
        ("train", 2): 2320,
    }
    assert train["low_quality_share"] == pytest.approx(0.334, abs=0.001)
    assert sum(train["levels"].values()) == 12543
    assert train["levels"]["L"] + train["levels"]["L~"] == 12543 - train["labels"]["0"]
    assert train["levels"]["L~"] + train["levels"]["H~"] == 1876 + 2320
    assert frame["path"].iloc[0].endswith("train/10009_left.jpeg")
    assert frame["width"].isna().all(), "labels-only mode reads no image"


def test_the_validation_split_takes_whole_patients_of_the_real_eyeq_train_split(shared_data):
    frame, meta = build_index({**EYEQ_LABELS_ONLY, "root": str(shared_data / "eyeq")}, "none", 1, val_share=0.1, seed=0)
    official = frame["split"].replace({"val": "train"})
    assert (frame.loc[official == "test", "split"] == "test").all(), "validation comes from the train split only"
    train_patients = frame.loc[official == "train", "patient_id"].nunique()
    sides = frame[official == "train"].groupby("patient_id")["split"].nunique()
    assert (sides == 1).all(), "both eyes of a patient on one side"
    assert frame.loc[frame["split"] == "val", "patient_id"].nunique() == round(0.1 * train_patients)
    assert frame["image_id"].str.replace(r"_(left|right)$", "", regex=True).equals(frame["patient_id"])
    assert (meta["val_share"], meta["val_seed"]) == (0.1, 0)
    summary = summarize(frame, meta)
    assert summary["splits"]["val"]["patients"] == round(0.1 * train_patients)
    assert sum(summary["splits"][split]["images"] for split in ("train", "val")) == 12543


def test_the_validation_split_does_not_depend_on_row_order_and_follows_the_seed(shared_data, tmp_path):
    labels = pd.read_csv(shared_data / "eyeq" / "Label_EyeQ_train.csv", index_col=0)
    labels.sample(frac=1, random_state=1).reset_index(drop=True).to_csv(tmp_path / "Label_EyeQ_train.csv")
    shutil.copy(shared_data / "eyeq" / "Label_EyeQ_test.csv", tmp_path)

    def validation(root, seed):
        frame, _ = build_index({**EYEQ_LABELS_ONLY, "root": str(root)}, check="none", workers=1, val_share=0.1, seed=seed)
        return set(frame.loc[frame["split"] == "val", "image_id"])

    assert validation(tmp_path, 0) == validation(shared_data / "eyeq", 0)
    assert validation(tmp_path, 1) != validation(tmp_path, 0)


def test_exists_mode_checks_files_without_reading_them(synthetic_eyeq):
    root, truth = synthetic_eyeq
    frame, _ = build_index({**EYEQ_LABELS_ONLY, "root": str(root)}, check="exists", workers=1, **VALIDATION)
    assert len(frame) == len(truth) and frame["width"].isna().all()


def test_the_header_check_allows_bytes_after_the_end_marker(synthetic_eyeq, tmp_path):
    """Some writers pad a file after its end marker: only a missing marker means the file was cut short."""
    padded = tmp_path / "padded.jpeg"
    padded.write_bytes(next((synthetic_eyeq[0] / "train").iterdir()).read_bytes() + bytes(500))
    frame = check_images(pd.DataFrame({"path": [str(padded)], "line": [2]}), "header", tmp_path / "labels.csv", workers=1)
    assert (frame["width"].iloc[0], frame["height"].iloc[0]) == (120, 96)


def test_synthetic_eyeq_index_matches_the_generator(synthetic_eyeq):
    root, truth = synthetic_eyeq
    frame, meta = build_index({**EYEQ_LABELS_ONLY, "root": str(root)}, check="decode", workers=1, **VALIDATION)
    assert meta["task"] == "grading" and meta["label_columns"] == ["dr_grade"]
    merged = frame.merge(truth, left_on=frame["image_id"] + ".jpeg", right_on="image")
    assert len(merged) == len(truth)
    assert (merged["dr_grade"] == merged["DR_grade"]).all()
    assert ((merged["quality_x"] == "low") == (merged["quality_y"] > 0)).all()
    assert (frame["width"] == 120).all() and (frame["height"] == 96).all()
    assert not frame["degraded"].any()


def test_real_chest_data_entry_indexes_with_a_quality_file(shared_data, tmp_path):
    entry = pd.read_csv(shared_data / "chestxray14" / "Data_Entry_2017_v2020_subset.csv", dtype=str)
    names = entry["Image Index"].tolist()
    shutil.copy(shared_data / "chestxray14" / "Data_Entry_2017_v2020_subset.csv", tmp_path / "Data_Entry_2017.csv")
    shutil.copy(shared_data / "chestxray14" / "BBox_List_2017_subset.csv", tmp_path / "BBox_List_2017.csv")
    (tmp_path / "train_val_list.txt").write_text("\n".join(names[:12]) + "\n")
    (tmp_path / "test_list.txt").write_text("\n".join(names[12:]) + "\n")
    pd.DataFrame({"Image Index": names, "quality": ["high", "low"] * 8}).to_csv(tmp_path / "quality.csv", index=False)
    section = {**CHEST_FILES, "root": str(tmp_path), "quality_csv": "quality.csv"}
    frame, meta = build_index(section, check="none", workers=1, **VALIDATION)
    assert meta["boxes"] == 5 and meta["task"] == "multilabel" and meta["quality_source"] == "labels"
    # Two of the four test images (00013911_000, 00022084_000) are in the box list: they leave the test split.
    assert meta["boxed_test_images_removed"] == 2
    assert len(frame) == 14 and frame["split"].value_counts().to_dict() == {"train": 9, "val": 3, "test": 2}
    counts = frame[list(TASK_FINDINGS)].sum().to_dict()
    assert counts == {
        "Atelectasis": 1,
        "Cardiomegaly": 2,
        "Effusion": 1,
        "Infiltration": 1,
        "Mass": 1,
        "Nodule": 1,
        "Pneumonia": 1,
        "Pneumothorax": 1,
    }
    emphysema = frame.set_index("image_id").loc["00000353_000"]
    assert not emphysema["lesion"] and emphysema["level"] == "H"
    excluded, _ = build_index(
        {**CHEST_FILES, "root": str(tmp_path), "quality_csv": "quality.csv", "other_findings": "exclude"},
        check="none",
        workers=1,
        **VALIDATION,
    )
    assert "00000353_000" not in set(excluded["image_id"]) and len(excluded) == 13


def test_boxed_test_images_leave_the_chest_index_and_are_counted(synthetic_chest, tmp_path):
    root, truth = synthetic_chest
    boxed = set(nih.read_bbox_list(root / nih.BBOX_FILE)["image"].str.removesuffix(".png"))
    official = truth.assign(image_id=truth["image"].str.removesuffix(".png")).set_index("image_id")["split"]
    boxed_test = {image for image in boxed if official[image] == "test"}
    assert boxed_test and boxed - boxed_test, "the tiny set has boxed images in both official splits"
    run_index(
        "chestxray14",
        {**CHEST_FILES, "root": str(root)},
        "header",
        1,
        **VALIDATION,
        table=tmp_path / "index.parquet",
        summary=tmp_path / "summary.json",
    )
    frame, meta = read_table(tmp_path / "index.parquet")
    assert not boxed_test & set(frame["image_id"])
    assert boxed - boxed_test <= set(frame["image_id"]), "boxed training images stay (in train or val)"
    assert len(frame) == len(truth) - len(boxed_test)
    assert (frame.loc[frame["split"] == "test", "image_id"].map(official) == "test").all()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert meta["boxed_test_images_removed"] == summary["boxed_test_images_removed"] == len(boxed_test)
    assert summary["quality_source"] == "chest radiograph score (comcl.index.quality)"  # no quality_csv
    assert summary["splits"]["test"]["images"] == (official == "test").sum() - len(boxed_test)
    assert frame.loc[frame["split"] == "test", "lesion"].any(), "diseased test images remain"


def test_chest_quality_score_finds_the_degraded_images(synthetic_chest):
    root, truth = synthetic_chest
    frame, _ = build_index({**CHEST_FILES, "root": str(root)}, check="header", workers=1, **VALIDATION)
    merged = frame.merge(truth, left_on=frame["image_id"] + ".png", right_on="image", suffixes=("", "_truth"))
    degraded = merged["degradation_truth"].notna().to_numpy()
    assert (merged["quality"] == "low").sum() == round(0.432 * len(frame))
    # Rank-based AUROC of the score separating degraded from clean images.
    ranks = merged["quality_score"].rank().to_numpy()
    n_pos, n_neg = (~degraded).sum(), degraded.sum()
    auroc = (ranks[~degraded].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    assert auroc > 0.8
    lesion = merged[list(TASK_FINDINGS)].any(axis=1)
    assert (lesion == merged["lesions"].map(len).gt(0)).all()


def test_run_index_writes_the_table_and_summary(synthetic_eyeq, tmp_path):
    root, _truth = synthetic_eyeq
    run_index(
        "eyeq",
        {**EYEQ_LABELS_ONLY, "root": str(root)},
        "header",
        1,
        **VALIDATION,
        table=tmp_path / "index.parquet",
        summary=tmp_path / "summary.json",
    )
    frame, meta = read_table(tmp_path / "index.parquet")
    assert meta == {
        "dataset": "eyeq",
        "proportion": "original",
        "format": "eyeq",
        "modality": "fundus",
        "task": "grading",
        "label_columns": ["dr_grade"],
        "num_classes": 5,
        "val_share": 0.25,
        "val_seed": 0,
        "quality_source": "labels",
    }
    assert list(frame.columns[:5]) == ["image_id", "path", "split", "patient_id", "dr_grade"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["quality_source"] == "labels"  # EyeQ's own quality grades
    # 12 training images of 6 patients (both eyes each): round(0.25 * 6) = 2 patients, 4 images, to validation.
    assert list(summary["splits"]) == ["train", "val", "test"]
    assert (summary["splits"]["train"]["images"], summary["splits"]["val"]["images"]) == (8, 4)
    assert summary["splits"]["val"]["patients"] == 2
    train = frame[frame["split"] == "train"]
    assert summary["splits"]["train"]["low_quality_share"] == pytest.approx((train["quality"] == "low").mean(), abs=1e-4)
    levels = frame.groupby("split")["level"].value_counts()
    assert summary["splits"]["test"]["levels"] == {lv: int(levels.get(("test", lv), 0)) for lv in ("L", "L~", "H", "H~")}
    assert np.isin(frame["level"], ["L", "L~", "H", "H~"]).all()
