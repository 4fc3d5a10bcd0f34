"""The indexing stage on the real label files and on the synthetic datasets."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from comcl.datasets.chestxray14 import TASK_FINDINGS
from comcl.index.build import assign_levels, build_index, run_index, summarize
from comcl.io import read_table

EYEQ_LABELS_ONLY = {"format": "eyeq", "labels": {"train": "Label_EyeQ_train.csv", "test": "Label_EyeQ_test.csv"},
                    "images": {"train": "train", "test": "test"}}
CHEST_FILES = {"format": "chestxray14", "data_entry": "Data_Entry_2017.csv", "bbox_list": "BBox_List_2017.csv",
               "split_lists": {"train": "train_val_list.txt", "test": "test_list.txt"}, "images": "images",
               "quality_csv": None, "low_quality_share": 0.432, "other_findings": "negative"}


def test_levels_follow_lesion_and_quality():
    lesion = pd.Series([True, True, False, False])
    low = pd.Series([False, True, False, True])
    assert assign_levels(lesion, low).tolist() == ["L", "L~", "H", "H~"]


def test_real_eyeq_labels_reproduce_the_published_counts(shared_data):
    frame, meta = build_index({**EYEQ_LABELS_ONLY, "root": str(shared_data / "eyeq")}, check="none", workers=1)
    summary = summarize(frame, meta)
    train, test = summary["splits"]["train"], summary["splits"]["test"]
    # EyeQ (Fu et al. 2019): train 12,543 = 8,347 Good + 1,876 Usable + 2,320 Reject; test 16,249 =
    # 8,471 + 4,558 + 3,220. CoMCL: 33.4 % low quality in the original training set.
    assert (train["images"], test["images"]) == (12543, 16249)
    assert frame.groupby("split")["eyeq_quality"].value_counts().to_dict() == {
        ("test", 0): 8471, ("test", 1): 4558, ("test", 2): 3220,
        ("train", 0): 8347, ("train", 1): 1876, ("train", 2): 2320,
    }
    assert train["low_quality_share"] == pytest.approx(0.334, abs=0.001)
    assert sum(train["levels"].values()) == 12543
    assert train["levels"]["L"] + train["levels"]["L~"] == 12543 - train["labels"]["0"]
    assert train["levels"]["L~"] + train["levels"]["H~"] == 1876 + 2320
    assert frame["path"].iloc[0].endswith("train/10009_left.jpeg")
    assert frame["width"].isna().all(), "labels-only mode reads no image"


def test_exists_mode_checks_files_without_reading_them(synthetic_eyeq):
    root, truth = synthetic_eyeq
    frame, _ = build_index({**EYEQ_LABELS_ONLY, "root": str(root)}, check="exists", workers=1)
    assert len(frame) == len(truth) and frame["width"].isna().all()


def test_synthetic_eyeq_index_matches_the_generator(synthetic_eyeq):
    root, truth = synthetic_eyeq
    frame, meta = build_index({**EYEQ_LABELS_ONLY, "root": str(root)}, check="decode", workers=1)
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
    frame, meta = build_index({**CHEST_FILES, "root": str(tmp_path), "quality_csv": "quality.csv"}, check="none", workers=1)
    assert meta["boxes"] == 5 and meta["task"] == "multilabel"
    assert len(frame) == 16 and frame["split"].value_counts().to_dict() == {"train": 12, "test": 4}
    counts = frame[list(TASK_FINDINGS)].sum().to_dict()
    assert counts == {"Atelectasis": 1, "Cardiomegaly": 2, "Effusion": 2, "Infiltration": 1, "Mass": 2,
                      "Nodule": 2, "Pneumonia": 2, "Pneumothorax": 1}
    emphysema = frame.set_index("image_id").loc["00000353_000"]
    assert not emphysema["lesion"] and emphysema["level"] == "H"
    excluded, _ = build_index({**CHEST_FILES, "root": str(tmp_path), "quality_csv": "quality.csv",
                               "other_findings": "exclude"}, check="none", workers=1)
    assert "00000353_000" not in set(excluded["image_id"]) and len(excluded) == 15


def test_chest_quality_score_finds_the_degraded_images(synthetic_chest):
    root, truth = synthetic_chest
    frame, _ = build_index({**CHEST_FILES, "root": str(root)}, check="header", workers=1)
    merged = frame.merge(truth, left_on=frame["image_id"] + ".png", right_on="image", suffixes=("", "_truth"))
    degraded = merged["degradation_truth"].notna().to_numpy()
    assert (merged["quality"] == "low").sum() == round(0.432 * len(merged))
    # Rank-based AUROC of the score separating degraded from clean images.
    ranks = merged["quality_score"].rank().to_numpy()
    n_pos, n_neg = (~degraded).sum(), degraded.sum()
    auroc = (ranks[~degraded].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    assert auroc > 0.8
    lesion = merged[list(TASK_FINDINGS)].any(axis=1)
    assert (lesion == merged["lesions"].map(len).gt(0)).all()


def test_run_index_writes_the_table_and_summary(synthetic_eyeq, tmp_path):
    root, truth = synthetic_eyeq
    run_index("eyeq", {**EYEQ_LABELS_ONLY, "root": str(root)}, "header", 1, tmp_path / "index.parquet", tmp_path / "summary.json")
    frame, meta = read_table(tmp_path / "index.parquet")
    assert meta == {"dataset": "eyeq", "proportion": "original", "format": "eyeq", "task": "grading",
                    "label_columns": ["dr_grade"], "num_classes": 5}
    assert list(frame.columns[:5]) == ["image_id", "path", "split", "patient_id", "dr_grade"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["splits"]["train"]["images"] == 12
    assert summary["splits"]["train"]["low_quality_share"] == pytest.approx(4 / 12, abs=1e-4)
    levels = frame.groupby("split")["level"].value_counts()
    assert summary["splits"]["test"]["levels"] == {lv: int(levels.get(("test", lv), 0)) for lv in ("L", "L~", "H", "H~")}
    assert np.isin(frame["level"], ["L", "L~", "H", "H~"]).all()
