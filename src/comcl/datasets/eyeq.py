"""EyeQ label files (HzFu/EyeQ, ``data/Label_EyeQ_{train,test}.csv``) over EyePACS JPEGs.

Header ``,image,quality,DR_grade``: an unnamed integer index, the image file name
``<id>_<left|right>.jpeg``, quality 0 = Good, 1 = Usable, 2 = Reject, and the EyePACS DR grade 0-4.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pandas as pd

from comcl.datasets.csv_checks import check_columns, check_unique, check_values, read_csv_checked
from comcl.errors import DataError
from comcl.io import atomic_path

LABEL_COLUMNS = ("image", "quality", "DR_grade")
QUALITY_NAMES = {0: "Good", 1: "Usable", 2: "Reject"}
DR_GRADES = (0, 1, 2, 3, 4)
IMAGE_NAME = re.compile(r"^(?P<patient>\d+)_(?P<eye>left|right)\.jpe?g$")
LABEL_FILES = {"train": "Label_EyeQ_train.csv", "test": "Label_EyeQ_test.csv"}


def read_labels(path: str | Path) -> pd.DataFrame:
    """Read and validate one EyeQ label file.

    Returns columns ``image``, ``quality``, ``DR_grade``, ``patient_id``, ``eye`` and ``line`` (the
    line in the file, for error messages later on). Every problem names the file and line.
    """
    path = Path(path)
    frame = read_csv_checked(path, dtype=str, keep_default_na=False)
    first = frame.columns[0]
    if first == "" or first.startswith("Unnamed"):
        frame = frame.drop(columns=first)
    check_columns(frame, LABEL_COLUMNS, path, expected_header="," + ",".join(LABEL_COLUMNS))
    if frame.empty:
        raise DataError("the label file has a header but no rows", path=path, hint="check that the download completed")
    frame["line"] = frame.index + 2
    frame["quality"] = check_values(frame, "quality", QUALITY_NAMES, path, what="quality (0 Good, 1 Usable, 2 Reject)")
    frame["DR_grade"] = check_values(frame, "DR_grade", DR_GRADES, path, what="DR grade (0-4)")
    names = frame["image"].str.extract(IMAGE_NAME)
    bad = names["patient"].isna()
    if bad.any():
        row = frame[bad].iloc[0]
        raise DataError(
            f"image name {row['image']!r} is not of the form <id>_<left|right>.jpeg ({int(bad.sum())} such rows)",
            path=path,
            line=int(row["line"]),
            hint="EyeQ label files name EyePACS images; fix or remove the row",
        )
    frame["patient_id"] = names["patient"]
    frame["eye"] = names["eye"]
    check_unique(frame, "image", path)
    return frame


def write_labels(path: str | Path, images: list[str], quality: list[int], grades: list[int]) -> None:
    """Write a label file byte-compatible with the published ones (unnamed index column first)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["", *LABEL_COLUMNS])
        for i, row in enumerate(zip(images, quality, grades, strict=True)):
            writer.writerow([i, *row])
