"""The degradation gallery: a few high-quality images of a dataset before and after each
degradation type, so that a person can see what each type does to a real image.

One row per image, one column per degradation type after the original (for EyeQ the seven
combinations of :data:`~comcl.degrade.fundus.FUNDUS_DEGRADATION_TYPES`, for ChestX-ray14 each of
:data:`~comcl.degrade.chest.CHEST_DEGRADATIONS` alone). The images are chosen with the seed, and
each cell is degraded with its own generator seeded by (seed, row, column), so the figure is the
same for the same index and seed, and changing one cell's draws changes no other.

Images larger than the degradation model's reference size (512 px high for fundus photographs,
256 px on the longest side for radiographs) are shrunk to it first. Both models scale their lengths
with the image, so this shows the same degradation as at full size, at the resolution the figure
can show: a radiograph's grid stripes and noise would otherwise be averaged away by the figure's
downsampling. Lengths in the captions are in pixels of the image as shown; its size is under the
original. Under each degraded fundus photograph the caption also gives the share of its fine
structure (vessels, small lesions) the degradation kept (:func:`~comcl.degrade.structure.structure_kept`),
so that a figure shows at a glance whether the lesions are still there to be learnt from.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image, UnidentifiedImageError

from comcl.degrade.chest import CHEST_DEGRADATIONS, degrade_chest
from comcl.degrade.fundus import FUNDUS_DEGRADATION_TYPES, REFERENCE_SIZE, degrade_fundus
from comcl.degrade.structure import structure_kept
from comcl.errors import DataError
from comcl.fov import estimate_fov_mask
from comcl.io import read_table, save_figure

# Per format: the PIL mode images are read in and the degradation types, one per column.
_MODALITIES: dict[str, tuple[str, tuple[tuple[str, ...], ...]]] = {
    "fundus": ("RGB", FUNDUS_DEGRADATION_TYPES),
    "chest": ("L", tuple((kind,) for kind in CHEST_DEGRADATIONS)),
}
_CHEST_REFERENCE_SIZE = 256

CELL_WIDTH = 1.9  # inches per column; a row is as high as its images need at that width
CAPTION_HEIGHT = 0.85  # inches under each row's images (up to five caption lines) and above (titles)
TITLE_HEIGHT = 0.4
DPI = 110
# No "Software" entry (it names the matplotlib version): the same figure gives the same bytes.


def run_degradation_gallery(index: str | Path, figure: str | Path, seed: int) -> None:
    """The degradation gallery of a dataset's original version (its index)."""
    frame, meta = read_table(index)
    draw_gallery(frame, meta, figure, seed=seed)


def draw_gallery(index: pd.DataFrame, meta: Mapping[str, Any], path: str | Path, seed: int, n_images: int = 3) -> None:
    """Draw ``n_images`` high-quality images of ``index`` (fewer if it has fewer), each as it is
    and after every degradation type of ``meta["modality"]``, and save the figure as a PNG at ``path``.

    ``index`` needs the columns ``image_id``, ``path`` and ``quality``; where a ``lesion`` column
    has both values among the high-quality images, rows alternate between lesion and healthy.
    """
    modality = meta.get("modality")
    if modality not in _MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; the gallery knows {sorted(_MODALITIES)}")
    if n_images < 1:
        raise ValueError(f"n_images must be at least 1, got {n_images}")
    mode, types = _MODALITIES[modality]
    dataset = meta.get("dataset") or modality
    rows = choose_examples(index, n_images, np.random.default_rng(seed), dataset)

    images = [read_example(Path(str(record["path"])), mode, modality) for _, record in rows.iterrows()]
    aspect = max(image.shape[0] / image.shape[1] for image in images)
    ncols = 1 + len(types)
    row_height = 0.92 * CELL_WIDTH * aspect + CAPTION_HEIGHT
    fig = Figure(figsize=(CELL_WIDTH * ncols, row_height * len(rows) + TITLE_HEIGHT))
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for r, (axes_row, image, (_, record)) in enumerate(zip(axes, images, rows.iterrows(), strict=True)):
        fov = estimate_fov_mask(image) if modality == "fundus" else None
        if fov is not None and not fov.any():
            raise DataError(
                "no field of view found: the image is black",
                path=record["path"],
                hint="check the image file, or drop it from the dataset",
            )
        _show(axes_row[0], image, f"{image.shape[1]}×{image.shape[0]} px")
        axes_row[0].set_ylabel(_row_label(record), fontsize=7)
        for c, (ax, kinds) in enumerate(zip(axes_row[1:], types, strict=True), start=1):
            rng = np.random.default_rng(np.random.SeedSequence([seed, r, c]))
            if fov is not None:
                degraded, params = degrade_fundus(image, fov, kinds, rng)
                caption = f"{_caption(params, modality)}\nstructure kept {structure_kept(image, degraded, fov):.2f}"
            else:
                degraded, params = degrade_chest(image, kinds, rng)
                caption = _caption(params, modality)
            _show(ax, degraded, caption)
        if r == 0:
            axes_row[0].set_title("original", fontsize=8)
            for ax, kinds in zip(axes_row[1:], types, strict=True):
                ax.set_title("+".join(kinds), fontsize=8)
    fig.suptitle(f"{dataset}: each degradation type on the same high-quality images", fontsize=11)
    fig.tight_layout()  # makes room for the suptitle itself
    save_figure(fig, path, dpi=DPI)


def choose_examples(index: pd.DataFrame, n_images: int, rng: np.random.Generator, dataset: str) -> pd.DataFrame:
    """Up to ``n_images`` high-quality rows in a random order, alternating lesion and healthy
    while both last when the index says which is which."""
    missing = [column for column in ("image_id", "path", "quality") if column not in index.columns]
    if missing:
        raise ValueError(f"the index lacks the column(s) {missing}")
    high = index[index["quality"] == "high"]
    if high.empty:
        raise DataError(
            f"the index of {dataset} has no high-quality image "
            f"({f'{len(index)} images, all low quality' if len(index) else 'it is empty'}), "
            "so the degradation gallery has nothing to show",
            hint="the gallery degrades high-quality images: check the dataset's quality labels "
            "(EyeQ 'Good'; ChestX-ray14 'high' in the quality CSV or the quality score's threshold)",
        )
    positions = rng.permutation(len(high))
    if "lesion" in high.columns and high["lesion"].nunique() == 2:
        lesion = high["lesion"].to_numpy(dtype=bool)[positions]
        pools = [list(positions[lesion]), list(positions[~lesion])]
        order: list[int] = []
        while len(order) < min(n_images, len(high)):
            for pool in pools:
                if pool and len(order) < n_images:
                    order.append(pool.pop(0))
        positions = np.array(order)
    return high.iloc[positions[:n_images]]


def read_example(path: Path, mode: str, modality: str) -> np.ndarray:
    try:
        with Image.open(path) as opened:
            image = np.asarray(opened.convert(mode))
    except (FileNotFoundError, UnidentifiedImageError, OSError) as error:
        raise DataError(
            f"cannot read the image: {error}",
            path=path,
            hint="replace the file, or re-index with index: check_images: decode to find every such image",
        ) from error
    height, width = image.shape[:2]
    scale = REFERENCE_SIZE / height if modality == "fundus" else _CHEST_REFERENCE_SIZE / max(height, width)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image)


def _show(ax: Any, image: np.ndarray, caption: str) -> None:
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xlabel(caption, fontsize=6, linespacing=1.1)


def _row_label(record: pd.Series) -> str:
    label = str(record["image_id"])
    if "lesion" in record.index and pd.notna(record["lesion"]):
        label += "\n" + ("lesion" if bool(record["lesion"]) else "healthy")
    return label


def _illumination(p: Mapping[str, Any]) -> str:
    halo, hole = 255 * p["halo"]["amplitude"], 255 * p["hole"]["strength"]
    return f"brightness ×{p['brightness']:.2f}, contrast ×{p['contrast']:.2f}\nhalo +{halo:.0f}, hole {hole:.0f} grey"


def _fundus_blur(p: Mapping[str, Any]) -> str:
    width, height = p["kernel"]
    return f"blur {width:.1f}×{height:.1f} px, σ {p['sigma']:.1f}"


def _exposure(p: Mapping[str, Any]) -> str:
    return f"{p['direction']}-exposed, γ {p['gamma']:.2f}, {p['offset']:+.0f} grey"


# Per modality, the key drawn values of each kind, short enough for a caption line or two.
_CAPTIONS: dict[str, dict[str, Callable[[Mapping[str, Any]], str]]] = {
    "fundus": {
        "illumination": _illumination,
        "spot": lambda p: f"{len(p['spots'])} spots",
        "blur": _fundus_blur,
    },
    "chest": {
        "noise": lambda p: f"{p['photons']:.0f} photons, electronic σ {p['electronic']:.1f}",
        "blur": lambda p: f"blur σ {p['sigma']:.1f} px",
        "contrast": lambda p: f"contrast ×{p['factor']:.2f}",
        "exposure": _exposure,
        "motion": lambda p: f"{p['length']:.1f} px at {p['angle']:.0f}°",
        "grid": lambda p: f"period {p['period']:.1f} px at {p['angle']:.0f}°, ±{p['amplitude']:.0f} grey",
    },
}


def _caption(params: Mapping[str, Any], modality: str) -> str:
    captions = _CAPTIONS[modality]
    kinds: Sequence[str] = [kind for kind in params if kind in captions]
    return "\n".join(captions[kind](params[kind]) for kind in kinds)
