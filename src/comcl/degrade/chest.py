"""Quality degradations of chest radiographs: the ways a real film comes out poor.

* ``blur``: focal-spot unsharpness, a Gaussian of sigma U(1.5, 4) px at 256 px;
* ``motion``: the patient moving or breathing during the exposure, a linear kernel of length
  U(8, 18) px at 256 px in any direction;
* ``grid``: the lead strips of an anti-scatter grid left visible (a stationary or tilted grid), a
  fine sinusoidal stripe pattern of period U(2.5, 3.5) px at 25-65 degrees from the image axes;
* ``noise``: too few photons (quantum mottle, its standard deviation growing with the attenuation,
  since bright pixels received fewer photons) plus Gaussian electronic noise of the detector;
* ``exposure``: over-exposure darkens the film and burns out the lungs (gamma U(1.5, 2.3), offset
  U(-70, -40) grey levels), under-exposure washes it out (gamma U(0.35, 0.55), offset U(20, 45));
  either way clipped, like a saturated detector;
* ``contrast``: a flat, low-latitude film, the grey levels pulled towards their mean by a factor
  U(0.4, 0.75).

Whatever order the kinds are listed in, they are applied in the order an image is formed: the
geometry of the projection (blur, motion), then what the detector plane adds (grid, noise), then
the grey-level mapping (exposure, contrast). Lengths are given at 256 px and scale with the image,
except that the grid period never drops below its 256 px value, since finer stripes would alias.

Blur and motion act on the projected image, not on the detector, so the detector noise of the
input stays as it was: what the filter smoothed away is put back as fresh noise. Without that a
blurred film would also look cleaner, and the quality score (whose noise estimate is Immerkaer's,
see :mod:`comcl.index.quality`) would partly take it for a better one. For the same reason the
grid stripes are oblique: Immerkaer's mask, a product of second differences along x and y,
cancels stripes parallel to either axis; a grid can sit tilted against the detector, as a
free-standing grid does in portable (AP) work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np

CHEST_DEGRADATIONS: tuple[str, ...] = ("noise", "blur", "contrast", "exposure", "motion", "grid")

_REFERENCE_SIZE = 256
_ORDER = ("blur", "motion", "grid", "noise", "exposure", "contrast")
# Bright pixels receive exp(-_DYNAMIC_RANGE) of the photons that reach the darkest ones.
_DYNAMIC_RANGE = float(np.log(50.0))
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def _noise_level(image: np.ndarray) -> float:
    """Immerkaer's (1996) estimate of the standard deviation of additive white noise."""
    residual = np.abs(cv2.filter2D(image, cv2.CV_32F, _IMMERKAER)[1:-1, 1:-1])
    return float(np.sqrt(np.pi / 2) * residual.mean() / 6)


def _keep_detector_noise(before: np.ndarray, after: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Top the filtered image's noise back up to the level it had before filtering."""
    restored = float(np.sqrt(max(_noise_level(before) ** 2 - _noise_level(after) ** 2, 0.0)))
    return after + np.float32(restored) * rng.standard_normal(after.shape, dtype=np.float32), restored


def _blur(image: np.ndarray, scale: float, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    sigma = float(rng.uniform(1.5, 4.0) * scale)
    blurred, restored = _keep_detector_noise(image, cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT), rng)
    return blurred, {"sigma": sigma, "restored_noise": restored}


def _motion_kernel(length: float, angle: float) -> np.ndarray:
    """A one-pixel-wide line segment of ``length`` px at ``angle`` degrees, anti-aliased."""
    half = int(np.ceil(length / 2)) + 1
    v, u = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
    theta = np.deg2rad(angle)
    along = u * np.cos(theta) + v * np.sin(theta)
    across = v * np.cos(theta) - u * np.sin(theta)
    kernel = np.clip(1.0 - np.abs(across), 0, 1) * np.clip(length / 2 + 0.5 - np.abs(along), 0, 1)
    return (kernel / kernel.sum()).astype(np.float32)


def _motion(image: np.ndarray, scale: float, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    length, angle = float(rng.uniform(8.0, 18.0) * scale), float(rng.uniform(0.0, 180.0))
    smeared = cv2.filter2D(image, -1, _motion_kernel(length, angle), borderType=cv2.BORDER_REFLECT)
    smeared, restored = _keep_detector_noise(image, smeared, rng)
    return smeared, {"length": length, "angle": angle, "restored_noise": restored}


def _grid(image: np.ndarray, scale: float, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    """Additive in grey because grey is nearly linear in log exposure, where the strips' shadow
    (a transmission factor) adds."""
    period = float(rng.uniform(2.5, 3.5) * max(scale, 1.0))
    amplitude = float(rng.uniform(8.0, 15.0))
    angle = float(rng.uniform(25.0, 65.0) + 90.0 * rng.integers(0, 2))
    phase = float(rng.uniform(0.0, 2 * np.pi))
    theta = np.deg2rad(angle)
    rows = np.arange(image.shape[0], dtype=np.float32)[:, None] * np.float32(np.sin(theta))
    cols = np.arange(image.shape[1], dtype=np.float32)[None, :] * np.float32(np.cos(theta))
    stripes = np.float32(amplitude) * np.cos(np.float32(2 * np.pi / period) * (rows + cols) + np.float32(phase))
    return image + stripes, {"period": period, "amplitude": amplitude, "angle": angle, "phase": phase}


def _noise(image: np.ndarray, scale: float, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    """Quantum noise of ``photons`` quanta per darkest pixel (Gaussian approximation of Poisson,
    seen through the log display) plus electronic noise, as one Gaussian of the summed variance."""
    photons, electronic = float(rng.uniform(250.0, 1200.0)), float(rng.uniform(1.5, 5.0))
    quantum = np.float32(255.0 / _DYNAMIC_RANGE / np.sqrt(photons)) * np.exp(np.float32(_DYNAMIC_RANGE / 2 / 255.0) * image)
    sigma = np.sqrt(quantum**2 + np.float32(electronic**2))
    return image + sigma * rng.standard_normal(image.shape, dtype=np.float32), {"photons": photons, "electronic": electronic}


def _exposure(image: np.ndarray, scale: float, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    """The input is clipped first: grid or noise can leave values outside 0-255, and the power
    needs them inside."""
    over = rng.random() < 0.5
    gamma = float(rng.uniform(1.5, 2.3) if over else rng.uniform(0.35, 0.55))
    offset = float(rng.uniform(-70.0, -40.0) if over else rng.uniform(20.0, 45.0))
    mapped = np.float32(255.0) * np.power(np.clip(image, 0, 255) / np.float32(255.0), np.float32(gamma)) + np.float32(offset)
    return np.clip(mapped, 0, 255), {"direction": "over" if over else "under", "gamma": gamma, "offset": offset}


def _contrast(image: np.ndarray, scale: float, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    factor = float(rng.uniform(0.4, 0.75))
    mean = np.float32(image.mean())
    return mean + np.float32(factor) * (image - mean), {"factor": factor, "mean": float(mean)}


# Each takes the float32 image, the scale from 256 px to its size and the generator.
_APPLY: dict[str, Callable[[np.ndarray, float, np.random.Generator], tuple[np.ndarray, dict[str, Any]]]] = {
    "blur": _blur,
    "motion": _motion,
    "grid": _grid,
    "noise": _noise,
    "exposure": _exposure,
    "contrast": _contrast,
}


def degrade_chest(image: np.ndarray, kinds: Sequence[str], rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    """Degrade an HxW uint8 radiograph by ``kinds`` (from :data:`CHEST_DEGRADATIONS`).

    Returns the degraded uint8 image and ``{"type": "+".join(kinds), kind: {drawn values}, ...}``,
    JSON-serialisable, with the values drawn for every applied kind.
    """
    kinds = [str(kind) for kind in kinds]
    unknown = sorted(set(kinds) - set(CHEST_DEGRADATIONS))
    if unknown:
        raise ValueError(f"unknown chest degradation(s) {unknown}; valid kinds are {list(CHEST_DEGRADATIONS)}")
    if not kinds or len(set(kinds)) != len(kinds):
        raise ValueError(f"give each chest degradation at most once, and at least one: {kinds}")
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxW uint8 grayscale image, got shape {image.shape} and dtype {image.dtype}")
    scale = max(image.shape) / _REFERENCE_SIZE
    degraded = image.astype(np.float32)
    params: dict[str, Any] = {"type": "+".join(kinds)}
    for kind in _ORDER:
        if kind in kinds:
            degraded, params[kind] = _APPLY[kind](degraded, scale, rng)
    return np.clip(np.rint(degraded), 0, 255).astype(np.uint8), params


def random_chest_kinds(rng: np.random.Generator) -> list[str]:
    """One or two distinct kinds, as a poor film usually has one or two faults."""
    count = int(rng.integers(1, 3))
    return [str(kind) for kind in rng.choice(CHEST_DEGRADATIONS, size=count, replace=False)]
