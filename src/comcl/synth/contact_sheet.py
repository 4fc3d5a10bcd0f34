"""Contact sheets: a grid of images read back from disk, lesion boxes drawn, one row per group.

They let a person check at a glance that a dataset looks right: grades and findings where they
should be, low-quality images visibly degraded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle
from PIL import Image

from comcl.io import save_figure

BOX_COLOURS = {
    "MA": "#00e5ff",
    "HE": "#76ff03",
    "EX": "#d500f9",
    "SE": "#ffea00",
    "Atelectasis": "#e6194b",
    "Cardiomegaly": "#3cb44b",
    "Effusion": "#ffe119",
    "Infiltration": "#4363d8",
    "Mass": "#f58231",
    "Nodule": "#911eb4",
    "Pneumonia": "#42d4f4",
    "Pneumothorax": "#f032e6",
}


@dataclass(frozen=True)
class SheetRow:
    label: str
    members: pd.Series  # boolean, over the rows of the truth table


def draw_contact_sheet(
    path: str | Path,
    root: Path,
    truth: pd.DataFrame,
    rows: Sequence[SheetRow],
    caption: str,
    title: str,
    per_row: int = 4,
    seed: int = 0,
) -> None:
    """``truth`` has ``file`` (relative to ``root``), ``lesions`` (kind, x, y, w, h) and the
    column named by ``caption``, printed under each image."""
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(len(rows), per_row, figsize=(2.4 * per_row, 2.5 * len(rows)), squeeze=False)
    for axes_row, row in zip(axes, rows, strict=True):
        members = np.flatnonzero(row.members.to_numpy())
        chosen = np.sort(rng.choice(members, size=min(per_row, len(members)), replace=False))
        axes_row[0].set_ylabel(row.label, fontsize=10)
        for ax in axes_row:
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        for ax, index in zip(axes_row, chosen, strict=False):
            record = truth.iloc[index]
            image = np.asarray(Image.open(root / record["file"]))
            ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
            for kind, x, y, w, h in record["lesions"]:
                ax.add_patch(Rectangle((x, y), w, h, fill=False, linewidth=0.8, edgecolor=BOX_COLOURS.get(kind, "yellow")))
            ax.set_xlabel(str(record[caption]), fontsize=7)
    handles = [Rectangle((0, 0), 1, 1, fill=False, edgecolor=c, label=k) for k, c in BOX_COLOURS.items() if _used(truth, k)]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout(rect=(0, 0.04 if handles else 0, 1, 0.97))
    save_figure(fig, path)
    plt.close(fig)


def _used(truth: pd.DataFrame, kind: str) -> bool:
    return any(lesion[0] == kind for lesions in truth["lesions"] for lesion in lesions)
