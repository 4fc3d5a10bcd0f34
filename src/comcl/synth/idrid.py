"""Synthetic IDRiD segmentation set: fundus JPEGs with pixel-exact per-lesion TIFF masks.

Every image shows DR (grades 2-4, as in the real set). A lesion kind with no lesion in an image
has no mask file, which reproduces the real set's absent masks (soft exudates most often).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comcl.datasets import idrid
from comcl.io import save_image
from comcl.parallel import item_seeds, parallel_map
from comcl.synth.fundus import render_fundus
from comcl.synth.grading import sample_lesion_counts

LESION_GRADES = (2, 3, 4)


@dataclass(frozen=True)
class IDRiDSpec:
    n_train: int
    n_test: int
    height: int
    width: int
    lesion_scale: float = 1.0


def _render(
    job: tuple[str, int, np.random.SeedSequence], root: Path, height: int, width: int, lesion_scale: float
) -> dict[str, Any]:
    split, number, seed = job
    rng = np.random.default_rng(seed)
    grade = int(rng.choice(LESION_GRADES))
    eye = "left" if rng.random() < 0.5 else "right"
    rendering = render_fundus(height, width, sample_lesion_counts(grade, rng), eye, rng, lesion_scale)
    image_file = idrid.image_path(root, split, number)
    save_image(image_file, rendering.image)
    red = np.zeros((height, width, 3), dtype=np.uint8)
    for kind, mask in rendering.masks.items():
        if mask.any():
            red[:] = 0
            red[mask] = idrid.MASK_COLOUR
            save_image(idrid.mask_path(root, split, kind, number), red)
    return {
        "file": str(image_file.relative_to(root)),
        "split": split,
        "image": idrid.image_id(number),
        "lesions": [(lesion.kind, *lesion.box) for lesion in rendering.lesions],
    }


def generate(root: Path, spec: IDRiDSpec, seed: int, workers: int) -> pd.DataFrame:
    """Write the tree under ``root``; numbering runs on from train into test, as in the real set."""
    numbers = range(1, spec.n_train + spec.n_test + 1)
    splits = ["train"] * spec.n_train + ["test"] * spec.n_test
    jobs = list(zip(splits, numbers, item_seeds(seed, "idrid", len(numbers)), strict=True))
    render = functools.partial(_render, root=root, height=spec.height, width=spec.width, lesion_scale=spec.lesion_scale)
    return pd.DataFrame(parallel_map(render, jobs, workers, desc="synthetic IDRiD"))
