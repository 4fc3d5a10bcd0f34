"""A no-reference quality score for chest radiographs, for datasets that publish no quality labels.

Four measurements on the image reduced to ``ANALYSIS_SIZE`` pixels (central 80 %, to leave out
labels and collimation edges):

* sharpness: log variance of the Laplacian after a light Gaussian pre-smoothing (sigma 1 px), so
  that pixel noise does not pass for detail; blur and motion lower it;
* noise: Immerkaer's (1996) fast estimate of the noise standard deviation (a Laplacian-difference
  mask that cancels smooth structure); quantum/electronic noise and grid lines raise it;
* contrast: the standard deviation of the intensities (RMS contrast); flat images have little;
* exposure: the fraction of pixels clipped to the ends of the range (<= 2 or >= 253), plus the
  distance of the median from mid-grey; over- and under-exposure raise it.

Each measurement is standardised over the dataset with the median and the MAD, and the score is

    score = z(sharpness) - z(noise) + z(contrast) - z(exposure)

(higher is better). The images with the lowest scores, a configured share of the dataset
(paper: 43.2 %), are labelled low quality.

Every image is wholly decoded and checked as the ``decode`` image check does
(:func:`comcl.index.images.checked_image`), whatever check the index was asked for: a truncated or
corrupt image is reported with its label-file line, never measured.
"""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from comcl.index.images import UnusableImage, checked_image

ANALYSIS_SIZE = 256
FEATURES = ("sharpness", "noise", "contrast", "exposure")
_SIGNS = {"sharpness": 1.0, "noise": -1.0, "contrast": 1.0, "exposure": -1.0}
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)


def measure(path: str) -> tuple[float, float, float, float]:
    """The four raw measurements of one image file (see the module docstring); :class:`UnusableImage`
    if the file is missing, truncated or corrupt."""
    with checked_image(path, decode=True) as image:
        grey = np.asarray(image.convert("L"), dtype=np.float32)
    grey = cv2.resize(grey, (ANALYSIS_SIZE, ANALYSIS_SIZE), interpolation=cv2.INTER_AREA)
    margin = ANALYSIS_SIZE // 10
    grey = grey[margin:-margin, margin:-margin]
    smooth = cv2.GaussianBlur(grey, (0, 0), 1.0)
    sharpness = float(np.log(cv2.Laplacian(smooth, cv2.CV_32F).var() + 1e-6))
    residual = np.abs(cv2.filter2D(grey, cv2.CV_32F, _IMMERKAER)[1:-1, 1:-1])
    noise = float(np.sqrt(np.pi / 2) * residual.mean() / 6)
    contrast = float(grey.std())
    clipped = float(np.mean((grey <= 2) | (grey >= 253)))
    exposure = clipped + abs(float(np.median(grey)) - 127.5) / 127.5
    return sharpness, noise, contrast, exposure


def measure_or_reason(path: str) -> tuple[float, float, float, float] | str:
    """:func:`measure`, or the reason the image cannot be used: on a worker, a raised error would stop the
    index at the first bad image, without its label-file line (see :func:`comcl.index.images.refuse_unusable`)."""
    try:
        return measure(path)
    except UnusableImage as error:
        return str(error)


def score(measurements: pd.DataFrame) -> pd.Series:
    """Combine the measurements (columns :data:`FEATURES`) into one score, higher = better."""
    total = pd.Series(0.0, index=measurements.index)
    for feature in FEATURES:
        values = measurements[feature].astype(float)
        median = values.median()
        mad = (values - median).abs().median() * 1.4826
        total += _SIGNS[feature] * (values - median) / (mad if mad > 0 else 1.0)
    return total


def low_quality(scores: pd.Series, share: float) -> pd.Series:
    """Mark exactly ``round(share * n)`` lowest-scoring images (ties broken by order) as low quality."""
    n_low = round(share * len(scores))
    order = np.argsort(scores.to_numpy(), kind="stable")
    flags = np.zeros(len(scores), dtype=bool)
    flags[order[:n_low]] = True
    return pd.Series(flags, index=scores.index)
