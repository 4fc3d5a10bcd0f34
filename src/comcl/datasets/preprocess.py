"""Fundus preprocessing as EyeQ did it for EyePACS photographs: find the field of view (the bright disc
of the retina on a black background), crop a square around it, pad with black where the disc is cut
by the image border, and resize to a fixed size (EyeQ used 800 x 800).

Finding the field of view, in order:

* ``circle``: threshold the brightest channel between the background level (the image corners) and
  the retina's (the image centre), take the outline of the largest bright region, drop the outline
  points that lie on the image border (where EyePACS cuts the disc at top and bottom), and fit a
  circle to the rest by least squares, refitted twice on the points near the previous fit. A fit
  to the visible rim is chosen over ``cv2.minEnclosingCircle`` (which any bright speck or flare
  touching the rim enlarges, and which is wrong once the disc is cut past its centre row) and over
  ``cv2.HoughCircles`` (whose accumulator thresholds need tuning per resolution and which happily
  returns the optic disc or a vignetting ring). The fit is accepted only if it is plausible: most
  outline points lie on it, they cover enough of its circumference, its radius is a sane fraction
  of the image, its centre is inside, and the disc is clearly brighter than what lies outside.
* ``threshold`` (fallback 1): the bounding box of :func:`comcl.degrade.fundus.estimate_fov_mask`,
  for a field of view that is not a circle (a notched or oval mask).
* ``centre`` (fallback 2): the largest centred square, for an image with no usable background
  (almost black, or bright all over).

EyeQ names five images on which its circle detection fails; here every image gets a field of view,
and each one that needed a fallback is listed with the reason, never dropped.

Two deliberate differences from EyeQ's code: the square is centred on the disc (EyeQ pads the
visible crop evenly, which shifts a disc cut more at the top than at the bottom), and pixels outside
the disc are kept rather than blacked out (EyePACS backgrounds are near black already, and blacking
out would cut retina wherever a fit falls a pixel or two short).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from comcl.datasets import eyeq, table_format
from comcl.errors import DataError
from comcl.fov import estimate_fov_mask
from comcl.images import UnusableImage, checked_image
from comcl.io import JPEG_QUALITY, atomic_directory, remove_partial_writes, write_image, write_json
from comcl.parallel import parallel_map
from comcl.sources import resolve

log = logging.getLogger(__name__)

METHODS = ("circle", "threshold", "centre")
SUFFIXES = (".jpeg", ".jpg", ".png")
# The field of view is searched on a copy whose longer side is at most this: a fit to a thousand
# rim points is sub-pixel there (well under 1 % of the radius), and far cheaper than full resolution.
WORK_SIZE = 512
FOV_THRESHOLD = 15  # the threshold fallback uses estimate_fov_mask's default, as the rest of the pipeline
_CORNER = 0.04  # corner patches (fraction of the shorter side) that give the background level
_LEVEL = 0.15  # the disc outline lies this fraction of the way from background to centre brightness
_MIN_STEP = 6  # ... and at least this many grey levels above the background (JPEG noise)
_MIN_CONTRAST = 12  # grey levels by which the disc must outshine the background
_BORDER = 2  # outline points this close to the image border are the border, not the rim
_MIN_INLIERS = 0.7  # share of rim points within tolerance of the circle
_MIN_COVERAGE = 0.3  # share of the circumference (in 5-degree sectors) that the rim points cover
_RADIUS_RANGE = (0.2, 0.6)  # radius as a fraction of the shorter and of the longer side
_MASK_RANGE = (0.05, 0.97)  # share of the image the threshold mask must cover to be a field of view
_COMMENT_KEY = "comcl-fov:"


@dataclass(frozen=True)
class FovResult:
    """Centre (x, y) and radius of the field of view in pixels (pixel centres at integer coordinates);
    ``reason`` says why the circle (and for ``centre`` also the threshold mask) was not used."""

    x: float
    y: float
    radius: float
    method: str
    reason: str = ""


def _to_full(value: float, scale: float) -> float:
    """A coordinate on the working copy mapped back to the image (cv2.resize's pixel-centre convention)."""
    return (value + 0.5) / scale - 0.5


def _fit_circle(points: np.ndarray) -> tuple[float, float, float]:
    """Algebraic least-squares circle (Kasa): x^2 + y^2 + D x + E y + F = 0 is linear in D, E, F."""
    x, y = points[:, 0], points[:, 1]
    design = np.column_stack([x, y, np.ones_like(x)])
    (d, e, f), *_ = np.linalg.lstsq(design, -(x**2 + y**2), rcond=None)
    cx, cy = -d / 2, -e / 2
    return float(cx), float(cy), float(np.sqrt(max(cx**2 + cy**2 - f, 0.0)))


def _circle(grey: np.ndarray) -> tuple[float, float, float] | str:
    """The disc on the (working-size, brightest-channel) image, or why none was found."""
    h, w = grey.shape
    m = max(2, round(_CORNER * min(h, w)))
    corners = (grey[:m, :m], grey[:m, -m:], grey[-m:, :m], grey[-m:, -m:])
    background = float(np.median(np.concatenate([corner.ravel() for corner in corners])))
    inner = float(np.median(grey[h // 3 : h - h // 3, w // 3 : w - w // 3]))
    if inner - background < _MIN_CONTRAST:
        return f"no bright disc: the image centre ({inner:.0f}) is not brighter than its corners ({background:.0f})"
    level = background + max(_MIN_STEP, _LEVEL * (inner - background))
    mask = cv2.morphologyEx((grey > level).astype(np.uint8), cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return f"nothing brighter than {level:.0f} after removing specks"
    outline = max(contours, key=cv2.contourArea).reshape(-1, 2).astype(np.float64)
    x, y = outline[:, 0], outline[:, 1]
    rim = outline[(x >= _BORDER) & (x <= w - 1 - _BORDER) & (y >= _BORDER) & (y <= h - 1 - _BORDER)]
    if len(rim) < 10:
        return "the bright region has no edge inside the image"

    inliers = rim
    for _ in range(3):
        cx, cy, radius = _fit_circle(inliers)
        residual = np.abs(np.hypot(rim[:, 0] - cx, rim[:, 1] - cy) - radius)
        inliers = rim[residual <= max(1.5, 0.015 * radius)]
        if len(inliers) < 10:
            return "the edge of the bright region is not a circle"
    share = len(inliers) / len(rim)
    if share < _MIN_INLIERS:
        return f"the edge of the bright region is not a circle ({100 * share:.0f} % of it on the best circle)"
    sectors = np.unique(np.floor(np.degrees(np.arctan2(inliers[:, 1] - cy, inliers[:, 0] - cx)) / 5) % 72)
    if len(sectors) / 72 < _MIN_COVERAGE:
        return f"only {100 * len(sectors) / 72:.0f} % of the circle's rim is visible"
    # Outline pixels are the outermost pixels inside the disc: its edge lies half a pixel further out.
    radius += 0.5
    if not _RADIUS_RANGE[0] * min(h, w) <= radius <= _RADIUS_RANGE[1] * max(h, w):
        return f"implausible circle radius {radius:.0f} px in a {w} x {h} image"
    if not (0 <= cx < w and 0 <= cy < h):
        return f"circle centre ({cx:.0f}, {cy:.0f}) outside the {w} x {h} image"
    distance = np.hypot(np.arange(w)[None, :] - cx, np.arange(h)[:, None] - cy)
    outside = grey[distance > 1.05 * radius]
    if not outside.size:
        return "the circle leaves no background in the image"
    contrast = float(grey[distance < 0.95 * radius].mean()) - float(outside.mean())
    if contrast < _MIN_CONTRAST:
        return f"the circle is not brighter than its surroundings (by {contrast:.0f} grey levels)"
    return cx, cy, radius


def _threshold_box(image: np.ndarray) -> tuple[float, float, float] | str:
    """Centre and half the longer side of the threshold mask's bounding box, or why it is unusable."""
    mask = estimate_fov_mask(image, FOV_THRESHOLD)
    share = float(mask.mean())
    if share < _MASK_RANGE[0]:
        return f"only {100 * share:.1f} % of the image is brighter than {FOV_THRESHOLD}"
    if share > _MASK_RANGE[1]:
        return f"{100 * share:.1f} % of the image is brighter than {FOV_THRESHOLD}: no background around a field of view"
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    half = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) / 2
    return float(cols[0] + cols[-1]) / 2, float(rows[0] + rows[-1]) / 2, float(half)


def find_fov(image: np.ndarray) -> FovResult:
    """The field of view of an RGB (or 3-channel grey) uint8 photograph, by the first method that works."""
    h, w = image.shape[:2]
    scale = min(1.0, WORK_SIZE / max(h, w))
    small = image
    if scale < 1.0:
        small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    circle = _circle(cv2.medianBlur(np.ascontiguousarray(small.max(axis=2)), 5))
    if not isinstance(circle, str):
        cx, cy, radius = circle
        return FovResult(_to_full(cx, scale), _to_full(cy, scale), radius / scale, "circle")
    box = _threshold_box(small)
    if not isinstance(box, str):
        cx, cy, half = box
        return FovResult(_to_full(cx, scale), _to_full(cy, scale), half / scale, "threshold", circle)
    return FovResult((w - 1) / 2, (h - 1) / 2, min(h, w) / 2, "centre", f"{circle}; {box}")


def fov_square(fov: FovResult) -> tuple[int, int, int]:
    """The square that preprocessing cuts around ``fov``: its top-left corner ``(x0, y0)`` in the photograph's
    pixels (negative where the disc reaches past the image) and its side."""
    side = max(1, round(2 * fov.radius))
    return round(fov.x - side / 2 + 0.5), round(fov.y - side / 2 + 0.5), side


def preprocess_image(image: np.ndarray, size: int) -> tuple[np.ndarray, FovResult]:
    """The ``size`` x ``size`` square around the field of view, and the field of view.

    The square is centred on the disc: where it reaches past the image (a disc cut at top and
    bottom), the missing part is black, so the disc stays centred rather than the visible part.
    """
    fov = find_fov(image)
    h, w = image.shape[:2]
    x0, y0, side = fov_square(fov)
    square = np.zeros((side, side, *image.shape[2:]), image.dtype)
    sx, sy = max(0, x0), max(0, y0)
    ex, ey = min(w, x0 + side), min(h, y0 + side)
    if ex > sx and ey > sy:
        square[sy - y0 : ey - y0, sx - x0 : ex - x0] = image[sy:ey, sx:ex]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(square, (size, size), interpolation=interpolation), fov


def _read_rgb(path: Path) -> np.ndarray | None:
    """RGB uint8, or ``None`` when cut short or undecodable (the patch stage's reader, without its torch import).

    The cut is checked first: OpenCV pads a cut JPEG with grey, warns without naming the file, and the padded
    square that would be written here passes every later check.
    """
    try:
        with checked_image(path, decode=False):
            pass
    except UnusableImage:
        return None
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _save(path: Path, image: np.ndarray, fov: FovResult) -> None:
    """Write atomically, with the field of view in the file's comment, so that a resumed run can
    report how a kept output was made without decoding its source again."""
    text = _COMMENT_KEY + json.dumps(asdict(fov))
    if path.suffix.lower() == ".png":
        info = PngImagePlugin.PngInfo()
        info.add_text("comment", text)
        write_image(path, Image.fromarray(image), pnginfo=info)
    else:
        write_image(path, Image.fromarray(image), quality=JPEG_QUALITY, comment=text.encode())


def _kept(path: Path, source: Path, size: int) -> FovResult | None:
    """The recorded field of view of an up-to-date output (right size, newer than its source, whole: a file cut short
    by a full disk or a kill is made again)."""
    try:
        if path.stat().st_mtime < source.stat().st_mtime:
            return None
        with checked_image(path, decode=False):
            pass
        with Image.open(path) as image:
            comment = image.info.get("comment", b"")
            if image.size != (size, size):
                return None
    except (UnidentifiedImageError, OSError, UnusableImage):
        return None
    return _fov_of_comment(comment)


def _fov_of_comment(comment: bytes | str) -> FovResult | None:
    text = comment.decode(errors="replace") if isinstance(comment, bytes) else str(comment)
    if not text.startswith(_COMMENT_KEY):
        return None
    try:
        return FovResult(**json.loads(text[len(_COMMENT_KEY) :]))
    except (ValueError, TypeError):
        return None


def recorded_fov(path: str | Path) -> FovResult | None:
    """The field of view that a preprocessed image was cut around, from its comment; ``None`` if it has none."""
    try:
        with Image.open(path) as image:
            return _fov_of_comment(image.info.get("comment", b""))
    except (UnidentifiedImageError, OSError):
        return None


def _process(job: tuple[str, str], destination: Path, size: int, suffix: str) -> dict[str, Any]:
    """One image: kept, written, or reported unreadable; returns what the summary needs."""
    image_id, source = job[0], Path(job[1])
    target = destination / f"{image_id}{suffix}"
    fov = _kept(target, source, size)
    if fov is not None:
        return {"image_id": image_id, "kept": True, **asdict(fov)}
    if not source.is_file():
        return {"image_id": image_id, "unreadable": str(source), "why": "missing"}
    image = _read_rgb(source)
    if image is None:
        return {"image_id": image_id, "unreadable": str(source), "why": "cut short or undecodable"}
    square, fov = preprocess_image(image, size)
    _save(target, square, fov)
    return {"image_id": image_id, "kept": False, **asdict(fov)}


def preprocess_folder(
    sources: Sequence[tuple[str, Path]], destination: Path, size: int, workers: int, suffix: str = ".jpeg"
) -> dict[str, Any]:
    """Preprocess every ``(image id, source path)`` to ``destination/<image id><suffix>``.

    Outputs already there at the right size and newer than their source are kept, so a killed run
    resumes. A missing or undecodable source is listed under ``unreadable`` (and logged), not
    raised: the caller decides whether that is fatal. Images that needed a fallback are listed
    under ``fallback`` with the reason, also for kept outputs (read back from the file's comment).
    """
    if suffix.lower() not in SUFFIXES:
        raise ValueError(f"output suffix must be one of {SUFFIXES}, got {suffix!r}")
    jobs = [(image_id, str(path)) for image_id, path in sources]
    repeated = [image_id for image_id, count in Counter(image_id for image_id, _ in jobs).items() if count > 1]
    if repeated:
        raise ValueError(f"image ids must be unique (one output file each), repeated: {repeated[:5]}")
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    work = functools.partial(_process, destination=destination, size=size, suffix=suffix)
    results = parallel_map(work, jobs, workers, desc=f"preprocessing to {size} px")

    failed = [r for r in results if "unreadable" in r]
    images = [r for r in results if "unreadable" not in r]
    for r in failed:
        log.warning("cannot read image %s (%s): %s", r["image_id"], r["why"], r["unreadable"])
    unreadable = [{"image_id": r["image_id"], "path": r["unreadable"]} for r in failed]
    fallback = [
        {"image_id": r["image_id"], "method": r["method"], "reason": r["reason"]} for r in images if r["method"] != "circle"
    ]
    for item in fallback:
        log.info("%s: field of view by %s (%s)", item["image_id"], item["method"], item["reason"])
    kept = sum(r["kept"] for r in images)
    log.info("preprocessed %d images (%d already up to date), %d unreadable", len(images), kept, len(unreadable))
    return {
        "images": len(images),
        "size": size,
        "methods": {method: sum(r["method"] == method for r in images) for method in METHODS},
        "fallback": fallback,
        "unreadable": unreadable,
    }


def run_preprocess(
    dataset: Mapping[str, Any], destination: str | Path, work: str | Path, summary: str | Path, size: int, workers: int
) -> dict[str, Any]:
    """Every image that a fundus dataset's label files name, preprocessed to the same relative path under
    ``destination`` (EyeQ: ``<split>/<name>``; a table: its ``image`` column).

    The outputs keep the images' names, so the index reads the preprocessed folder with the same label
    files. An image the label files name but the image folder lacks (or that cannot be decoded) stops
    the stage with a list: the index of a partial download would be silently smaller.

    Images are made in ``work`` and hard-linked into ``destination`` once all are there: a workflow
    manager deletes a stage's output folder before it reruns the stage, and the work folder, which
    it does not own, is what lets a stopped run resume where it was.
    """
    work = Path(work)
    remove_partial_writes(work)
    result: dict[str, Any] = {"size": size, "folders": {}}
    made: list[Path] = []
    for label_file, images in _labelled_images(dataset).items():
        groups: dict[tuple[str, str], list[tuple[str, Path]]] = {}  # (folder, suffix) -> (image id, source)
        for name, path in images.items():
            groups.setdefault((str(PurePosixPath(name).parent), PurePosixPath(name).suffix), []).append(
                (PurePosixPath(name).stem, path)
            )
        parts = []
        for (folder, suffix), sources in sorted(groups.items()):
            part = preprocess_folder(sources, work / folder, size, workers, suffix=suffix)
            parts.append(part)
            made += [work / folder / f"{image_id}{suffix}" for image_id, _ in sources]
            counts = result["folders"].setdefault(folder, {"images": 0, "methods": dict.fromkeys(METHODS, 0), "fallback": []})
            counts["images"] += part["images"]
            counts["fallback"] += part["fallback"]
            for method in METHODS:
                counts["methods"][method] += part["methods"][method]
        unreadable = [item for part in parts for item in part["unreadable"]]
        if unreadable:
            listed = ", ".join(item["path"] for item in unreadable[:5]) + (", ..." if len(unreadable) > 5 else "")
            raise DataError(
                f"{len(unreadable)} images named in {label_file.name} are missing or unreadable: {listed}",
                path=label_file,
                hint="complete the image download (or remove those rows from the label file) and run again",
            )
    with atomic_directory(destination) as staging:
        for path in made:
            _link(path, staging / path.relative_to(work))
    write_json(summary, result)
    return result


def _labelled_images(dataset: Mapping[str, Any]) -> dict[Path, dict[str, Path]]:
    """Per label file, the images it names: their path relative to the output folder, and their file."""
    root = Path(dataset["root"])
    if dataset["format"] == "table":
        label_file = resolve(root, dataset["labels"])
        labels, _ = table_format.read_labels(label_file, dataset["task"], dataset.get("findings"), dataset.get("num_classes"))
        return {label_file: {name: root / name for name in labels["image"]}}
    found = {}
    for split, labels in dataset["labels"].items():
        folder = resolve(root, dataset["images"][split])
        label_file = resolve(root, labels)
        found[label_file] = {f"{split}/{name}": folder / name for name in eyeq.read_labels(label_file)["image"]}
    return found


def _link(source: Path, target: Path) -> None:
    """A hard link (no second copy of a dataset's images), or a copy where the file system has none."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
