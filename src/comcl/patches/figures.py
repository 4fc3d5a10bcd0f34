"""Figures of the patch stage: where the patches come from, and what they look like, per level.

``draw_windows``: sample images of each level with the detector's boxes that the patch stage kept
(above ``conf``, off the field of view's rim; lesion levels) and the windows cut from them (dashed), drawn on the images as the patch stage cut them
(resized to the store's ``input_size``); ``draw_mosaic``: patches of each level side by side.
Samples are drawn with a seed, so the same store gives the same figure.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from comcl.errors import DataError
from comcl.images import CHANNELS, read_image, resize_square
from comcl.io import read_table, save_figure
from comcl.levels import LESION_LEVELS, LEVEL_NAMES, LEVELS
from comcl.patches.stage import kept_boxes, scale_boxes
from comcl.patches.store import PatchDataset, read_store_metadata

_COLOURS = ("#00e5ff", "#7cff4f", "#ff4fd8", "#ffe14f", "#ff8c1a", "#b58cff", "#ff5a5a", "#ffffff")


def _sample(frame: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    return frame.iloc[np.sort(rng.choice(len(frame), size=min(n, len(frame)), replace=False))] if len(frame) else frame


def run_patch_figures(
    index: str | Path,
    detections: str | Path,
    store: str | Path,
    summary: str | Path,
    params: Mapping[str, Any],
    windows: str | Path,
    mosaic: str | Path,
) -> None:
    """The patch figures of a dataset version: detections and windows on sample images, and the mosaic per level."""
    frame, meta = read_table(index)
    boxes, _ = read_table(detections)
    cut = pd.read_parquet(store, columns=["image_id", "x0", "y0", "x1", "y1"])
    on_rim: Counter[str] = Counter()
    for levels in json.loads(Path(summary).read_text())["per_split_level"].values():
        on_rim.update({level: cell["rim_detections_dropped"] for level, cell in levels.items()})
    draw_windows(frame, meta, boxes, cut, read_store_metadata(store)["input_size"], params, windows, on_rim)
    draw_mosaic(store, mosaic, params["seed"])


def draw_windows(
    index: pd.DataFrame,
    meta: dict[str, Any],
    detections: pd.DataFrame,
    store: pd.DataFrame,
    input_size: int,
    params: Mapping[str, Any],
    path: str | Path,
    on_rim: Mapping[str, int],
    per_level: int = 4,
) -> None:
    """Rows: levels; columns: sample images that gave patches, resized to ``input_size`` as the patch
    stage resized them, with the boxes it kept (solid) and windows (dashed); each lesion row says how many
    detections of its level the rim guard dropped (``on_rim``)."""
    rng = np.random.default_rng(params["seed"])
    classes = sorted(detections["label"].unique()) if len(detections) else []
    colour = {name: _COLOURS[i % len(_COLOURS)] for i, name in enumerate(classes)}
    fig = Figure(figsize=(2.6 * per_level, 2.4 * len(LEVELS) + 0.6))
    axes = fig.subplots(len(LEVELS), per_level, squeeze=False)
    with_patches = index[index["image_id"].isin(store["image_id"])]
    for row, level in zip(axes, LEVELS, strict=True):
        dropped = f"\n{on_rim.get(level, 0)} rim detections dropped" if level in LESION_LEVELS else ""
        row[0].set_ylabel(LEVEL_NAMES[level] + dropped, fontsize=8)
        chosen = _sample(with_patches[with_patches["level"] == level], per_level, rng)
        for ax, (_, record) in zip(row, chosen.iterrows(), strict=False):
            original = read_image(record["path"], CHANNELS[meta["modality"]])
            if original is None:
                raise DataError(f"cannot decode image {record['image_id']!r}", path=record["path"], hint="replace the file")
            image = resize_square(original, input_size)
            ax.imshow(image.squeeze(), cmap="gray" if image.shape[2] == 1 else None)
            found = detections[detections["image_id"] == record["image_id"]]
            found, _ = kept_boxes(image, scale_boxes(found, original.shape[1], original.shape[0], input_size), params)
            for box in found.itertuples():
                ax.add_patch(
                    Rectangle((box.x1, box.y1), box.x2 - box.x1, box.y2 - box.y1, fill=False, lw=0.8, ec=colour[box.label])
                )
            for window in store[store["image_id"] == record["image_id"]].itertuples():
                ax.add_patch(
                    Rectangle(
                        (window.x0, window.y0),
                        window.x1 - window.x0,
                        window.y1 - window.y0,
                        fill=False,
                        lw=0.8,
                        ls="--",
                        ec="white",
                    )
                )
            ax.set_xlim(-0.5, image.shape[1] - 0.5)
            ax.set_ylim(image.shape[0] - 0.5, -0.5)
            ax.set_xlabel(f"{record['image_id']} ({record['split']})", fontsize=7)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    handles = [Rectangle((0, 0), 1, 1, fill=False, ec=c, label=name) for name, c in colour.items()]
    handles.append(Rectangle((0, 0), 1, 1, fill=False, ec="black", ls="--", label="patch window"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(
        f"{meta.get('dataset')} {meta.get('proportion')}: detections above {params['conf']} off the field of view's rim, "
        "and patch windows",
        fontsize=10,
    )
    save_figure(fig, path)


def draw_mosaic(store_path: str | Path, path: str | Path, seed: int, per_level: int = 12) -> None:
    """One row of patches per level (train and test), with each patch's label and score underneath."""
    dataset = PatchDataset(store_path)
    rng = np.random.default_rng(seed)
    fig = Figure(figsize=(1.2 * per_level, 1.45 * len(LEVELS) + 0.5))
    axes = fig.subplots(len(LEVELS), per_level, squeeze=False)
    for row, level in zip(axes, LEVELS, strict=True):
        row[0].set_ylabel(level, fontsize=10)
        rows = _sample(dataset.index[dataset.index["level"] == level], per_level, rng)
        for ax, record in zip(row, rows.itertuples(), strict=False):
            patch = dataset[int(record.patch_id)]
            ax.imshow(patch.squeeze(), cmap="gray" if patch.shape[2] == 1 else None, vmin=0, vmax=255)
            ax.set_xlabel("random" if pd.isna(record.label) else f"{record.label} {record.score:.2f}", fontsize=6)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    meta = dataset.metadata
    fig.suptitle(f"{meta.get('dataset')} {meta.get('proportion')}: patches per level ({len(dataset)} in the store)", fontsize=10)
    save_figure(fig, path)
