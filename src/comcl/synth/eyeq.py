"""Synthetic EyeQ: EyePACS-style fundus JPEGs and EyeQ label files, in the published layout.

Layout (as the Kaggle download plus the EyeQ label files)::

    <root>/Label_EyeQ_train.csv   <root>/train/<id>_<left|right>.jpeg
    <root>/Label_EyeQ_test.csv    <root>/test/<id>_<left|right>.jpeg

Grades follow :mod:`comcl.synth.grading`. Quality: exactly ``round(share * n)`` images of a split
are low quality; of those a ``reject_share`` are Reject (all three degradation families combined)
and the rest Usable (one of the six partial combinations), through the same degradation model
that the degradation stage uses. Every lesion drawn is in ``lesion_boxes.csv``
(:mod:`comcl.datasets.lesion_boxes`), which measures the patches and no stage trains on.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comcl.datasets import eyeq
from comcl.datasets.lesion_boxes import LESION_BOXES_FILE, write_lesion_boxes
from comcl.degrade.fundus import FUNDUS_DEGRADATION_TYPES, degrade_fundus
from comcl.io import save_image
from comcl.parallel import item_seeds, parallel_map
from comcl.splits import eyeq_patients
from comcl.synth.fundus import render_fundus
from comcl.synth.grading import DR_GRADES, grade_from_counts, sample_lesion_counts

SPLITS = ("train", "test")


@dataclass(frozen=True)
class EyeQSpec:
    n_train: int
    n_test: int
    height: int
    width: int
    grade_distribution: Sequence[float]
    low_quality_share: Mapping[str, float]
    reject_share: float
    lesion_scale: float = 1.0


@dataclass(frozen=True)
class _Job:
    split: str
    image: str
    eye: str
    grade: int
    quality: int
    seed: np.random.SeedSequence


def plan(spec: EyeQSpec, seed: int) -> list[_Job]:
    """Decide every image's name, target grade and quality before any rendering."""
    rng = np.random.default_rng([seed, 1])
    sizes = {"train": spec.n_train, "test": spec.n_test}
    n_patients = {split: eyeq_patients(n) for split, n in sizes.items()}
    ids = np.sort(rng.choice(np.arange(1, 100_000), size=sum(n_patients.values()), replace=False))
    rng.shuffle(ids)
    weights = np.asarray(spec.grade_distribution, dtype=float)
    seeds = iter(item_seeds(seed, "eyeq", sum(sizes.values())))
    jobs: list[_Job] = []
    offset = 0
    for split in SPLITS:
        patients = np.sort(ids[offset : offset + n_patients[split]])
        offset += n_patients[split]
        names = [(f"{pid}_{eye}.jpeg", eye) for pid in patients for eye in ("left", "right")][: sizes[split]]
        n_low = round(spec.low_quality_share[split] * len(names))
        low = rng.permutation(len(names))[:n_low]
        quality = np.zeros(len(names), dtype=int)
        quality[low] = np.where(rng.random(n_low) < spec.reject_share, 2, 1)
        grades = rng.choice(DR_GRADES, size=len(names), p=weights / weights.sum())
        for (name, eye), q, grade in zip(names, quality, grades, strict=True):
            jobs.append(_Job(split, name, eye, int(grade), int(q), next(seeds)))
    return jobs


def _render(job: _Job, root: Path, height: int, width: int, lesion_scale: float) -> dict[str, Any]:
    rng = np.random.default_rng(job.seed)
    rendering = render_fundus(height, width, sample_lesion_counts(job.grade, rng), job.eye, rng, lesion_scale)
    image, degradation = rendering.image, None
    if job.quality > 0:
        partial = [kinds for kinds in FUNDUS_DEGRADATION_TYPES if len(kinds) < 3]
        kinds = FUNDUS_DEGRADATION_TYPES[-1] if job.quality == 2 else partial[rng.integers(len(partial))]
        image, degradation = degrade_fundus(image, rendering.fov_mask, kinds, rng)
    file = f"{job.split}/{job.image}"
    save_image(root / file, image)
    return {
        "file": file,
        "split": job.split,
        "image": job.image,
        "quality": job.quality,
        "DR_grade": grade_from_counts(Counter(lesion.kind for lesion in rendering.lesions)),
        "degradation": degradation,
        "lesions": [(lesion.kind, *lesion.box) for lesion in rendering.lesions],
    }


def generate(root: Path, spec: EyeQSpec, seed: int, workers: int) -> pd.DataFrame:
    """Write the dataset under ``root``; return what was rendered, with ``file`` relative to ``root``."""
    jobs = plan(spec, seed)
    render = functools.partial(_render, root=root, height=spec.height, width=spec.width, lesion_scale=spec.lesion_scale)
    truth = pd.DataFrame(parallel_map(render, jobs, workers, desc="synthetic EyeQ"))
    for split in SPLITS:
        rows = truth[truth["split"] == split]
        eyeq.write_labels(
            root / eyeq.LABEL_FILES[split], rows["image"].tolist(), rows["quality"].tolist(), rows["DR_grade"].tolist()
        )
    write_lesion_boxes(root / LESION_BOXES_FILE, [(row.image, *lesion) for row in truth.itertuples() for lesion in row.lesions])
    return truth
