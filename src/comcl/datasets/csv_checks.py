"""Checks shared by the label-file readers, each failing with a message that names file and line.

Readers keep a ``line`` column (the 1-based line in the file, header = line 1) so that a problem
found late, such as a missing image, can still point at its row.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from comcl.errors import DataError


def read_csv_checked(path: Path, **kwargs: Any) -> pd.DataFrame:
    if not path.is_file():
        raise DataError("file not found", path=path, hint="check the path in the configuration, or download the file")
    try:
        return pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataError(f"cannot parse as CSV: {error}", path=path, hint="the file may be truncated or not a CSV") from error


def check_columns(frame: pd.DataFrame, required: Iterable[str], path: Path, expected_header: str) -> None:
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise DataError(
            f"missing column(s) {', '.join(map(repr, missing))}; found {list(map(str, frame.columns))}",
            path=path,
            line=1,
            hint=f"the header must read: {expected_header}",
        )


def check_values(
    frame: pd.DataFrame, column: str, allowed: Collection[int] | Mapping[int, Any], path: Path, what: str
) -> pd.Series:
    """Parse ``column`` as integers from ``allowed``; the first offending row is reported. A value must be written
    as an integer: "3.0" is refused, as a float in a label column usually means a file that went through a
    spreadsheet or a column with missing values."""
    text = frame[column].str.strip()
    values = pd.to_numeric(text.where(text.str.fullmatch(r"[+-]?\d+")), errors="coerce")
    bad = values.isna() | ~values.isin(list(allowed))
    if bad.any():
        row = frame[bad].iloc[0]
        raise DataError(
            f"unknown {what} {row[column]!r} in column {column!r} ({int(bad.sum())} such rows)",
            path=path,
            line=int(row["line"]),
            hint=f"allowed values are {sorted(allowed)}, written as integers (3, not 3.0); fix or remove the row",
        )
    return values.astype("int8")


def check_unique(frame: pd.DataFrame, column: str, path: Path) -> None:
    """Each image once: the first repeated value is reported with every line it occurs on."""
    repeated = frame[frame[column].duplicated(keep=False)]
    if repeated.empty:
        return
    value = repeated[column].iloc[0]
    lines = repeated.loc[repeated[column] == value, "line"].astype(int).tolist()
    raise DataError(
        f"image {value!r} is listed more than once (lines {', '.join(map(str, lines))})",
        path=path,
        line=lines[1],
        hint="each image must have exactly one row; remove the duplicates",
    )
