"""The fundus degradation model of Shen et al., "Modeling and enhancing low-quality retinal fundus
images", IEEE TMI 2020 (the model behind the EyeQ degradation code).

Three families, each modelling one cause of a low-quality photograph:

* ``illumination`` (light transmission disturbance): global brightness, contrast and saturation
  factors, then a bright halo ring near the rim, a dark hole, or both. The published code always
  adds both; drawing one, the other or both gives more varied images with the same components.
* ``spot`` (retinal artifacts such as dust or reflections on the optics): 5-10 blurred bright
  discs of radius 1-5 % of the image height.
* ``blur`` (defocus, cataract): a Gaussian blur with sigma 5-15 px at 512 px height. The
  published code passes the sigma with a kernel of only sigma/3-sigma/2 pixels, which truncates
  the blur; here the Gaussian is applied in full, so the same sigma blurs more.

Combined families are applied in the published order, illumination, then spot, then blur: the
blur stands for the optics imaging everything in front of the sensor, so it also softens the
spots and the halo. Everything happens inside the field of view only: pixels outside it come out
unchanged, and the blur is a normalised convolution, so the black border is not smeared into the
retina's edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import cv2
import numpy as np

FUNDUS_DEGRADATIONS: tuple[str, ...] = ("illumination", "spot", "blur")
FUNDUS_DEGRADATION_TYPES: tuple[tuple[str, ...], ...] = tuple(
    kinds for n in range(1, len(FUNDUS_DEGRADATIONS) + 1) for kinds in combinations(FUNDUS_DEGRADATIONS, n)
)

REFERENCE_HEIGHT = 512
# Halo tints of the published code: white, cyan-ish and yellow-green rings seen in EyePACS.
_HALO_TINTS = ((251, 249, 246), (141, 238, 238), (177, 195, 147))
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class _Fov:
    mask: np.ndarray
    mask8: np.ndarray
    cx: float
    cy: float
    radius: float


def _fov(fov_mask: np.ndarray) -> _Fov:
    """Centre and equivalent radius of the field of view, from its moments."""
    mask8 = fov_mask.astype(np.uint8)
    moments = cv2.moments(mask8, binaryImage=True)
    if moments["m00"] == 0:
        raise ValueError("the field-of-view mask is empty")
    cx, cy = moments["m10"] / moments["m00"], moments["m01"] / moments["m00"]
    return _Fov(fov_mask, mask8, cx, cy, float(np.sqrt(moments["m00"] / np.pi)))


def _grey(image: np.ndarray) -> np.ndarray:
    return image @ _LUMA


def _mean_grey(image: np.ndarray, fov: _Fov) -> float:
    return float(cv2.mean(_grey(image), mask=fov.mask8)[0])


def _radius2(shape: tuple[int, ...], x: float, y: float) -> np.ndarray:
    yy = np.arange(shape[0], dtype=np.float32)[:, None]
    xx = np.arange(shape[1], dtype=np.float32)[None, :]
    return (xx - x) ** 2 + (yy - y) ** 2


def _illumination(image: np.ndarray, fov: _Fov, rng: np.random.Generator) -> dict[str, Any]:
    """Brightness, contrast, saturation (as PIL's ImageEnhance, clipped after each), then a halo
    ring (additive light, Gaussian in radius) and/or a hole (multiplicative darkening)."""
    brightness, contrast, saturation = rng.uniform(0.7, 1.2), rng.uniform(0.6, 1.4), rng.uniform(0.6, 1.4)
    variant = ("halo", "hole", "both")[int(rng.integers(3))]
    # Both sets of parameters are drawn whatever the variant, so every variant consumes the same
    # random stream and the later families see the same draws.
    halo = {
        "x": fov.cx + rng.uniform(-0.1, 0.1) * fov.radius,
        "y": fov.cy + rng.uniform(-0.1, 0.1) * fov.radius,
        "radius": rng.uniform(0.75, 1.0) * fov.radius,
        "width": rng.uniform(0.08, 0.2) * fov.radius,
        "strength": rng.uniform(0.4, 1.0),
        "tint": _HALO_TINTS[int(rng.integers(len(_HALO_TINTS)))],
    }
    angle, distance = rng.uniform(0, 2 * np.pi), 0.6 * fov.radius * np.sqrt(rng.random())
    hole = {
        "x": fov.cx + distance * np.cos(angle),
        "y": fov.cy + distance * np.sin(angle),
        "sigma": rng.uniform(0.2, 0.4) * fov.radius,
        "depth": rng.uniform(0.3, 0.7),
    }

    np.clip(image * brightness, 0, 255, out=image)
    mean = _mean_grey(image, fov)
    np.clip(mean + contrast * (image - mean), 0, 255, out=image)
    grey = _grey(image)[..., None]
    np.clip(grey + saturation * (image - grey), 0, 255, out=image)
    params: dict[str, Any] = {"brightness": brightness, "contrast": contrast, "saturation": saturation}
    if variant in ("halo", "both"):
        # The published halo is as bright as the image's mean grey level; strength scales that.
        halo["amplitude"] = halo["strength"] * _mean_grey(image, fov)
        offset = np.sqrt(_radius2(image.shape, halo["x"], halo["y"])) - halo["radius"]
        ring = np.exp(-(offset**2) / (2 * halo["width"] ** 2))
        image += (halo["amplitude"] / 255.0) * ring[..., None] * np.array(halo["tint"], np.float32)
        params["halo"] = halo
    if variant in ("hole", "both"):
        shadow = 1.0 - hole["depth"] * np.exp(-_radius2(image.shape, hole["x"], hole["y"]) / (2 * hole["sigma"] ** 2))
        image *= shadow[..., None]
        params["hole"] = hole
    np.clip(image, 0, 255, out=image)
    return params


def _spots(image: np.ndarray, fov: _Fov, rng: np.random.Generator) -> dict[str, Any]:
    """Soft bright discs (a disc blurred with sigma = radius / 2) lying wholly inside the FOV."""
    height, width = fov.mask.shape
    depth = cv2.distanceTransform(fov.mask8, cv2.DIST_L2, 5)
    light = np.zeros((height, width), np.float32)
    spots = []
    for _ in range(int(rng.integers(5, 11))):
        radius = rng.uniform(0.01, 0.05) * height
        intensity = rng.uniform(0.05, 0.2) * 255
        candidates = np.flatnonzero(depth >= radius)
        if candidates.size == 0:
            candidates = np.flatnonzero(depth == depth.max())
        y, x = divmod(int(candidates[rng.integers(candidates.size)]), width)
        sigma = radius / 2
        half = int(np.ceil(radius + 3 * sigma))
        x0, y0, x1, y1 = max(0, x - half), max(0, y - half), min(width, x + half + 1), min(height, y + half + 1)
        patch = np.zeros((y1 - y0, x1 - x0), np.float32)
        cv2.circle(patch, (x - x0, y - y0), max(1, round(radius)), intensity, -1, cv2.LINE_AA)
        light[y0:y1, x0:x1] += cv2.GaussianBlur(patch, (0, 0), sigma)
        spots.append({"x": x, "y": y, "radius": radius, "intensity": intensity})
    image += light[..., None]
    np.clip(image, 0, 255, out=image)
    return {"spots": spots}


def _gaussian(stack: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; for large sigma blur a reduced copy and upsample, which costs the same at
    any sigma and stays within about one grey level of the full-size blur."""
    height, width = stack.shape[:2]
    factor = max(1, int(sigma / 2.5))
    if factor == 1:
        return cv2.GaussianBlur(stack, (0, 0), sigma)
    small = cv2.resize(stack, (max(1, round(width / factor)), max(1, round(height / factor))), interpolation=cv2.INTER_AREA)
    # Area averaging already blurs by about factor / sqrt(12); take that out of the remaining blur.
    residual = np.sqrt(max(sigma**2 - factor**2 / 12.0, 1.0)) / factor
    return cv2.resize(cv2.GaussianBlur(small, (0, 0), residual), (width, height), interpolation=cv2.INTER_LINEAR)


def _blur(image: np.ndarray, fov: _Fov, rng: np.random.Generator) -> dict[str, Any]:
    """Normalised convolution blur(image * mask) / blur(mask): only retina is averaged in."""
    sigma_512 = rng.uniform(5, 15)
    sigma = sigma_512 * fov.mask.shape[0] / REFERENCE_HEIGHT
    weight = fov.mask.astype(np.float32)[..., None]
    blurred = _gaussian(np.concatenate([image * weight, weight], axis=-1), sigma)
    image[:] = blurred[..., :3] / np.maximum(blurred[..., 3:], 1e-3)
    np.clip(image, 0, 255, out=image)
    return {"sigma": sigma, "sigma_512": sigma_512}


_FAMILIES = {"illumination": _illumination, "spot": _spots, "blur": _blur}


def _json(value: Any) -> Any:
    """Plain Python numbers and lists, so the parameters go straight into JSON."""
    if isinstance(value, dict):
        return {key: _json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json(item) for item in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    return value


def degrade_fundus(
    image: np.ndarray, fov_mask: np.ndarray, kinds: Sequence[str], rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, Any]]:
    """Degrade an RGB fundus photograph with the given families, inside ``fov_mask`` only.

    The families are applied in the fixed order of ``FUNDUS_DEGRADATIONS`` whatever the order of
    ``kinds``, so ``type`` names them in that order. Returns the uint8 image and the drawn
    parameters (JSON-serialisable), with a key for each applied family.
    """
    unknown = [kind for kind in kinds if kind not in FUNDUS_DEGRADATIONS]
    if unknown or not kinds:
        raise ValueError(f"degradation kinds must be a non-empty subset of {FUNDUS_DEGRADATIONS}, got {list(kinds)}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be H x W x 3 uint8, got {image.shape} {image.dtype}")
    if fov_mask.shape != image.shape[:2]:
        raise ValueError(f"fov_mask shape {fov_mask.shape} does not match image shape {image.shape[:2]}")
    fov = _fov(fov_mask.astype(bool))
    applied = [kind for kind in FUNDUS_DEGRADATIONS if kind in kinds]
    work = image.astype(np.float32)
    params: dict[str, Any] = {"type": "+".join(applied)}
    for kind in applied:
        params[kind] = _FAMILIES[kind](work, fov, rng)
    degraded = np.rint(work).astype(np.uint8)
    return np.where(fov.mask[..., None], degraded, image), _json(params)


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
