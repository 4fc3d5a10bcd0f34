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
