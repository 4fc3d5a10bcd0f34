"""The field of view of a fundus photograph: the bright disc of retina inside the camera's dark surround, which
preprocessing crops to, degradation stays within and patch windows are drawn from."""

from __future__ import annotations

import cv2
import numpy as np


def estimate_fov_mask(image: np.ndarray, threshold: int = 15) -> np.ndarray:
    """The field of view of a photograph without a known mask: pixels whose brightest channel
    exceeds ``threshold``, largest connected component, holes (dark lesions, vessels) filled."""
    bright = (image.max(axis=2) > threshold).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(bright, connectivity=8)
    if n <= 1:
        return np.zeros(image.shape[:2], bool)
    region = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    _, outside = cv2.connectedComponents((~region).astype(np.uint8), connectivity=4)
    border = np.unique(np.concatenate([outside[0], outside[-1], outside[:, 0], outside[:, -1]]))
    return region | ~np.isin(outside, border)


def inner_fov(mask: np.ndarray, margin: float) -> np.ndarray:
    """The field of view less its rim: the pixels more than ``margin`` x R inside it, R the radius of a disc of the
    mask's area. The image border counts as outside, so a field of view that the photograph cuts loses a rim there too.

    A detection centred on the rim is where the disc's dark edge and the camera's surround meet, which a detector
    reads as a dark lesion; a lesion drawn or photographed there is rare and mostly cut off anyway.
    """
    if margin <= 0 or not mask.any():
        return mask.astype(bool)
    radius = np.sqrt(mask.sum() / np.pi)
    padded = np.pad(mask.astype(np.uint8), 1)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    return distance > margin * radius


def boxes_inside(boxes: np.ndarray, mask: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """Which boxes ``(x1, y1, x2, y2)`` (N, 4) to keep: centre inside ``inner`` and at least half the box's area
    inside ``mask``."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not len(boxes):
        return np.zeros(0, dtype=bool)
    height, width = mask.shape
    cx = np.clip(np.floor((boxes[:, 0] + boxes[:, 2]) / 2), 0, width - 1).astype(np.intp)
    cy = np.clip(np.floor((boxes[:, 1] + boxes[:, 3]) / 2), 0, height - 1).astype(np.intp)
    integral = cv2.integral(np.asarray(mask, dtype=bool).view(np.uint8), sdepth=cv2.CV_32S)
    x0, x1 = (np.clip(np.rint(boxes[:, i]), 0, width).astype(np.intp) for i in (0, 2))
    y0, y1 = (np.clip(np.rint(boxes[:, i]), 0, height).astype(np.intp) for i in (1, 3))
    x1, y1 = np.maximum(x1, np.minimum(x0 + 1, width)), np.maximum(y1, np.minimum(y0 + 1, height))
    inside = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    area = np.maximum((x1 - x0) * (y1 - y0), 1)
    return inner[cy, cx] & (inside >= 0.5 * area)
