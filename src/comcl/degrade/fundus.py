"""The fundus degradation model of Shen et al., "Modeling and enhancing low-quality retinal fundus
images", IEEE TMI 2020, as their released code applies it (joanshen0508/Fundus-correction-cofe-Net,
``degradation_code/degrad_de.py``), re-written here.

The released code works on a 512 x 512 square with the field of view inscribed in it (its
preprocessing crops the disc and resizes), with values in [0, 1], each component clipped to
[0, 1]. Here that square is fitted to the photograph (the *frame*: centred on the field of view,
its side the disc's diameter), every length drawn at 512 px is multiplied by ``side / 512``, and
every kernel size the code hands to ``cv2.GaussianBlur`` is stretched by the same factor (see
:func:`blur_taps`). Three families, each modelling one cause of a low-quality photograph:

* ``illumination`` (light transmission disturbance), always its three parts in this order:

  - colour: brightness U(0.7, 1.2), contrast U(0.6, 1.4), saturation U(0.6, 1.4), as torchvision's
    ``adjust_*`` (a factor; a blend with the mean grey level of the whole square; a blend with each
    pixel's grey level);
  - halo: light added between two discs about a centre within 1/8 of the square's side of its
    centre: inside the outer disc (beyond the square's corners) and outside the inner one, of
    diameter U(0.75, 1.0) x the side, so the rim of the retina brightens. Its light is the square's
    mean value, tinted cyan (141, 238, 238) or yellow-green (177, 195, 147) / 255; the ring's edge is
    smoothed by a kernel as wide as the inner disc falls short of the square around the centre
    (0-256 px, sigma 2/3 of it);
  - hole: a dark disc of diameter 0.4-0.7 x the side, its centre within 1/4 (across) and 1/8 (down)
    of the side from the centre, that *adds* -0.26 - U(0.05, 0.06) x the retina's mean value, smoothed
    by a kernel of 0.55-0.75 x its diameter per axis (sigma 0.8 x the larger); none on a retina whose
    mean is at most 0.25, as in the code.

* ``spot`` (retinal artifacts such as dust or reflections on the optics): 5-10 spots. For each,
  r = 6-25 px (1-5 % of 512) but the disc drawn has radius r // 2 (3-12 px); it *adds*
  k (1 - exp(-beta d)) with k = 14/25 + 1 - r/25, beta = 0.5 + r/25, d = 0.3 r/25 (0.07 for r = 6 up
  to 0.20 for r = 25), smoothed by a kernel of s/5-s/4 px per axis, made odd (3-13 px), with
  s = 2 (5 + 20 r/25) as its sigma: close to a small box filter.
* ``blur`` (defocus, cataract): sigma U(5, 15), but a kernel of only sigma/3-sigma/2 px per axis,
  made odd (1-7 px): a mild blur, close to a small box filter, that leaves the vessels visible, as in
  real "Usable" EyeQ photographs. (A full Gaussian of sigma 5-15 px would erase every vessel.)

Combined families are applied in the released order, illumination, then spot, then blur: the blur
stands for the optics imaging everything in front of the sensor, so it also softens the spots and
the halo. Everything happens inside the field of view only: pixels outside it come out unchanged.
Four small differences from the released code: the spots lie wholly inside the field of view (the
code places them anywhere in the square, and its final mask cuts away those outside); the blur is a
normalised convolution (the black border is not smeared into the outer 3 px of the retina); the
hole's depth follows the mean of the retina alone (the code's mean also counts the halo's light on
the black corners, a difference of about 0.004 in depth); and values stay real-valued between steps
(torchvision's colour steps round to 8 bits after each).
"""

from __future__ import annotations

import math
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

REFERENCE_SIZE = 512  # side of the released code's square, in pixels
_HALF = REFERENCE_SIZE // 2
# The released code's three halo tints; it picks 1 or 2 (the white one, 0, only below brightness 0.2,
# which its brightness range never draws).
_HALO_TINTS = ((251, 249, 246), (141, 238, 238), (177, 195, 147))
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
# A smoothed field is computed on a grid of cells this many times narrower than its kernel, then
# upsampled: the halo's and the hole's kernels are up to half the image wide.
_TAPS_PER_CELL = 16


@dataclass(frozen=True)
class FovFrame:
    """The released code's 512 x 512 square on this photograph: centred on the field of view, its
    side the longer side of the field of view's bounding box (the disc's diameter even where the
    photograph cuts the disc at the top and bottom)."""

    mask: np.ndarray
    mask8: np.ndarray
    cx: float
    cy: float
    side: float
    area: float

    @property
    def scale(self) -> float:
        return self.side / REFERENCE_SIZE

    def at(self, dx_512: float, dy_512: float) -> tuple[float, float]:
        """Image coordinates of the point ``(dx, dy)`` px (at 512) from the square's centre."""
        return self.cx + dx_512 * self.scale, self.cy + dy_512 * self.scale

    def channel_means(self, image: np.ndarray) -> np.ndarray:
        """Mean of each channel inside the field of view."""
        return np.array(cv2.mean(image, mask=self.mask8)[: image.shape[2]])

    def square_mean(self, inside: float, outside: float) -> float:
        """A mean over the whole square, as the released code takes it over its whole image: the
        field of view's pixels at their mean ``inside``, the rest of the square at ``outside``
        (its black border, after the colour change)."""
        return (inside * self.area + outside * (self.side**2 - self.area)) / self.side**2


def fov_frame(fov_mask: np.ndarray) -> FovFrame:
    mask8 = fov_mask.astype(np.uint8)
    moments = cv2.moments(mask8, binaryImage=True)
    if moments["m00"] == 0:
        raise ValueError("the field-of-view mask is empty")
    _, _, box_w, box_h = cv2.boundingRect(mask8)
    cx, cy = moments["m10"] / moments["m00"], moments["m01"] / moments["m00"]
    return FovFrame(fov_mask, mask8, cx, cy, float(max(box_w, box_h)), float(moments["m00"]))


def _rgb(field: np.ndarray) -> np.ndarray:
    """A one-channel field as three equal channels (far faster to add than a broadcast)."""
    return cv2.cvtColor(field, cv2.COLOR_GRAY2RGB)


def _odd(size: int) -> int:
    """The released code's rule for a kernel size: an even size grows by one."""
    return size + 1 if size % 2 == 0 else size


def blur_taps(size_512: int, sigma_512: float, scale: float) -> np.ndarray:
    """The 1-D kernel ``cv2.GaussianBlur`` builds from ``size_512`` taps and ``sigma_512`` at 512 px,
    stretched by ``scale``: Gaussian weights over a support ``size_512 * scale`` px wide, the
    outermost pixels weighted by the share of them the support covers. At scale 1 it is cv2's kernel;
    at other scales a kernel of a few taps still grows and shrinks smoothly with the image."""
    if sigma_512 <= 0:  # cv2's sigma for a kernel given none
        sigma_512 = 0.3 * ((size_512 - 1) * 0.5 - 1) + 0.8
    half = size_512 * scale / 2
    x = np.arange(-math.ceil(half - 0.5), math.ceil(half - 0.5) + 1, dtype=np.float64)
    weights = np.clip(half + 0.5 - np.abs(x), 0, 1) * np.exp(-(x**2) / (2 * (sigma_512 * scale) ** 2))
    return (weights / weights.sum()).astype(np.float32)


def _radius(shape: tuple[int, int], x: float, y: float) -> np.ndarray:
    """Distance of each pixel of ``shape`` from (x, y)."""
    yy = np.arange(shape[0], dtype=np.float32)[:, None]
    xx = np.arange(shape[1], dtype=np.float32)[None, :]
    return np.sqrt((xx - x) ** 2 + (yy - y) ** 2)


def _folded(cells: int, step: float, pad: int, length: int) -> np.ndarray:
    """Image coordinates of the centres of ``cells`` cells of ``step`` px across ``length`` px,
    and of ``pad`` more on either side folded back into the image as cv2's default border
    (reflect-101) folds pixels: a coarse grid then meets the border exactly as the full image does."""
    centres = np.abs((np.arange(-pad, cells + pad, dtype=np.float32) + 0.5) * step - 0.5)
    return np.where(centres > length - 1, 2 * (length - 1) - centres, centres)


def smoothed_discs(
    frame: FovFrame,
    centre: tuple[float, float],
    discs: Sequence[tuple[float, float]],
    kernel_512: tuple[int, int],
    sigma_512: float,
) -> np.ndarray:
    """``sum(weight * disc(radius_512))`` about ``centre``, smoothed as the released code does with
    a ``kernel_512`` (x, y) kernel of ``sigma_512``, as a full-size float32 field. A wide kernel
    makes the field smooth, so it is computed on a grid of cells 1/16 of the kernel wide and
    upsampled, at about the same cost for any kernel and within about 1 % of the weight of the
    full-size computation."""
    height, width = frame.mask.shape
    factor = max(1, int(min(kernel_512) * frame.scale / _TAPS_PER_CELL))
    rows, cols = max(1, round(height / factor)), max(1, round(width / factor))
    step_y, step_x = height / rows, width / cols
    kx = blur_taps(kernel_512[0], sigma_512, frame.scale / step_x)
    ky = blur_taps(kernel_512[1], sigma_512, frame.scale / step_y)
    pad_x, pad_y = kx.size // 2, ky.size // 2
    xx = _folded(cols, step_x, pad_x, width)[None, :]
    yy = _folded(rows, step_y, pad_y, height)[:, None]
    distance = np.sqrt((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2)
    field: np.ndarray = np.zeros(distance.shape, np.float32)
    for radius_512, weight in discs:
        # Area coverage of each cell, so the disc's size does not jump with the grid.
        field += weight * np.clip((radius_512 * frame.scale - distance) / factor + 0.5, 0, 1)
    field = cv2.sepFilter2D(field, -1, kx, ky)[pad_y : pad_y + rows, pad_x : pad_x + cols]
    return field if factor == 1 else cv2.resize(field, (width, height), interpolation=cv2.INTER_LINEAR)


def degrade_colour(image: np.ndarray, frame: FovFrame, rng: np.random.Generator) -> tuple[dict[str, Any], float]:
    """Brightness, contrast and saturation as torchvision's adjust_* functions, each clipped; also
    returns what the square's black border becomes (contrast below 1 lifts it towards the mean)."""
    brightness, contrast, saturation = rng.uniform(0.7, 1.2), rng.uniform(0.6, 1.4), rng.uniform(0.6, 1.4)
    image *= brightness
    np.clip(image, 0, 1, out=image)
    mean = frame.square_mean(float(_LUMA @ frame.channel_means(image)), outside=0.0)
    image *= contrast  # mean + contrast * (image - mean)
    image += mean * (1 - contrast)
    np.clip(image, 0, 1, out=image)
    grey = _rgb(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
    cv2.addWeighted(image, saturation, grey, 1 - saturation, 0, dst=image)  # grey + saturation * (image - grey)
    np.clip(image, 0, 1, out=image)
    border = float(np.clip(mean * (1 - contrast), 0, 1))
    return {"brightness": brightness, "contrast": contrast, "saturation": saturation}, border


def add_halo(image: np.ndarray, frame: FovFrame, border: float, rng: np.random.Generator) -> dict[str, Any]:
    """Light between an inner and an outer disc about one centre: it brightens the rim."""
    tint = _HALO_TINTS[int(rng.integers(1, 3))]
    dx, dy = (int(offset) for offset in rng.integers(-REFERENCE_SIZE // 8, REFERENCE_SIZE // 8 + 1, size=2))
    inner = rng.uniform(0.75, 1.0) * REFERENCE_SIZE
    # The outer diameter reaches from 1 to (distance to the farthest corner / half side) times the
    # side, plus about half a side: the disc always covers the retina.
    corner = int(math.hypot(_HALF + abs(dx), _HALF + abs(dy)))
    outer = REFERENCE_SIZE * rng.uniform(1.0, corner / _HALF) + abs(max(dx, dy) + _HALF)
    # The ring's edge is smoothed over as many pixels as the inner disc falls short of the square
    # about the centre that holds the whole frame.
    width = int(abs(2 * (_HALF + max(abs(dx), abs(dy))) - inner))
    sigma = 2 / 3 * width
    kernel = _odd(width)

    amplitude = frame.square_mean(float(frame.channel_means(image).mean()), outside=border)
    centre = frame.at(dx, dy)
    ring = smoothed_discs(frame, centre, [(int(outer / 2), 1.0), (int(inner / 2), -1.0)], (kernel, kernel), sigma)
    image += cv2.merge([ring * (amplitude * channel / 255) for channel in tint])
    np.clip(image, 0, 1, out=image)
    return {
        "x": centre[0], "y": centre[1], "offset_512": [dx, dy], "inner_diameter_512": inner,
        "outer_diameter_512": outer, "kernel_512": kernel, "sigma_512": sigma, "tint": tint, "amplitude": amplitude,
    }  # fmt: skip


def add_hole(image: np.ndarray, frame: FovFrame, rng: np.random.Generator) -> dict[str, Any]:
    """A dark smoothed disc added near the centre; its depth grows with the retina's mean value."""
    diameter = int(rng.integers(int(0.4 * REFERENCE_SIZE), int(0.7 * REFERENCE_SIZE) + 1))
    dx = int(rng.integers(-REFERENCE_SIZE // 4, REFERENCE_SIZE // 4 + 1))
    dy = int(rng.integers(-REFERENCE_SIZE // 8, REFERENCE_SIZE // 8 + 1))
    base, slope = rng.uniform(-0.262, -0.26), rng.uniform(0.05, 0.06)
    kernel = [int(size) for size in rng.integers(int(0.55 * diameter), int(0.75 * diameter) + 1, size=2)]
    sigma = 2 / 3 * max(kernel) * 1.2

    retina = float(frame.channel_means(image).mean())
    strength = base - slope * retina if retina > 0.25 else 0.0
    centre = frame.at(dx, dy)
    if strength:
        disc = smoothed_discs(frame, centre, [(diameter // 2, strength)], (_odd(kernel[0]), _odd(kernel[1])), sigma)
        image += _rgb(disc)
        np.clip(image, 0, 1, out=image)
    return {
        "x": centre[0], "y": centre[1], "offset_512": [dx, dy], "diameter_512": diameter,
        "kernel_512": [_odd(size) for size in kernel], "sigma_512": sigma, "strength": strength,
    }  # fmt: skip


def _illumination(image: np.ndarray, frame: FovFrame, rng: np.random.Generator) -> dict[str, Any]:
    params, border = degrade_colour(image, frame, rng)
    params["halo"] = add_halo(image, frame, border, rng)
    params["hole"] = add_hole(image, frame, rng)
    return params


def _spot_shape(rng: np.random.Generator) -> dict[str, Any]:
    """One spot's size, brightness and kernel at 512 px, as the released code draws them."""
    r = int(rng.integers(math.ceil(0.01 * REFERENCE_SIZE), int(0.05 * REFERENCE_SIZE) + 1))
    k, beta, d = 14 / 25 + 1 - r / 25, 0.5 + r / 25, 0.3 * r / 25
    sigma = 2 * (5 + 20 * r / 25)
    kernel = [_odd(int(size)) for size in rng.integers(int(sigma / 5), int(sigma / 4) + 1, size=2)]
    intensity = k * (1 - math.exp(-beta * d))
    return {"r_512": r, "radius_512": r // 2, "intensity": intensity, "kernel_512": kernel, "sigma_512": sigma}


def _spots(image: np.ndarray, frame: FovFrame, rng: np.random.Generator) -> dict[str, Any]:
    """Small smoothed discs of added light, each wholly inside the field of view."""
    height, width = frame.mask.shape
    depth = cv2.distanceTransform(frame.mask8, cv2.DIST_L2, 5)
    # Centres at least the largest spot's reach inside the rim (disc radius 12, half a 13-px kernel).
    candidates = np.flatnonzero(depth >= math.ceil((12.5 + 6.5) * frame.scale))
    if candidates.size == 0:
        candidates = np.flatnonzero(depth == depth.max())
    light = np.zeros((height, width), np.float32)
    spots = []
    for _ in range(int(rng.integers(5, 11))):
        spot = _spot_shape(rng)
        radius = spot["radius_512"] * frame.scale
        kx, ky = (blur_taps(size, spot["sigma_512"], frame.scale) for size in spot["kernel_512"])
        extent = math.ceil(radius + 0.5) + max(kx.size, ky.size) // 2
        y, x = divmod(int(candidates[rng.integers(candidates.size)]), width)
        x0, y0, x1, y1 = max(0, x - extent), max(0, y - extent), min(width, x + extent + 1), min(height, y + extent + 1)
        disc = np.clip(radius + 0.5 - _radius((y1 - y0, x1 - x0), x - x0, y - y0), 0, 1)
        light[y0:y1, x0:x1] += spot["intensity"] * cv2.sepFilter2D(disc, -1, kx, ky, borderType=cv2.BORDER_CONSTANT)
        spots.append({"x": x, "y": y, "radius": radius, **spot})
    image += _rgb(light)
    np.clip(image, 0, 1, out=image)
    return {"spots": spots}


def _blur(image: np.ndarray, frame: FovFrame, rng: np.random.Generator) -> dict[str, Any]:
    """The released blur (a kernel of 1-7 px at sigma 5-15) as a normalised convolution,
    blur(image * mask) / blur(mask), so that only retina is averaged in. Its weights are positive,
    so it stays within [0, 1]."""
    sigma = rng.uniform(5, 15)
    kernel = [_odd(int(size)) for size in rng.integers(int(sigma / 3), int(sigma / 2) + 1, size=2)]
    kx, ky = (blur_taps(size, sigma, frame.scale) for size in kernel)
    weight = frame.mask.astype(np.float32)
    retina = cv2.sepFilter2D(image * _rgb(weight), -1, kx, ky)
    share = cv2.sepFilter2D(weight, -1, kx, ky)
    np.divide(retina, _rgb(np.maximum(share, 1e-3)), out=image)
    return {
        "sigma_512": sigma, "kernel_512": kernel, "sigma": sigma * frame.scale, "kernel": [size * frame.scale for size in kernel],
    }  # fmt: skip


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
    parameters (JSON-serialisable): a key for each applied family, and ``scale``, the image pixels
    per pixel of the released code's 512 px square (lengths named ``*_512`` are in those).
    """
    unknown = [kind for kind in kinds if kind not in FUNDUS_DEGRADATIONS]
    if unknown or not kinds:
        raise ValueError(f"degradation kinds must be a non-empty subset of {FUNDUS_DEGRADATIONS}, got {list(kinds)}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be H x W x 3 uint8, got {image.shape} {image.dtype}")
    if fov_mask.shape != image.shape[:2]:
        raise ValueError(f"fov_mask shape {fov_mask.shape} does not match image shape {image.shape[:2]}")
    frame = fov_frame(fov_mask.astype(bool))
    applied = [kind for kind in FUNDUS_DEGRADATIONS if kind in kinds]
    work = np.multiply(image, np.float32(1 / 255), dtype=np.float32)
    params: dict[str, Any] = {"type": "+".join(applied), "scale": frame.scale}
    for kind in applied:
        params[kind] = _FAMILIES[kind](work, frame, rng)
    out = image.copy()
    cv2.copyTo(cv2.convertScaleAbs(work, alpha=255), frame.mask8, out)  # rounded, saturated
    return out, _json(params)
