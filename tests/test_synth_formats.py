"""The synthetic datasets are written in the exact public formats, and their labels match their pixels."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from comcl.datasets import chestxray14 as nih
from comcl.datasets import eyeq, idrid
from comcl.synth.grading import grade_from_counts
from tests.conftest import TINY_CHEST, TINY_EYEQ, TINY_IDRID


def first_line(path: Path) -> str:
    return path.read_text().splitlines()[0]


def test_eyeq_label_files_have_the_published_header(synthetic_eyeq, shared_data):
    root, _ = synthetic_eyeq
    for split, name in eyeq.LABEL_FILES.items():
        assert first_line(root / name) == first_line(shared_data / "eyeq" / name)
        labels = eyeq.read_labels(root / name)
        assert len(labels) == getattr(TINY_EYEQ, f"n_{split}")
        assert labels["line"].tolist() == list(range(2, len(labels) + 2))


def test_eyeq_images_are_named_and_sized_like_eyepacs(synthetic_eyeq):
    root, truth = synthetic_eyeq
    for split in ("train", "test"):
        labels = eyeq.read_labels(root / eyeq.LABEL_FILES[split])
        files = sorted(p.name for p in (root / split).iterdir())
        assert files == sorted(labels["image"])
        with Image.open(root / split / files[0]) as image:
            assert image.format == "JPEG"
            assert image.mode == "RGB"
            assert image.size == (TINY_EYEQ.width, TINY_EYEQ.height)
    both_eyes = truth.groupby(truth["image"].str.split("_").str[0])["split"].nunique()
    assert (both_eyes == 1).all(), "both eyes of a patient must be in the same split"


def test_eyeq_low_quality_share_is_exact_and_low_quality_images_are_degraded(synthetic_eyeq):
    root, truth = synthetic_eyeq
    for split, share in TINY_EYEQ.low_quality_share.items():
        labels = eyeq.read_labels(root / eyeq.LABEL_FILES[split])
        assert (labels["quality"] > 0).sum() == round(share * len(labels))
    degraded = truth["degradation"].notna()
    assert (degraded == (truth["quality"] > 0)).all()
    rejects = truth[truth["quality"] == 2]
    assert all(d["type"] == "illumination+spot+blur" for d in rejects["degradation"])


def test_eyeq_grades_follow_the_rendered_lesions(synthetic_eyeq):
    root, truth = synthetic_eyeq
    for lesions, grade in zip(truth["lesions"], truth["DR_grade"], strict=True):
        assert grade == grade_from_counts(Counter(kind for kind, *_ in lesions))
    written = pd.concat(eyeq.read_labels(root / name) for name in eyeq.LABEL_FILES.values())
    assert written.set_index("image")["DR_grade"].to_dict() == truth.set_index("image")["DR_grade"].to_dict()
    assert truth["DR_grade"].nunique() >= 3


def test_idrid_tree_has_the_published_layout(synthetic_idrid):
    root, _truth = synthetic_idrid
    seg = root / "A. Segmentation"
    assert sorted(p.name for p in seg.iterdir()) == ["1. Original Images", "2. All Segmentation Groundtruths"]
    train = sorted(p.name for p in (seg / "1. Original Images" / "a. Training Set").iterdir())
    test = sorted(p.name for p in (seg / "1. Original Images" / "b. Testing Set").iterdir())
    assert train == [f"IDRiD_{n:02d}.jpg" for n in range(1, TINY_IDRID.n_train + 1)]
    assert test == [f"IDRiD_{n:02d}.jpg" for n in range(TINY_IDRID.n_train + 1, TINY_IDRID.n_train + TINY_IDRID.n_test + 1)]
    od = list((seg / "2. All Segmentation Groundtruths" / "a. Training Set" / "5. Optic Disc").iterdir())
    assert len(od) == TINY_IDRID.n_train and all(p.name.endswith("_OD.tif") for p in od)


def test_idrid_masks_are_red_tiffs_aligned_with_the_lesions(synthetic_idrid):
    root, truth = synthetic_idrid
    for record in truth.itertuples():
        number = int(record.image.split("_")[1])
        kinds = Counter(kind for kind, *_ in record.lesions)
        for kind in ("MA", "HE", "EX", "SE"):
            path = idrid.mask_path(root, record.split, kind, number)
            assert path.exists() == (kinds[kind] > 0), f"{path} should exist iff the image has {kind}"
            if not path.exists():
                continue
            with Image.open(path) as mask_image:
                assert mask_image.format == "TIFF"
                mask = np.asarray(mask_image)
            assert set(np.unique(mask[..., 0])) <= {0, 255} and not mask[..., 1:].any()
            # Every lesion box covers mask pixels, and every mask pixel lies in some box of its kind.
            covered = np.zeros(mask.shape[:2], dtype=bool)
            for lesion_kind, x, y, w, h in record.lesions:
                if lesion_kind == kind:
                    assert mask[y : y + h, x : x + w, 0].any()
                    covered[y : y + h, x : x + w] = True
            assert not (mask[..., 0].astype(bool) & ~covered).any()


def test_idrid_red_lesions_are_dark_in_the_image(synthetic_idrid):
    root, truth = synthetic_idrid
    record = next(r for r in truth.itertuples() if any(k == "HE" for k, *_ in r.lesions))
    number = int(record.image.split("_")[1])
    image = np.asarray(Image.open(idrid.image_path(root, record.split, number))).astype(float)
    mask = np.asarray(Image.open(idrid.mask_path(root, record.split, "HE", number)))[..., 0] > 0
    ring = cv2.dilate(mask.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool) & ~mask
    assert image[mask].mean() < image[ring].mean()


def test_chest_files_have_the_published_headers(synthetic_chest, shared_data):
    root, _truth = synthetic_chest
    real = shared_data / "chestxray14"
    assert first_line(root / nih.DATA_ENTRY_FILE) == first_line(real / "Data_Entry_2017_v2020_subset.csv")
    assert first_line(root / nih.BBOX_FILE) == first_line(real / "BBox_List_2017_subset.csv")
    rows = (root / nih.DATA_ENTRY_FILE).read_text().splitlines()[1:]
    assert {len(row.split(",")) for row in rows} == {11}
    entries = nih.read_data_entry(root / nih.DATA_ENTRY_FILE)
    assert sorted(entries["Image Index"]) == sorted(p.name for p in (root / "images").iterdir())
    boxes = nih.read_bbox_list(root / nih.BBOX_FILE)
    assert len(boxes) > 0 and set(boxes["image"]) <= set(entries["Image Index"])
    assert "Infiltrate" not in set(boxes["finding"])


def test_chest_split_is_patient_wise_and_complete(synthetic_chest):
    root, _truth = synthetic_chest
    entries = nih.read_data_entry(root / nih.DATA_ENTRY_FILE).set_index("Image Index")
    lists = {split: nih.read_split_list(root / name) for split, name in nih.SPLIT_FILES.items()}
    assert sorted(lists["train"] + lists["test"]) == sorted(entries.index)
    patients = {split: set(entries.loc[names, "Patient ID"]) for split, names in lists.items()}
    assert patients["train"] and patients["test"] and not patients["train"] & patients["test"]
    assert len(entries) >= TINY_CHEST.n_patients


def test_chest_labels_match_the_rendered_findings(synthetic_chest):
    root, truth = synthetic_chest
    entries = nih.read_data_entry(root / nih.DATA_ENTRY_FILE).set_index("Image Index")
    for record in truth.itertuples():
        assert set(entries.loc[record.image, "findings"]) == {name for name, *_ in record.lesions}
    with Image.open(root / truth["file"].iloc[0]) as image:
        assert image.format == "PNG" and image.mode == "L"
    assert truth["degradation"].notna().sum() == round(TINY_CHEST.low_quality_share * len(truth))
