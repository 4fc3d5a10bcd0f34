"""How much of a photograph's fine structure a degradation keeps.

A degraded image stands for a low-quality photograph of the same eye: its lesions must still be
there to be learnt from (the labels stay), only harder to see. This measure says whether they are.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

SMOOTHING_SIGMA = 2.0  # px; at the degradation models' reference size of 512 px
_SMOOTHING_SIZE = 2 * math.ceil(3 * SMOOTHING_SIGMA) + 1
# How far from the rim a pixel's smoothed Laplacian reaches: half the smoothing kernel, then one.
_REACH = _SMOOTHING_SIZE // 2 + 1


def _detail(image: np.ndarray, inside: np.ndarray) -> float:
    values = image.astype(np.float32)
    grey = cv2.cvtColor(values, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else values
    smoothed = cv2.GaussianBlur(grey, (_SMOOTHING_SIZE, _SMOOTHING_SIZE), SMOOTHING_SIGMA)
    return float(cv2.Laplacian(smoothed, cv2.CV_32F)[inside].var())


def structure_kept(original: np.ndarray, degraded: np.ndarray, fov_mask: np.ndarray) -> float:
    """Variance of the Laplacian of the sigma-2 Gaussian-smoothed grey image inside the field of
    view, ``degraded`` over ``original`` (RGB or grey images of the same size, any dtype).

    The Laplacian responds to what is small and has contrast: at 512 px, vessels and their walls,
    microaneurysms, small haemorrhages and exudates, the disc's rim; the smoothing first removes
    what is smaller still (sensor noise, JPEG blocks), which is not structure. The variance is its
    energy, so the ratio is about 1 where a degradation keeps the structure, the square of the factor
    where it scales the contrast (brightness, contrast), and falls towards 0 as a blur erases it;
    smooth fields (a halo, a hole, an illumination gradient) barely change it. The field of view is
    first eroded by the smoothed Laplacian's reach, so that the rim's step to the black border, whose
    height a change of brightness alters, does not count.
    """
    if original.shape != degraded.shape:
        raise ValueError(f"original {original.shape} and degraded {degraded.shape} differ in shape")
    if fov_mask.shape != original.shape[:2]:
        raise ValueError(f"fov_mask shape {fov_mask.shape} does not match image shape {original.shape[:2]}")
    window = np.ones((2 * _REACH + 1, 2 * _REACH + 1), np.uint8)
    inside = cv2.erode(fov_mask.astype(np.uint8), window, borderValue=0).astype(bool)
    if not inside.any():
        raise ValueError("the field of view is too small to measure structure in")
    base = _detail(original, inside)
    if base == 0:
        raise ValueError("the original image has no structure inside the field of view (it is uniform)")
    return _detail(degraded, inside) / base
