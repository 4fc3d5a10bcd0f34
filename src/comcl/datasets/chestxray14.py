"""NIH ChestX-ray14 files: ``Data_Entry_2017.csv``, ``BBox_List_2017.csv`` and the split lists.

Format quirks handled here: the Data_Entry header has two bracketed two-column fields
(``OriginalImage[Width,Height]``, ``OriginalImagePixelSpacing[x,y]``), so its 9 header names cover 11
fields per row (the 2017 release adds an empty 12th); the BBox list header is
``Image Index,Finding Label,Bbox [x,y,w,h],,,`` (four numbers under one name, then empty columns),
and it spells ``Infiltrate`` where Data_Entry says ``Infiltration``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from comcl.datasets.csv_checks import check_columns, check_unique, read_csv_checked
from comcl.errors import DataError
from comcl.io import atomic_path

DATA_ENTRY_FILE = "Data_Entry_2017.csv"
BBOX_FILE = "BBox_List_2017.csv"
SPLIT_FILES = {"train": "train_val_list.txt", "test": "test_list.txt"}
IMAGES_DIR = "images"

DATA_ENTRY_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)
BBOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"
# How pandas splits the bracketed header fields, and the names this package gives them.
_SPLIT_HEADER_NAMES = {
    "OriginalImage[Width": "OriginalImage Width",
    "Height]": "OriginalImage Height",
    "OriginalImagePixelSpacing[x": "OriginalImagePixelSpacing x",
    "y]": "OriginalImagePixelSpacing y",
}
DATA_ENTRY_COLUMNS = (
    "Image Index",
    "Finding Labels",
    "Follow-up #",
    "Patient ID",
    "Patient Age",
    "Patient Gender",
    "View Position",
    *_SPLIT_HEADER_NAMES.values(),
)

TASK_FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax")
OTHER_FINDINGS = ("Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")
NO_FINDING = "No Finding"
BBOX_SPELLING = {"Infiltrate": "Infiltration"}


def read_data_entry(path: str | Path) -> pd.DataFrame:
    """Read ``Data_Entry_2017.csv``; adds ``findings`` (a tuple of names) and ``line``."""
    path = Path(path)
    frame = read_csv_checked(path, dtype=str, keep_default_na=False)
    frame = frame.rename(columns=_SPLIT_HEADER_NAMES)
    frame = frame.drop(columns=[c for c in frame.columns if c.startswith("Unnamed")])
    check_columns(frame, DATA_ENTRY_COLUMNS, path, expected_header=DATA_ENTRY_HEADER)
    if frame.empty:
        raise DataError("the file has a header but no rows", path=path, hint="check that the download completed")
    frame["line"] = frame.index + 2
    known = set(TASK_FINDINGS) | set(OTHER_FINDINGS)
    findings = []
    for labels, line in zip(frame["Finding Labels"], frame["line"], strict=True):
        names = tuple(name.strip() for name in labels.split("|"))
        if names == (NO_FINDING,):
            names = ()
        unknown = [name for name in names if name not in known]
        if unknown:
            raise DataError(
                f"unknown finding {unknown[0]!r} in 'Finding Labels' {labels!r}",
                path=path,
                line=int(line),
                hint=f"findings are '|'-separated from {sorted(known)}, or '{NO_FINDING}' alone",
            )
        findings.append(names)
    frame["findings"] = findings
    check_unique(frame, "Image Index", path)
    return frame


def read_bbox_list(path: str | Path) -> pd.DataFrame:
    """Read ``BBox_List_2017.csv`` into ``image, finding, x, y, w, h, line`` (Data_Entry spelling)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=path, hint="check the path in the configuration, or download the file")
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or rows[0][:2] != ["Image Index", "Finding Label"]:
        raise DataError("unexpected header", path=path, line=1, hint=f"the header must read: {BBOX_HEADER}")
    records = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(field.strip() for field in row):
            continue
        if len(row) < 6 or any(field.strip() for field in row[6:]):
            raise DataError(
                f"expected 6 fields (image, finding, x, y, w, h), found {row}",
                path=path,
                line=line,
                hint="fix or remove the row",
            )
        finding = BBOX_SPELLING.get(row[1].strip(), row[1].strip())
        if finding not in TASK_FINDINGS:
            raise DataError(
                f"unknown finding {row[1]!r}",
                path=path,
                line=line,
                hint=f"boxes are given for {list(TASK_FINDINGS)} ('Infiltrate' is read as 'Infiltration')",
            )
        try:
            x, y, w, h = (float(value) for value in row[2:6])
        except ValueError as error:
            raise DataError(f"box is not four numbers: {row[2:6]}", path=path, line=line, hint="fix or remove the row") from error
        if not all(math.isfinite(value) for value in (x, y, w, h)):
            raise DataError(f"box has a NaN or infinite number: {row[2:6]}", path=path, line=line, hint="fix or remove the row")
        if w <= 0 or h <= 0:
            raise DataError(f"box has no area: w={w}, h={h}", path=path, line=line, hint="fix or remove the row")
        records.append((row[0].strip(), finding, x, y, w, h, line))
    return pd.DataFrame(records, columns=["image", "finding", "x", "y", "w", "h", "line"])


def read_split_list(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=path, hint="check the path in the configuration, or download the file")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def write_data_entry(path: str | Path, frame: pd.DataFrame) -> None:
    """Write rows (columns :data:`DATA_ENTRY_COLUMNS`) under the published header."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        handle.write(DATA_ENTRY_HEADER + "\n")
        csv.writer(handle, lineterminator="\n").writerows(frame[list(DATA_ENTRY_COLUMNS)].itertuples(index=False))


def write_bbox_list(path: str | Path, boxes: Iterable[tuple[str, str, float, float, float, float]]) -> None:
    """Write ``(image, finding, x, y, w, h)`` rows, spelling findings as the published list does."""
    spelling = {value: key for key, value in BBOX_SPELLING.items()}
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        handle.write(BBOX_HEADER + "\n")
        writer = csv.writer(handle, lineterminator="\n")
        for image, finding, *box in boxes:
            writer.writerow([image, spelling.get(finding, finding), *box])


def write_split_list(path: str | Path, images: Iterable[str]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{name}\n" for name in images))
