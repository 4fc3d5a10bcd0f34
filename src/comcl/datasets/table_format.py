"""A dataset of one's own: a folder of images and one CSV that labels them (``format: table``).

Columns: ``image`` (the file, relative to the dataset's root), ``split`` (``train`` or ``test``), the
labels, optionally ``patient`` (default: the image: each its own patient), and ``quality`` (``high``/``low``, or
EyeQ's ``Good``/``Usable``/``Reject`` or 0/1/2): optional for chest films, which the chest radiograph score can
rate, required for fundus photographs, which it cannot (the index refuses a fundus table without it). Labels: for
``grading`` a ``grade`` column of integers 0 .. num_classes - 1; for
``multilabel`` one 0/1 column per finding. An image's id is its file name without the extension
(as for every format: the detector's boxes are matched to it by that), so two files of one name in
different folders are refused.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import pandas as pd

from comcl.datasets.csv_checks import check_columns, check_unique, check_values, read_csv_checked
from comcl.errors import DataError
from comcl.io import atomic_path

SPLITS = ("train", "test")
# A quality column's words: high/low, or EyeQ's grades by name or number (Good is high quality, Usable and Reject
# low, as the EyeQ reader reads them).
QUALITY_WORDS = {
    "high": "high",
    "low": "low",
    "good": "high",
    "usable": "low",
    "reject": "low",
    "0": "high",
    "1": "low",
    "2": "low",
}
GRADE = "grade"


def read_labels(path: str | Path, task: str, findings: Sequence[str] | None, num_classes: int | None) -> tuple[pd.DataFrame, int]:
    """Read and validate a label file; returns it (columns ``image``, ``image_id``, ``split``, ``patient``, the labels,
    ``quality`` if given, ``line``) and the number of classes (grades, or findings)."""
    path = Path(path)
    frame = read_csv_checked(path, dtype=str, keep_default_na=False)
    labels = [GRADE] if task == "grading" else list(findings or ())
    if task == "multilabel" and not labels:
        raise DataError("a multilabel table needs its finding columns", path=path, hint="list them in the dataset's `findings`")
    check_columns(frame, ["image", "split", *labels], path, expected_header=",".join(["image", "split", *labels]))
    if frame.empty:
        raise DataError("the label file has a header but no rows", path=path, hint="add a row per image")
    frame["line"] = frame.index + 2
    frame["image"] = frame["image"].str.strip()
    _check_inside(frame, path)
    _check_choice(frame, "split", SPLITS, path)
    for split in SPLITS:
        if not (frame["split"] == split).any():
            raise DataError(f"the {split} split is empty", path=path, hint=f"give at least one image split {split}")
    if "quality" in frame.columns:
        words = frame["quality"].str.strip().str.lower()
        frame["quality"] = words.map(QUALITY_WORDS)
        unknown = frame[frame["quality"].isna()]
        if len(unknown):
            row = unknown.iloc[0]
            raise DataError(
                f"quality {words[row.name]!r} is none of {', '.join(QUALITY_WORDS)}",
                path=path,
                line=int(row["line"]),
                hint="write high or low, or EyeQ's Good / Usable / Reject (0 / 1 / 2: Good is high quality, the others low)",
            )
    frame["image_id"] = frame["image"].map(lambda name: PurePosixPath(name).stem)
    check_unique(frame, "image_id", path)
    patients = frame["patient"].str.strip() if "patient" in frame.columns else pd.Series("", index=frame.index)
    frame["patient"] = patients.where(patients != "", frame["image_id"])
    if task == "grading":
        grades = pd.to_numeric(frame[GRADE].str.strip(), errors="coerce")
        classes = num_classes or int(grades.fillna(0).clip(lower=0).max()) + 1  # what is no grade is refused below
        frame[GRADE] = check_values(frame, GRADE, range(classes), path, what=f"grade (0-{classes - 1})")
        return frame, classes
    for name in labels:
        frame[name] = check_values(frame, name, (0, 1), path, what=f"value of finding {name!r}").astype(bool)
    return frame, len(labels)


def _check_inside(frame: pd.DataFrame, path: Path) -> None:
    """Every image lies under the dataset's root: an absolute path or a ``..`` would let preprocessing read, and
    write its output beside, a file anywhere (a user's source image overwritten in place)."""
    for row in frame.itertuples():
        name = PurePosixPath(row.image.replace("\\", "/"))
        if name.is_absolute() or ".." in name.parts or (row.image[1:2] == ":"):
            raise DataError(
                f"image {row.image!r} is not a path inside the dataset's root",
                path=path,
                line=int(row.line),
                hint="give each image relative to the dataset's root, without '..' (copy or link the files under it)",
            )


def _check_choice(frame: pd.DataFrame, column: str, allowed: Sequence[str], path: Path) -> None:
    frame[column] = frame[column].str.strip().str.lower()
    bad = ~frame[column].isin(allowed)
    if bad.any():
        row = frame[bad].iloc[0]
        raise DataError(
            f"{column} {row[column]!r} is none of {', '.join(allowed)} ({int(bad.sum())} such rows)",
            path=path,
            line=int(row["line"]),
            hint=f"write {' or '.join(allowed)} in the {column} column",
        )


def write_labels(path: str | Path, rows: Sequence[dict[str, object]], columns: Sequence[str]) -> None:
    """Write a label file of this format (what a user writes; the tests write their datasets with it)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
