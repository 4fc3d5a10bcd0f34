"""A no-reference quality score for chest radiographs, for datasets that publish no quality labels.

It measures what degrades a radiograph (noise, blur, contrast, exposure, grid lines), not what makes a fundus
photograph usable (field of view, illumination, focus on the vessels): a fundus dataset brings its quality labels
(:func:`comcl.index.build.index_table` refuses a fundus table without them), and the index's summary names the
measure that decided each dataset's quality (``quality_source``).

Every measurement is taken on the image reduced to ``ANALYSIS_SIZE`` pixels on its longer side (area
averaging; a smaller image is measured as it is, since enlarging adds no detail), so that lengths are
fractions of the film, as the degradation model (:mod:`comcl.degrade.chest`) gives them: the same film
stored at 1024 or at 512 px is the same image there. Only the central 80 % is measured, to leave out
labels and collimation edges. Five measurements, each in natural-log units of an amplitude (one unit is
a factor e) or, for exposure, a share of the grey range:

* contrast: ``log C``, C the standard deviation of the image smoothed with a Gaussian of 3 px, the
  contrast of the anatomy, which neither noise nor a grid reaches;
* noise: the noise standard deviation sigma from Immerkaer's (1996) mask, in the flattest blocks only:
  the mask cancels smooth structure but not the fine structure of the lungs, and reading that structure as
  noise is what let a blur, which removes it, pass for a cleaner film. Counted as
  ``0.5 * log(1 + (sigma / (0.05 C))^2)``: noise against the anatomy's contrast, so that a flat film is not
  also read as a less noisy one, and near zero below 5 % of it, where it hides nothing;
* sharpness: ``0.5 * log(D) - log C``, D the energy of a band-pass (Gaussians of 0.7 and 1.4 px, structures
  of about 3-9 px, 1-3.5 % of the film) less the energy the measured noise puts into that band: a blur of the
  model's mildest sigma (1.5 px) takes most of it, noise does not add to it, and the anti-scatter grid
  (stripes of 2.5-3.5 px) barely reaches it;
* exposure: the share of pixels clipped to the ends of the range (<= 2 or >= 253) plus the distance of the
  mean grey from mid-grey as a share of half the range; over- and under-exposure raise both, a flattened
  film leaves the mean where it was;
* periodic: a pattern of stripes (grid lines, moire) concentrates its energy in one spatial frequency:
  the highest ratio, between 0.1 and 0.5 cycles per pixel, of the power spectrum to the mean (log) power at its radius,
  counted as half the log ratio beyond ``e^6``, a peak that anatomy and noise do not reach.

The score of a film is

    score = sharpness - 0.5 noise + contrast - 2 exposure - periodic

(higher is better), a fixed combination rather than a standardisation over the dataset: with each
measurement divided by its spread over the dataset, the weights were set by how alike the dataset's films
happen to be, and real films, whose noise differs little, gave a small loss of noise more weight than a large
loss of detail. At the analysis size a blur removes noise too, and the degradation model can put back only
the noise its own estimate sees at full resolution (fine detector noise of real films is partly correlated,
so a blurred film keeps less of it at the analysis size). The noise term is therefore half the weight of the
sharpness term and nearly flat at low noise: removing all the noise of a film whose noise is 5 % of its
contrast gains 0.17, less than the 0.5 or more of sharpness the mildest blur takes from the films of the
tests. The images with the lowest scores, a configured share of the dataset (paper: 43.2 %), are labelled
low quality.

Every image is wholly decoded and checked as the ``decode`` image check does
(:func:`comcl.images.checked_image`), whatever check the index was asked for: a truncated or
corrupt image is reported with its label-file line, never measured.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import cv2
import numpy as np
import pandas as pd

from comcl.images import UnusableImage, checked_image

# How an index's summary names this measure (its ``quality_source``, beside "labels").
SOURCE = "chest radiograph score (comcl.index.quality)"
ANALYSIS_SIZE = 256
FEATURES = ("sharpness", "noise", "contrast", "exposure", "periodic")
_WEIGHTS = {"sharpness": 1.0, "noise": -0.5, "contrast": 1.0, "exposure": -2.0, "periodic": -1.0}

_MARGIN = 0.1  # share of each side left out
_CONTRAST_SIGMA = 3.0
_DETAIL_SIGMAS = (0.7, 1.4)
_NOISE_FLOOR = 0.05  # noise below this share of the contrast hides nothing
_BLOCK = 8  # px of the blocks whose flattest _FLAT_PERCENTILE % give the noise
_FLAT_PERCENTILE = 10.0
_CLIP_LOW, _CLIP_HIGH = 2, 253
# Cycles per pixel: below, anatomy; beyond 0.5 (the corners of the spectrum), rings too short to average.
_PERIODIC_BAND = (0.1, 0.5)
_PERIODIC_THRESHOLD = 6.0  # log power ratio
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
# The mask's response to white noise of unit variance has variance 36 (the sum of its squared entries).
_IMMERKAER_GAIN = float((_IMMERKAER**2).sum())

Measurements = tuple[float, float, float, float, float]


def measure(path: str) -> Measurements:
    """The measurements of one image file (:data:`FEATURES`, see the module docstring); :class:`UnusableImage`
    if the file is missing, truncated or corrupt."""
    with checked_image(path, decode=True) as image:
        grey = np.asarray(image.convert("L"), dtype=np.float32)
    return measure_pixels(grey)


def measure_pixels(grey: np.ndarray) -> Measurements:
    """The measurements of an HxW grayscale image (0-255), in the order of :data:`FEATURES`."""
    image = _analysis_image(np.asarray(grey, dtype=np.float32))
    contrast = max(float(_central(cv2.GaussianBlur(image, (0, 0), _CONTRAST_SIGMA)).std()), 1e-3)
    clipped = _central((image <= _CLIP_LOW) | (image >= _CLIP_HIGH))
    variance = _noise_variance(image, clipped)
    energy = float(np.mean(_central(_detail_band(image)) ** 2))
    detail = max(energy - _band_noise_gain() * variance, 0.01 * energy, 1e-6)
    sharpness = 0.5 * float(np.log(detail)) - float(np.log(contrast))
    noise = 0.5 * float(np.log1p(variance / (_NOISE_FLOOR * contrast) ** 2))
    exposure = float(clipped.mean()) + abs(float(image.mean()) - 127.5) / 127.5
    return sharpness, noise, float(np.log(contrast)), exposure, _periodic(_central(image))


def measure_or_reason(path: str) -> Measurements | str:
    """:func:`measure`, or the reason the image cannot be used: on a worker, a raised error would stop the
    index at the first bad image, without its label-file line (see :func:`comcl.images.refuse_unusable`)."""
    try:
        return measure(path)
    except UnusableImage as error:
        return str(error)


def score(measurements: pd.DataFrame) -> pd.Series:
    """Combine the measurements (columns :data:`FEATURES`) into one score per image, higher = better. Each
    image's score depends on its own measurements only."""
    total = pd.Series(0.0, index=measurements.index)
    for feature, weight in _WEIGHTS.items():
        total += weight * measurements[feature].astype(float)
    return total


def low_quality(scores: pd.Series, share: float) -> pd.Series:
    """Mark exactly ``round(share * n)`` lowest-scoring images (ties broken by order) as low quality."""
    n_low = round(share * len(scores))
    order = np.argsort(scores.to_numpy(), kind="stable")
    flags = np.zeros(len(scores), dtype=bool)
    flags[order[:n_low]] = True
    return pd.Series(flags, index=scores.index)


def shares_scored_lower(originals: Sequence[np.ndarray], degraded: Mapping[str, Sequence[np.ndarray]]) -> dict[str, float]:
    """For each kind of ``degraded`` (kind -> one degraded version of every original, in the same order), the
    share of the degraded images that score below their original, all scored together as an index would."""
    groups = {"original": list(originals), **{kind: list(images) for kind, images in degraded.items()}}
    for kind, images in groups.items():
        if len(images) != len(groups["original"]):
            raise ValueError(f"{len(images)} {kind} images for {len(groups['original'])} originals")
    rows = [measure_pixels(image) for images in groups.values() for image in images]
    scores = score(pd.DataFrame(rows, columns=FEATURES)).to_numpy().reshape(len(groups), -1)
    return {kind: float(np.mean(scores[i + 1] < scores[0])) for i, kind in enumerate(degraded)}


def _analysis_image(grey: np.ndarray) -> np.ndarray:
    scale = ANALYSIS_SIZE / max(grey.shape)
    if scale >= 1:
        return grey
    size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA)


def _central(image: np.ndarray) -> np.ndarray:
    """The central 80 %; filters run on the whole image first, so that the measured part has no border effects."""
    rows, cols = int(image.shape[0] * _MARGIN), int(image.shape[1] * _MARGIN)
    return image[rows : image.shape[0] - rows, cols : image.shape[1] - cols]


def _detail_band(image: np.ndarray) -> np.ndarray:
    fine, coarse = _DETAIL_SIGMAS
    return cv2.GaussianBlur(image, (0, 0), fine) - cv2.GaussianBlur(image, (0, 0), coarse)


def _block_means(values: np.ndarray) -> np.ndarray:
    rows, cols = values.shape[0] // _BLOCK, values.shape[1] // _BLOCK
    return values[: rows * _BLOCK, : cols * _BLOCK].reshape(rows, _BLOCK, cols, _BLOCK).mean(axis=(1, 3))


def _flat_estimate(image: np.ndarray, clipped: np.ndarray) -> float:
    """The low percentile of Immerkaer's squared residual over the blocks of the central part, leaving out
    blocks with clipped pixels (which have no noise left to measure)."""
    residual = _central(cv2.filter2D(image, cv2.CV_32F, _IMMERKAER)) ** 2 / _IMMERKAER_GAIN
    usable = _block_means(clipped.astype(np.float32)) == 0
    if not usable.any():
        return 0.0
    return float(np.percentile(_block_means(residual)[usable], _FLAT_PERCENTILE))


@functools.cache
def _flat_bias() -> float:
    """What :func:`_flat_estimate` reads on white noise of unit variance: the flattest blocks of pure noise lie
    below its variance, and dividing by this makes the estimate that variance."""
    noise = np.random.default_rng(0).standard_normal((ANALYSIS_SIZE, ANALYSIS_SIZE)).astype(np.float32)
    return _flat_estimate(noise, np.zeros(_central(noise).shape, dtype=bool))


def _noise_variance(image: np.ndarray, clipped: np.ndarray) -> float:
    """The variance of the image's noise, read where the film is flattest (see the module docstring)."""
    return _flat_estimate(image, clipped) / _flat_bias()


@functools.cache
def _band_noise_gain() -> float:
    """The energy the detail band passes of white noise of unit variance: the sum of its squared kernel."""
    impulse = np.zeros((41, 41), dtype=np.float32)
    impulse[20, 20] = 1.0
    return float((_detail_band(impulse) ** 2).sum())


@functools.cache
def _spectrum_layout(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For an image of ``shape``: its Hann window, the radius (in frequency bins) of each bin of its real
    spectrum, and which bins lie in the periodic band."""
    window = np.outer(np.hanning(shape[0]), np.hanning(shape[1])).astype(np.float32)
    radius = np.hypot(np.fft.fftfreq(shape[0])[:, None], np.fft.rfftfreq(shape[1])[None, :])
    low, high = _PERIODIC_BAND
    return window, np.rint(radius * max(shape)).astype(np.int64), (radius >= low) & (radius < high)


def _periodic(image: np.ndarray) -> float:
    window, rings, band = _spectrum_layout(image.shape)
    if not band.any():
        return 0.0
    power = np.log(np.abs(np.fft.rfft2((image - image.mean()) * window)) ** 2 + 1e-12)[band]
    ring = rings[band]
    mean = np.bincount(ring, power) / np.maximum(np.bincount(ring), 1)
    return 0.5 * max(0.0, float((power - mean[ring]).max()) - _PERIODIC_THRESHOLD)
