"""Check that every labelled image is there and readable, before any later stage trips on it.

Modes: ``none`` (labels only: no image is touched, sizes are left empty), ``exists``, ``header``
(open each file and read its size: catches non-images and most truncations cheaply) and
``decode`` (decode every pixel: slow, catches everything).
"""

from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError

from comcl.errors import DataError
from comcl.parallel import parallel_map

CHECK_MODES = ("none", "exists", "header", "decode")
_SHOWN = 5


def _probe(path: str, mode: str) -> tuple[int, int] | str:
    """The image's (width, height), or the reason it cannot be used."""
    file = Path(path)
    if not file.is_file():
        return "missing"
    if mode == "exists":
        return (-1, -1)
    try:
        with Image.open(file) as image:
            if mode == "decode":
                image.load()
            return image.size
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        return f"unreadable ({error})"


def check_images(frame: pd.DataFrame, mode: str, label_file: Path, workers: int) -> pd.DataFrame:
    """Add ``width`` and ``height`` to ``frame`` (columns ``path``, ``line``); fail on bad images.

    The error lists the first few bad images with the label-file line that names each.
    """
    if mode not in CHECK_MODES:
        raise ValueError(f"image check mode must be one of {CHECK_MODES}, got {mode!r}")
    frame = frame.copy()
    if mode == "none":
        frame["width"] = frame["height"] = pd.array([None] * len(frame), dtype="Int32")
        return frame
    results = parallel_map(functools.partial(_probe, mode=mode), frame["path"].tolist(), workers, desc=f"checking images ({mode})")
    problems = [(line, path, result) for line, path, result in zip(frame["line"], frame["path"], results, strict=True) if isinstance(result, str)]
    if problems:
        listing = "\n".join(f"    line {line}: {path}: {reason}" for line, path, reason in problems[:_SHOWN])
        more = f"\n    ... and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
        raise DataError(
            f"{len(problems)} of {len(frame)} labelled images cannot be used:\n{listing}{more}",
            path=label_file,
            line=int(problems[0][0]),
            hint="put the images where the configuration says (images folder), re-download the broken ones, "
            "or remove their rows from the label file",
        )
    sizes = pd.DataFrame(results, columns=["width", "height"], index=frame.index).astype("Int32")
    sizes[sizes < 0] = pd.NA
    frame[["width", "height"]] = sizes
    return frame
