"""Check that every labelled image is there and readable, before any later stage trips on it.

Modes, each catching what the one before it does and more:

* ``none``: labels only; no image is touched, sizes are left empty;
* ``exists``: every file is there;
* ``header`` (the default): open each file and read its size; a JPEG or PNG must also still end with
  its end marker (JPEG EOI ``FFD9``, PNG ``IEND``), of which only the last bytes are read. Catches
  non-images and files cut short (an interrupted download or copy keeps its header, so its size reads
  as if it were whole), cheaply; not damage inside a file;
* ``decode``: also decode every pixel, and refuse a file PIL would otherwise pad with grey
  (``ImageFile.LOAD_TRUNCATED_IMAGES``) or that libjpeg finds damaged ("Corrupt JPEG data", "Premature
  end of JPEG file": libjpeg only warns, on stderr, and decodes on). Catches damage inside a file too,
  as far as the format can tell: a PNG's compressed stream notices nearly any, but JPEG has no checksum
  and libjpeg notices only damage that puts its decoder out of step. Slow.

The chest quality score (:mod:`comcl.index.quality`) decodes every image through
:func:`checked_image` as ``decode`` does, whatever the mode.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image, ImageFile

from comcl.errors import DataError
from comcl.parallel import parallel_map

# Channels of an image of each modality as the models read it: colour photographs, grey radiographs.
CHANNELS = {"fundus": 3, "chest": 1}
CHECK_MODES = ("none", "exists", "header", "decode")
_SHOWN = 5
_HINT = (
    "put the images where the configuration says (images folder), re-download the broken ones, "
    "or remove their rows from the label file"
)
# How a whole file ends: its end marker lies in its last _TAIL bytes (some writers pad after it). A cut file
# lacks it: FF D9 cannot occur in a JPEG's coded data (an FF byte there is followed by 00 or a restart code).
_END_MARKERS = {"JPEG": b"\xff\xd9", "MPO": b"\xff\xd9", "PNG": b"IEND"}
_TAIL = 1024
# The starts of libjpeg's warnings about damaged or missing coded data (jerror.h).
_LIBJPEG_DAMAGE = ("Corrupt JPEG data", "Premature end of JPEG file")
# What PIL raises on a file it cannot read (UnidentifiedImageError is an OSError).
_PIL_ERRORS = (OSError, SyntaxError, EOFError, Image.DecompressionBombError)


class UnusableImage(Exception):
    """An image file that cannot be used; the message says why (``missing``, ``truncated (...)``, ...)."""


@contextmanager
def checked_image(path: str | Path, decode: bool) -> Iterator[Image.Image]:
    """The image at ``path``, opened and checked as the ``header`` mode checks it, and with ``decode``
    wholly decoded and checked as the ``decode`` mode does; else :class:`UnusableImage`."""
    file = Path(path)
    if not file.is_file():
        raise UnusableImage("missing")
    with _open(file) as image:
        _check_end(file, image.format)
        if decode:
            _decode(file, image)
        yield image


def _open(file: Path) -> Image.Image:
    try:
        return Image.open(file)
    except _PIL_ERRORS as error:
        raise UnusableImage(f"unreadable ({error})") from error


def _check_end(file: Path, form: str | None) -> None:
    """Refuse a JPEG or PNG without its end marker near its end: the file was cut short."""
    marker = _END_MARKERS.get(form or "")
    if marker is None:
        return
    with file.open("rb") as stream:
        stream.seek(0, os.SEEK_END)
        stream.seek(max(0, stream.tell() - _TAIL))
        if marker not in stream.read():
            raise UnusableImage(f"truncated (the {form} end marker is missing: the file was cut short)")


def _decode(file: Path, image: Image.Image) -> None:
    if image.format in ("JPEG", "MPO"):
        _check_libjpeg(file)
    try:
        with _truncation_refused():
            image.load()
    except _PIL_ERRORS as error:
        raise UnusableImage(f"unreadable ({error})") from error


@contextmanager
def _truncation_refused() -> Iterator[None]:
    """PIL pads a cut or broken file with grey instead of failing where ``ImageFile.LOAD_TRUNCATED_IMAGES``
    is set, as some libraries do at import; nothing here sets it, but the check must not depend on that."""
    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved


def _check_libjpeg(file: Path) -> None:
    """Refuse a JPEG whose coded data libjpeg finds damaged. libjpeg only warns about that, on stderr and
    without the file's name, and decodes on with grey or garbled blocks; PIL silences the warning. So the
    file is decoded once more by OpenCV's libjpeg, at 1/8 scale (every coded block is still read, only the
    inverse DCT is smaller), with its warnings caught."""
    pixels, printed = _decode_printing(np.fromfile(file, dtype=np.uint8))
    damage = [line for line in printed.splitlines() if line.startswith(_LIBJPEG_DAMAGE)]
    if damage:
        raise UnusableImage(f"corrupt (libjpeg: {damage[0]})")
    if pixels is None:
        raise UnusableImage("unreadable (libjpeg cannot decode it: truncated or corrupt)")


def _decode_printing(data: np.ndarray) -> tuple[np.ndarray | None, str]:
    """OpenCV's reduced decoding of encoded ``data``, and what its C libraries printed to stderr meanwhile
    (the process's file descriptor 2, redirected for the call)."""
    sys.stderr.flush()
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            pixels = cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_8)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        return pixels, sink.read().decode(errors="replace")


def _probe(path: str, mode: str) -> tuple[int, int] | str:
    """The image's (width, height), ``(-1, -1)`` where ``mode`` does not read it, or the reason it cannot be used."""
    if mode == "exists":
        return (-1, -1) if Path(path).is_file() else "missing"
    try:
        with checked_image(path, decode=mode == "decode") as image:
            return image.size
    except UnusableImage as error:
        return str(error)


def refuse_unusable(frame: pd.DataFrame, results: Sequence[object], label_file: Path, hint: str) -> None:
    """Raise a :class:`DataError` if any of ``results`` (one per row of ``frame``, columns ``path`` and
    ``line``) is a reason (a string) an image cannot be used, listing the first few with the label-file
    line that names each: workers return reasons rather than raise, so that one run names them all."""
    rows = zip(frame["line"], frame["path"], results, strict=True)
    problems = [(line, path, result) for line, path, result in rows if isinstance(result, str)]
    if not problems:
        return
    listing = "\n".join(f"    line {line}: {path}: {reason}" for line, path, reason in problems[:_SHOWN])
    more = f"\n    ... and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
    raise DataError(
        f"{len(problems)} of {len(frame)} labelled images cannot be used:\n{listing}{more}",
        path=label_file,
        line=int(problems[0][0]),
        hint=hint,
    )


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
    results = parallel_map(
        functools.partial(_probe, mode=mode), frame["path"].tolist(), workers, desc=f"checking images ({mode})"
    )
    refuse_unusable(frame, results, label_file, _HINT)
    sizes = pd.DataFrame(results, columns=["width", "height"], index=frame.index).astype("Int32")
    sizes[sizes < 0] = pd.NA
    frame[["width", "height"]] = sizes
    return frame


def read_image(path: str, channels: int) -> np.ndarray | None:
    """``(H, W, channels)`` uint8 (RGB for colour), or ``None`` when the file cannot be decoded."""
    image = cv2.imread(path, cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR)
    if image is None:
        return None
    return image[..., None] if channels == 1 else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` as fine-tuning sees it: ``size`` x ``size`` (aspect not kept), area interpolation, channel axis kept."""
    # cv2 drops the channel axis of a one-channel image.
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA).reshape(size, size, -1)
