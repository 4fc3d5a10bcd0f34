"""Where patches are cut: square windows around detected lesions, random windows inside the field of view.

Every window is ``(x0, y0, x1, y1)`` in integer pixels, half-open (``x1 = x0 + side``), so
``image[y0:y1, x0:x1]`` is exactly the window. Boxes are the detector's ``(x1, y1, x2, y2)`` floats.
A window is ``size`` wide, or as wide as a larger lesion box (the patch stage resizes it to ``size``,
so that the patch shows the whole lesion rather than its centre). A window is never shrunk at the
border of the image but shifted inside it: a lesion near the border stays in its patch, off centre.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

Window = tuple[int, int, int, int]


def expand_box(box: tuple[float, float, float, float], width: int, height: int, size: int) -> tuple[Window, bool]:
    """The square window centred on ``box``, shifted inside the image, and whether the box is wider or
    taller than ``size``. The window is ``size`` wide, or, for a larger box, as wide as the box's longer
    side (at most the image's shorter side, the box then clipped to it)."""
    if width < size or height < size:
        raise ValueError(
            f"the image is {width} x {height} px and patches are {size} px: use a smaller patch size or larger images"
        )
    x1, y1, x2, y2 = box
    larger = bool(x2 - x1 > size or y2 - y1 > size)
    side = min(max(size, math.ceil(max(x2 - x1, y2 - y1))), width, height)
    # floor(v + 0.5) rounds halves up, where round() would round them to even and jitter the centre.
    x0 = min(max(math.floor((x1 + x2 - side) / 2 + 0.5), 0), width - side)
    y0 = min(max(math.floor((y1 + y2 - side) / 2 + 0.5), 0), height - side)
    return (x0, y0, x0 + side, y0 + side), larger


def fov_windows(fov: np.ndarray, k: int, size: int, rng: np.random.Generator, min_coverage: float) -> list[Window]:
    """Up to ``k`` distinct windows, drawn uniformly among all positions whose share of field-of-view
    pixels is at least ``min_coverage``; fewer when fewer positions qualify.

    The coverage of every position comes at once from an integral image, so a 4000 x 3000 mask costs
    a few array passes rather than a Python loop over twelve million positions.
    """
    height, width = fov.shape
    if k <= 0 or height < size or width < size:
        return []
    integral = cv2.integral(np.asarray(fov, dtype=bool).view(np.uint8), sdepth=cv2.CV_32S)
    coverage = integral[size:, size:] - integral[:-size, size:]
    coverage -= integral[size:, :-size]
    coverage += integral[:-size, :-size]
    valid = np.flatnonzero(coverage >= min_coverage * size * size)
    chosen = valid[rng.choice(len(valid), size=min(k, len(valid)), replace=False)]
    ys, xs = np.divmod(chosen, coverage.shape[1])
    return [(int(x), int(y), int(x) + size, int(y) + size) for x, y in zip(xs, ys, strict=True)]


def merge_windows(windows: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression of one image's windows: the indices kept, by descending score.

    Highest score first (ties in the given order), a window is dropped when its intersection over
    union with a window already kept exceeds ``iou``; ``iou >= 1`` keeps everything.
    """
    windows = np.asarray(windows, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    x0, y0, x1, y1 = windows.T
    inter_w = np.clip(np.minimum(x1[:, None], x1) - np.maximum(x0[:, None], x0), 0, None)
    inter_h = np.clip(np.minimum(y1[:, None], y1) - np.maximum(y0[:, None], y0), 0, None)
    inter = inter_w * inter_h
    area = (x1 - x0) * (y1 - y0)
    union = area[:, None] + area - inter
    overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    dropped = np.zeros(len(windows), dtype=bool)
    kept = []
    for i in order:
        if not dropped[i]:
            kept.append(i)
            dropped |= overlap[i] > iou
    return np.asarray(kept, dtype=np.intp)
