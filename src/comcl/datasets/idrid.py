"""The IDRiD ``A. Segmentation`` folder tree: images and per-lesion ground-truth masks.

Masks are TIFFs named ``IDRiD_NN_<KIND>.tif``; an image without lesions of a kind has no mask of
that kind. Lesion pixels are pure red (255, 0, 0), which reads as 76 once converted to grey, so
readers must treat any non-zero value as lesion.
"""

from __future__ import annotations

from pathlib import Path

SEGMENTATION_DIR = "A. Segmentation"
IMAGES_DIR = "1. Original Images"
MASKS_DIR = "2. All Segmentation Groundtruths"
SPLIT_DIRS = {"train": "a. Training Set", "test": "b. Testing Set"}
MASK_DIRS = {
    "MA": "1. Microaneurysms",
    "HE": "2. Haemorrhages",
    "EX": "3. Hard Exudates",
    "SE": "4. Soft Exudates",
    "OD": "5. Optic Disc",
}
MASK_COLOUR = (255, 0, 0)


def image_id(number: int) -> str:
    return f"IDRiD_{number:02d}"


def image_path(root: str | Path, split: str, number: int) -> Path:
    return Path(root) / SEGMENTATION_DIR / IMAGES_DIR / SPLIT_DIRS[split] / f"{image_id(number)}.jpg"


def mask_path(root: str | Path, split: str, kind: str, number: int) -> Path:
    return Path(root) / SEGMENTATION_DIR / MASKS_DIR / SPLIT_DIRS[split] / MASK_DIRS[kind] / f"{image_id(number)}_{kind}.tif"
