"""Synthetic NIH ChestX-ray14: PNG radiographs with the 8 findings, in the published layout.

Layout (as the NIH release once its archives are extracted)::

    <root>/Data_Entry_2017.csv   <root>/BBox_List_2017.csv
    <root>/train_val_list.txt    <root>/test_list.txt    <root>/images/<patient>_<follow-up>.png

Patients have one or more follow-up images and are split whole between the two lists. NIH
publishes no quality labels, so none are written: exactly ``round(share * n)`` images are degraded
(one or two chest degradations each), and the indexer has to find them with its quality score.
Every finding's box, boxed in the BBox list or not, is in ``lesion_boxes.csv``
(:mod:`comcl.datasets.lesion_boxes`), which measures the patches and no stage trains on.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comcl.datasets import chestxray14 as nih
from comcl.datasets.lesion_boxes import LESION_BOXES_FILE, write_lesion_boxes
from comcl.degrade.chest import degrade_chest, random_chest_kinds
from comcl.io import save_image
from comcl.parallel import item_seeds, parallel_map
from comcl.splits import chest_test_patients
from comcl.synth.chest import render_chest

FIELD_OF_VIEW_MM = 360.0


@dataclass(frozen=True)
class ChestSpec:
    n_patients: int
    max_follow_ups: int
    size: int
    no_finding_share: float
    max_findings: int
    finding_weights: Mapping[str, float]
    test_patient_share: float
    low_quality_share: float
    bbox_share: float


@dataclass(frozen=True)
class _Job:
    image: str
    findings: tuple[str, ...]
    degrade: bool
    seed: np.random.SeedSequence


def _entries(spec: ChestSpec, rng: np.random.Generator) -> pd.DataFrame:
    """One Data_Entry row per image, patient by patient."""
    names = list(nih.TASK_FINDINGS)
    weights = np.asarray([spec.finding_weights[name] for name in names], dtype=float)
    rows = []
    for patient in range(1, spec.n_patients + 1):
        age, gender = int(rng.integers(18, 90)), str(rng.choice(["M", "F"]))
        for follow_up in range(int(rng.integers(1, spec.max_follow_ups + 1))):
            findings: tuple[str, ...] = ()
            if rng.random() >= spec.no_finding_share:
                count = int(rng.integers(1, spec.max_findings + 1))
                findings = tuple(sorted(rng.choice(names, size=count, replace=False, p=weights / weights.sum())))
            spacing = FIELD_OF_VIEW_MM / spec.size
            rows.append(
                {
                    "Image Index": f"{patient:08d}_{follow_up:03d}.png",
                    "Finding Labels": "|".join(findings) or nih.NO_FINDING,
                    "Follow-up #": follow_up,
                    "Patient ID": patient,
                    "Patient Age": age,
                    "Patient Gender": gender,
                    "View Position": "PA" if rng.random() < 0.8 else "AP",
                    "OriginalImage Width": spec.size,
                    "OriginalImage Height": spec.size,
                    "OriginalImagePixelSpacing x": spacing,
                    "OriginalImagePixelSpacing y": spacing,
                    "findings": findings,
                }
            )
    return pd.DataFrame(rows)


def _render(job: _Job, root: Path, size: int) -> dict[str, Any]:
    rng = np.random.default_rng(job.seed)
    rendering = render_chest(size, job.findings, rng)
    image, degradation = rendering.image, None
    if job.degrade:
        image, degradation = degrade_chest(image, random_chest_kinds(rng), rng)
    file = f"{nih.IMAGES_DIR}/{job.image}"
    save_image(root / file, image)
    return {
        "file": file,
        "image": job.image,
        "degradation": degradation,
        "lesions": [(finding.name, *finding.box) for finding in rendering.findings],
    }


def generate(root: Path, spec: ChestSpec, seed: int, workers: int) -> pd.DataFrame:
    """Write the dataset under ``root``; return what was rendered, with ``file`` relative to ``root``."""
    rng = np.random.default_rng([seed, 2])
    entries = _entries(spec, rng)
    n_images = len(entries)
    degrade = np.zeros(n_images, dtype=bool)
    degrade[rng.permutation(n_images)[: round(spec.low_quality_share * n_images)]] = True
    jobs = [
        _Job(image, findings, bool(flag), job_seed)
        for image, findings, flag, job_seed in zip(
            entries["Image Index"], entries["findings"], degrade, item_seeds(seed, "chestxray14", n_images), strict=True
        )
    ]
    truth = pd.DataFrame(
        parallel_map(functools.partial(_render, root=root, size=spec.size), jobs, workers, desc="synthetic ChestX-ray14")
    )

    patients = entries["Patient ID"].unique()
    n_test = chest_test_patients(len(patients), spec.test_patient_share)
    test_patients = set(rng.choice(patients, size=n_test, replace=False).tolist())
    truth["split"] = np.where(entries["Patient ID"].isin(test_patients), "test", "train")
    nih.write_data_entry(root / nih.DATA_ENTRY_FILE, entries)
    for split, list_file in nih.SPLIT_FILES.items():
        nih.write_split_list(root / list_file, sorted(truth.loc[truth["split"] == split, "image"]))
    boxed = rng.random(n_images) < spec.bbox_share
    boxes = [(row.image, *lesion) for row, keep in zip(truth.itertuples(), boxed, strict=True) if keep for lesion in row.lesions]
    nih.write_bbox_list(root / nih.BBOX_FILE, boxes)
    write_lesion_boxes(root / LESION_BOXES_FILE, [(row.image, *lesion) for row in truth.itertuples() for lesion in row.lesions])
    return truth
