"""A diagnosis dataset's own lesion boxes: an optional CSV beside its label files, read by no training.

Where the lesions of the images to be graded are known (the synthetic datasets know every lesion they
drew; a user may have boxes of their own), they measure what pretraining reads: the detector's
precision and recall on those images, and the share of lesion patches that hold a lesion
(:mod:`comcl.patches.truth`). The detector learns from its own lesion source, never from this file.

One row per lesion, in the spirit of NIH's ``BBox_List_2017.csv``::

    image,label,x,y,w,h
    10_left.jpeg,HE,412,233,14,11

``image`` is the image as the label file names it (its file name; only the name without its extension
is matched, as everywhere: the image id), ``label`` the lesion kind, ``x, y, w, h`` the box in pixels of
the image as stored in the dataset (before any preprocessing). An image without rows has no lesion.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import pandas as pd

from comcl.errors import DataError
from comcl.io import atomic_path

HEADER = ("image", "label", "x", "y", "w", "h")
# The name the synthetic datasets give the file.
LESION_BOXES_FILE = "lesion_boxes.csv"
_FIX = "fix or remove the row"


def write_lesion_boxes(path: str | Path, rows: Iterable[tuple[str, str, float, float, float, float]]) -> None:
    """Write ``(image, label, x, y, w, h)`` rows."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(rows)


def read_lesion_boxes(path: str | Path) -> pd.DataFrame:
    """The boxes as ``image_id, label, x1, y1, x2, y2, line``, each row checked (four finite numbers, an area)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("lesion box file not found", path=path, hint="check datasets.<name>.lesion_boxes, or remove the key")
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or tuple(field.strip() for field in rows[0]) != HEADER:
        raise DataError("unexpected header", path=path, line=1, hint=f"the header must read: {','.join(HEADER)}")
    records = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(field.strip() for field in row):
            continue
        if len(row) != len(HEADER):
            raise DataError(f"expected {len(HEADER)} fields ({', '.join(HEADER)}), found {row}", path=path, line=line, hint=_FIX)
        try:
            x, y, w, h = (float(value) for value in row[2:])
        except ValueError as error:
            raise DataError(f"box is not four numbers: {row[2:]}", path=path, line=line, hint=_FIX) from error
        if not all(math.isfinite(value) for value in (x, y, w, h)):
            raise DataError(f"box has a NaN or infinite number: {row[2:]}", path=path, line=line, hint=_FIX)
        if w <= 0 or h <= 0:
            raise DataError(f"box has no area: w={w}, h={h}", path=path, line=line, hint=_FIX)
        records.append((PurePosixPath(row[0].strip()).stem, row[1].strip(), x, y, x + w, y + h, line))
    return pd.DataFrame(records, columns=["image_id", "label", "x1", "y1", "x2", "y2", "line"])
