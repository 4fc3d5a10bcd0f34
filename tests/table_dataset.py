"""A dataset of one's own, as a user would put it in place: fundus photographs in a folder of their own choosing,
a ``labels.csv`` in the table format, and the lesion boxes as COCO files such as a labelling tool exports."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from comcl.datasets.table_format import write_labels
from comcl.degrade.fundus import FUNDUS_DEGRADATION_TYPES, degrade_fundus
from comcl.io import save_image
from comcl.synth.fundus import render_fundus
from comcl.synth.grading import grade_from_counts, sample_lesion_counts

LESION_TYPES = ("MA", "HE", "EX", "SE")
# Target grades in turn: most images show lesions, so that both COCO files keep boxes once the dataset's
# validation and test images are left out of them.
GRADES = (2, 3, 1, 4, 0, 2)
# The schema's default of a table dataset that every stage reads, as the validated configuration hands it over.
TABLE_DEFAULTS = {"labels": "labels.csv"}


def write_table_dataset(root: Path, n_train: int = 12, n_test: int = 6, size: tuple[int, int] = (96, 120), seed: int = 0) -> dict:
    """Write the dataset under ``root``; returns its configuration (``datasets`` entry and lesion source).

    Two eyes per patient; every third image is degraded and labelled low quality. The COCO boxes of the train
    split's even images go to ``train.json``, the others' to ``test.json``; the test split's images are in
    ``test.json`` too, as in a user's export of everything labelled: the workflow must leave them out.
    """
    rng = np.random.default_rng(seed)
    rows, coco = [], {"train": _empty_coco(), "test": _empty_coco()}
    for number in range(n_train + n_test):
        split = "train" if number < n_train else "test"
        eye = ("left", "right")[number % 2]
        rendering = render_fundus(*size, sample_lesion_counts(GRADES[number % len(GRADES)], rng), eye, rng)
        image, low = rendering.image, number % 3 == 2
        if low:
            image, _ = degrade_fundus(image, rendering.fov_mask, FUNDUS_DEGRADATION_TYPES[-1], rng)
        name = f"photos/{split}/p{number // 2:03d}_{eye}.jpg"
        save_image(root / name, image)
        grade = grade_from_counts({kind: sum(lesion.kind == kind for lesion in rendering.lesions) for kind in LESION_TYPES})
        rows.append(
            {"image": name, "split": split, "grade": grade, "patient": f"p{number // 2:03d}", "quality": "low" if low else "high"}
        )
        part = coco["train" if split == "train" and number % 2 == 0 else "test"]
        image_id = len(part["images"]) + 1
        part["images"].append({"id": image_id, "file_name": name, "width": size[1], "height": size[0]})
        for lesion in rendering.lesions:
            x, y, w, h = lesion.box
            part["annotations"].append(
                {
                    "id": len(part["annotations"]) + 1,
                    "image_id": image_id,
                    "bbox": [x, y, w, h],
                    "category_id": LESION_TYPES.index(lesion.kind) + 1,
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    write_labels(root / "labels.csv", rows, ["image", "split", "grade", "patient", "quality"])
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split, content in coco.items():
        (root / "annotations" / f"{split}.json").write_text(json.dumps(content))
    return {
        "dataset": {
            "format": "table",
            "root": str(root),
            "task": "grading",
            "modality": "fundus",
            "num_classes": 5,
            **TABLE_DEFAULTS,
        },
        "lesions": {"format": "coco", "root": str(root), "train": "annotations/train.json", "test": "annotations/test.json"},
    }


def write_multilabel_table(root: Path, findings: Sequence[str], **sizes: int) -> dict:
    """:func:`write_table_dataset` relabelled as a chest table of ``findings`` (one 0/1 column each, the j-th present
    on the images of a grade above j mod 4) without a quality column, as films without quality labels come: for the
    plan and the index, which read the label columns and the files, not what the images show."""
    setup = write_table_dataset(root, **sizes)
    labels = pd.read_csv(root / "labels.csv")
    for number, finding in enumerate(findings):
        labels[finding] = (labels["grade"] > number % 4).astype(int)
    labels[["image", "split", "patient", *findings]].to_csv(root / "labels.csv", index=False)
    dataset = {"format": "table", "root": str(root), "task": "multilabel", "findings": list(findings), "modality": "chest"}
    dataset |= TABLE_DEFAULTS
    return {**setup, "dataset": dataset}


def _empty_coco() -> dict:
    return {"images": [], "annotations": [], "categories": [{"id": i + 1, "name": name} for i, name in enumerate(LESION_TYPES)]}
