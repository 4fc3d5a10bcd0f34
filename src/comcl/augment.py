"""The two views of contrastive learning: random crops, flips, rotation and colour changes of one patch.

A view is a pure function of (image, seed): ``Augmentation`` reseeds its albumentations pipeline on
every call, so a resumed run, or DataLoader workers in any order, see exactly the views of an
uninterrupted run given the same per-sample seeds. The pipeline gets one shared generator per call
(``Compose.set_random_state``), not ``Compose.set_random_seed``: the latter gives every transform its
own generator with the same seed, so two flips with the same probability would always fire together.

Settings come from a preset per image form, ``PRESETS``, which a configuration may override key by
key. Output is what a ResNet takes: float32 (3, size, size), RGB, grey repeated to three channels,
normalised with the ImageNet mean and std (the encoders start from ImageNet weights). Pretraining's
loaders hand over the views before that last step, as uint8 (``Augmentation.pixels``), and the
training device normalises them (:func:`normalise`): a quarter of the bytes through shared memory.

On a GPU pretraining's views are made there instead, a batch at a time, by torch
(``Augmentation.draw`` and ``Augmentation.device_views``): the same transforms in the same order,
their parameters drawn from the same distributions as albumentations draws them (a test compares
the two paths' views), because at the paper's sizes a GPU step consumes some 120,000 patches a
second, and a CPU worker makes the views of about 1,200 (``benchmarks/pretrain_loader.py``). The
pixels differ a little from the CPU path's: crop, resize, flips and rotation are one bilinear
resampling on the device (two in albumentations), and the colour is not rounded to uint8 between
its steps.

Speed (one core, 128 x 128 patch, albumentations 2.0.8, 2-core machine): ~0.44 ms per RGB view with the
fundus preset (rotation 0.17, colour jitter 0.15, crop 0.05), ~0.2 ms per grey view with the chest
preset, ~0.05 ms for ``to_input``.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Mapping
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

# albumentations asks PyPI for a newer release at import unless told not to: the workflow must not
# reach the network (it may have none, and then every import waits for the request to time out).
os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"

import albumentations as A

# A view maker as the loaders call it: (image, seed) -> the model's input.
Augment = Callable[[np.ndarray, int], np.ndarray]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Each key is off when its probability is 0 (or, for a mapping, when it is None); ``resized_crop: None``
# only resizes to the output size.
PRESETS: dict[str, dict[str, Any]] = {
    # As in lesion-based contrastive learning on fundus patches: a patch of the retina has no
    # preferred orientation, so both flips and any rotation keep it a plausible patch; colour varies
    # between cameras and illuminations, hue only a little (lesions are told apart by colour).
    "fundus": {
        "resized_crop": {"scale": [0.6, 1.0], "ratio": [0.8, 1.25]},
        "hflip": 0.5,
        "vflip": 0.5,
        "rotate": {"degrees": 180, "prob": 1.0},
        "color_jitter": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1, "prob": 0.8},
        "grayscale": 0.2,
    },
    # Chest radiographs are taken in a standard position: no horizontal flip, because laterality
    # carries meaning (the heart and aortic knob are on the left; a mirrored film is a different,
    # rare anatomy), no vertical flip, and only the few degrees of tilt that positioning gives.
    # Exposure varies, colour does not: brightness and contrast only, and the image is grey already.
    "chest": {
        "resized_crop": {"scale": [0.7, 1.0], "ratio": [0.8, 1.25]},
        "hflip": 0.0,
        "vflip": 0.0,
        "rotate": {"degrees": 10, "prob": 1.0},
        "color_jitter": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.0, "hue": 0.0, "prob": 0.8},
        "grayscale": 0.0,
    },
}

# Normalised value of each uint8 level per channel: indexing replaces arithmetic on every pixel.
_LUT = ((np.arange(256) / 255 - np.array(IMAGENET_MEAN)[:, None]) / np.array(IMAGENET_STD)[:, None]).astype(np.float32)
# The same map as one multiply-add, for tensors on the training device: level * scale + shift.
_SCALE = 1 / (255 * np.array(IMAGENET_STD))
_SHIFT = -np.array(IMAGENET_MEAN) / np.array(IMAGENET_STD)
# ITU-R 601 luma, as cv2.COLOR_RGB2GRAY (albumentations' grey image, contrast mean and saturation) weighs the channels.
_LUMA = (0.299, 0.587, 0.114)
_CROP_TRIES = 10  # A.RandomResizedCrop's attempts at a crop of random area and aspect before its fallback
# The uniforms of one view's parameters (Augmentation.draw), in order: per crop try an area and a log aspect, then
# the crop's two starts; the two flips; rotation's chance and angle; colour jitter's chance, four factors and four
# keys of its order; grey's chance.
_UNIFORMS = {"crop": 2 * _CROP_TRIES + 2, "flip": 2, "rotate": 2, "jitter": 9, "grey": 1}
DRAWS = sum(_UNIFORMS.values())


def to_input(patch: np.ndarray) -> np.ndarray:
    """A uint8 (H, W, 1 or 3) patch as float32 (3, H, W) network input, unaugmented (evaluation, embedding)."""
    if patch.dtype != np.uint8 or patch.ndim != 3 or patch.shape[2] not in (1, 3):
        raise ValueError(f"expected a uint8 H x W x 1 or H x W x 3 image, got shape {patch.shape} and dtype {patch.dtype}")
    out = np.empty((3, *patch.shape[:2]), dtype=np.float32)
    for channel in range(3):
        # A grey patch's one channel fills all three, each normalised with its own mean and std.
        np.take(_LUT[channel], patch[..., channel % patch.shape[2]], out=out[channel])
    return out


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    """Views in uint8 levels (or floats in 0-255), (..., 1 or 3, H, W), as :func:`to_input` makes them, on their
    device: float32 (..., 3, H, W), a grey channel repeated. Equal to ``to_input`` within float32 rounding."""
    shape = (3, 1, 1)
    scale = torch.tensor(_SCALE, dtype=torch.float32, device=pixels.device).view(shape)
    shift = torch.tensor(_SHIFT, dtype=torch.float32, device=pixels.device).view(shape)
    return torch.addcmul(shift, pixels.float(), scale)


def _settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The preset that ``config["preset"]`` names, with the other keys of ``config`` replacing its values."""
    overrides = dict(config)
    name = overrides.pop("preset", None)
    if name not in PRESETS:
        raise ValueError(f"augmentation preset must be one of {sorted(PRESETS)}, got {name!r}")
    settings = dict(PRESETS[name])
    for key, value in overrides.items():
        if key not in settings:
            raise ValueError(f"unknown augmentation setting {key!r}; known settings are {sorted(settings)} and 'preset'")
        known = settings[key]
        if isinstance(known, Mapping) and value is not None and (not isinstance(value, Mapping) or set(value) != set(known)):
            raise ValueError(f"augmentation setting {key!r} must be null or a mapping of exactly {sorted(known)}, got {value!r}")
        settings[key] = value
    return settings


def _transforms(settings: Mapping[str, Any], size: int, grey: bool) -> list[A.BasicTransform]:
    crop, rotate, jitter = settings["resized_crop"], settings["rotate"], settings["color_jitter"]
    transforms = [
        A.RandomResizedCrop(size=(size, size), scale=tuple(crop["scale"]), ratio=tuple(crop["ratio"]))
        if crop is not None
        else A.Resize(size, size)
    ]
    if settings["hflip"] > 0:
        transforms.append(A.HorizontalFlip(p=settings["hflip"]))
    if settings["vflip"] > 0:
        transforms.append(A.VerticalFlip(p=settings["vflip"]))
    if rotate is not None and rotate["prob"] > 0:
        # Reflected rather than black corners: black would look like the outside of the field of view.
        transforms.append(A.Rotate(limit=rotate["degrees"], border_mode=cv2.BORDER_REFLECT_101, p=rotate["prob"]))
    if jitter is not None and jitter["prob"] > 0:
        factors = {name: jitter[name] for name in ("brightness", "contrast", "saturation", "hue")}
        transforms.append(A.ColorJitter(**factors, p=jitter["prob"]))
    if settings["grayscale"] > 0 and not grey:
        transforms.append(A.ToGray(num_output_channels=3, p=settings["grayscale"]))
    return transforms


class Augmentation:
    """``augmentation(image, seed)``: one view of a uint8 (H, W, 1 or 3) image as float32 (3, size, size);
    ``pixels`` the same view before normalisation; ``draw`` and ``device_views`` views of a batch made by torch.

    Not thread-safe (each call reseeds the shared pipeline); DataLoader workers are processes, each with its copy.
    """

    def __init__(self, settings: Mapping[str, Any], size: int) -> None:
        self.settings = dict(settings)
        self.size = size
        # Grey images skip the grayscale transform (albumentations warns on it and returns them unchanged).
        self._pipelines = {channels: A.Compose(_transforms(settings, size, channels == 1)) for channels in (1, 3)}

    def _view(self, image: np.ndarray, seed: int) -> np.ndarray:
        """uint8 (size, size, channels of ``image``)."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (1, 3):
            raise ValueError(f"expected a uint8 H x W x 1 or H x W x 3 image, got shape {image.shape} and dtype {image.dtype}")
        pipeline = self._pipelines[image.shape[2]]
        pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))
        return pipeline(image=image)["image"]

    def __call__(self, image: np.ndarray, seed: int) -> np.ndarray:
        return to_input(self._view(image, seed))

    def pixels(self, image: np.ndarray, seed: int) -> np.ndarray:
        """The view of ``augmentation(image, seed)`` before :func:`normalise`: uint8 (channels of ``image``, size, size)."""
        return np.ascontiguousarray(self._view(image, seed).transpose(2, 0, 1))

    def draw(self, uniforms: np.ndarray, height: int, width: int) -> dict[str, np.ndarray]:
        """The parameters of ``len(uniforms)`` views of height x width images, from (count, ``DRAWS``) uniforms in
        [0, 1): each from the distribution its albumentations transform draws it from, each transform applied
        with its probability (else its identity). Arrays of ``count`` rows: ``box`` int32 (x0, y0, width,
        height) of the crop, ``flip`` bool (horizontal, vertical), ``angle`` degrees, ``jitter`` (brightness,
        contrast and saturation factors, hue shift in turns), ``order`` int64 (a permutation of the four
        jitter operations, A.ColorJitter's random order), ``grey`` bool."""
        settings, rotate = self.settings, self.settings["rotate"]
        boxes, flips, turns, colour, grey = np.split(uniforms, np.cumsum(list(_UNIFORMS.values())[:-1]), axis=1)
        angle = np.zeros(len(uniforms))
        if rotate is not None:
            angle = np.where(turns[:, 0] < rotate["prob"], rotate["degrees"] * (2 * turns[:, 1] - 1), 0.0)
        return {
            "box": _crop_boxes(settings["resized_crop"], boxes, height, width),
            "flip": flips < np.array([settings["hflip"], settings["vflip"]]),
            "angle": angle.astype(np.float32),
            **_jitter(settings["color_jitter"], colour),
            "grey": grey[:, 0] < settings["grayscale"],
        }

    def device_views(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The views that ``params`` (:meth:`draw`'s, as tensors) describe of uint8 (B, H, W, 1 or 3) ``images``, made
        where they lie (the training GPU): float32 (B, 3, size, size), normalised as :func:`to_input` normalises."""
        pixels = images.permute(0, 3, 1, 2).float()  # (B, C, H, W) in 0-255
        pixels = _resample(pixels, params["box"], params["flip"], params["angle"], self.size)
        pixels = _colour(pixels, params["jitter"], params["order"], params["grey"])
        return normalise(pixels)


def _crop_boxes(crop: Mapping[str, Any] | None, uniforms: np.ndarray, height: int, width: int) -> np.ndarray:
    """(count, 4) int32 crops (x0, y0, w, h) as A.RandomResizedCrop picks them: the first of ten tries of a random
    area and log aspect that fits, at a random start, else its fallback's centred crop; None: the whole image
    (A.Resize). ``uniforms``: (count, 22), an area and an aspect per try, then the two starts."""
    count = len(uniforms)
    if crop is None:
        return np.tile(np.array([0, 0, width, height], dtype=np.int32), (count, 1))
    area = height * width
    (low, high), (narrow, wide) = crop["scale"], (math.log(crop["ratio"][0]), math.log(crop["ratio"][1]))
    targets = area * (low + (high - low) * uniforms[:, 0 : 2 * _CROP_TRIES : 2])
    aspects = np.exp(narrow + (wide - narrow) * uniforms[:, 1 : 2 * _CROP_TRIES : 2])
    widths, heights = np.round(np.sqrt(targets * aspects)), np.round(np.sqrt(targets / aspects))
    fits = (widths > 0) & (widths <= width) & (heights > 0) & (heights <= height)
    first = fits.argmax(axis=1)
    rows = np.arange(count)
    fallback_w, fallback_h = _centre_crop(crop["ratio"], height, width)
    found = fits.any(axis=1)
    w = np.where(found, widths[rows, first], fallback_w).astype(np.int64)
    h = np.where(found, heights[rows, first], fallback_h).astype(np.int64)
    # get_crop_coords: a start in [0, side - crop] inclusive; the fallback's crop is centred.
    y0 = np.where(found, np.floor((height - h + 1) * uniforms[:, -2]), (height - h) // 2)
    x0 = np.where(found, np.floor((width - w + 1) * uniforms[:, -1]), (width - w) // 2)
    return np.stack([x0, y0, w, h], axis=1).astype(np.int32)


def _centre_crop(ratio: tuple[float, float], height: int, width: int) -> tuple[int, int]:
    """A.RandomResizedCrop's fallback crop (width, height): the whole image, narrowed to the nearest allowed aspect."""
    aspect = width / height
    if aspect < ratio[0]:
        return width, round(width / ratio[0])
    if aspect > ratio[1]:
        return round(height * ratio[1]), height
    return width, height


def _jitter(jitter: Mapping[str, Any] | None, uniforms: np.ndarray) -> dict[str, np.ndarray]:
    """A.ColorJitter's factors (brightness, contrast, saturation in [max(0, 1 - v), 1 + v], hue in [-v, v]) and
    its random order of the four, from (count, 9) uniforms; the identity where it does not apply."""
    count = len(uniforms)
    identity = np.array([1.0, 1.0, 1.0, 0.0])
    order = np.argsort(uniforms[:, 5:9], axis=1)  # uniform random permutations
    if jitter is None:
        return {"jitter": np.tile(identity, (count, 1)).astype(np.float32), "order": order}
    spread = np.array([jitter[name] for name in ("brightness", "contrast", "saturation", "hue")])
    low = np.array([*np.maximum(0.0, 1 - spread[:3]), -spread[3]])
    high = np.array([*(1 + spread[:3]), spread[3]])
    factors = low + (high - low) * uniforms[:, 1:5]
    applied = uniforms[:, :1] < jitter["prob"]
    return {"jitter": np.where(applied, factors, identity).astype(np.float32), "order": order}


def _reflect(coordinate: torch.Tensor, side: int) -> torch.Tensor:
    """Coordinates reflected into [0, side - 1] about the edge pixels' centres (cv2.BORDER_REFLECT_101)."""
    period = 2 * (side - 1)
    folded = coordinate.remainder(period)
    return torch.where(folded > side - 1, period - folded, folded)


def _resample(pixels: torch.Tensor, box: torch.Tensor, flip: torch.Tensor, angle: torch.Tensor, size: int) -> torch.Tensor:
    """Crop, resize to ``size``, flips and rotation of (B, C, H, W) pixels as one bilinear resampling: (B, C, size, size).

    Each output pixel goes back through the transforms in reverse: the rotation about the view's centre
    (reflected into the view, as A.Rotate's BORDER_REFLECT_101), the flips, and the resize of the crop
    (cv2.resize's half-pixel centres, clamped to the crop's edge pixels as resizing the cut-out crop is).
    """
    height, width = pixels.shape[2:]
    centre = size / 2 - 0.5
    steps = torch.arange(size, device=pixels.device, dtype=torch.float32) - centre
    rows, cols = torch.meshgrid(steps, steps, indexing="ij")  # (S, S), from the view's centre
    radians = torch.deg2rad(angle.float())[:, None, None]
    cos, sin = radians.cos(), radians.sin()
    u = _reflect(cos * cols - sin * rows + centre, size)  # (B, S, S): where in the unrotated view
    v = _reflect(sin * cols + cos * rows + centre, size)
    u = torch.where(flip[:, :1, None], size - 1 - u, u)
    v = torch.where(flip[:, 1:, None], size - 1 - v, v)
    x0, y0, w, h = (part[:, None, None] for part in box.float().unbind(1))
    x = torch.minimum(torch.maximum(x0 + (u + 0.5) * w / size - 0.5, x0), x0 + w - 1)
    y = torch.minimum(torch.maximum(y0 + (v + 0.5) * h / size - 0.5, y0), y0 + h - 1)
    grid = torch.stack([(x + 0.5) / width * 2 - 1, (y + 0.5) / height * 2 - 1], dim=-1)  # (B, S, S, 2)
    return F.grid_sample(pixels, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _grey(pixels: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) luma of (N, 3, H, W) pixels."""
    weights = torch.tensor(_LUMA, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
    return (pixels * weights).sum(dim=1, keepdim=True)


def _brightness(pixels: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return pixels * factor[:, None, None, None]


def _contrast(pixels: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """A blend with the view's mean grey level (of its luma when RGB)."""
    grey = pixels if pixels.shape[1] == 1 else _grey(pixels)
    mean = grey.mean(dim=(1, 2, 3), keepdim=True)
    factor = factor[:, None, None, None]
    return pixels * factor + mean * (1 - factor)


def _saturation(pixels: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """A blend with the view's luma (grey views have no saturation)."""
    if pixels.shape[1] == 1:
        return pixels
    factor = factor[:, None, None, None]
    return pixels * factor + _grey(pixels) * (1 - factor)


def _hue(pixels: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """The hue turned by ``shift`` turns in HSV, value and saturation kept (grey views have no hue)."""
    if pixels.shape[1] == 1:
        return pixels
    top, low = pixels.amax(dim=1, keepdim=True), pixels.amin(dim=1, keepdim=True)
    chroma = top - low
    red, green, blue = pixels.unbind(dim=1)
    safe = chroma[:, 0].clamp_min(1e-6)
    # Hue in sixths of a turn: which channel is the largest decides the sector.
    hue = torch.where(
        top[:, 0] == red,
        ((green - blue) / safe).remainder(6),
        torch.where(top[:, 0] == green, (blue - red) / safe + 2, (red - green) / safe + 4),
    )
    hue = (hue + 6 * shift[:, None, None]).remainder(6)[:, None]  # (N, 1, H, W)
    # HSV to RGB: channel n (R 5, G 3, B 1) is top - chroma * clamp(min(k, 4 - k), 0, 1), k = (n + hue) mod 6.
    k = (torch.tensor([5.0, 3.0, 1.0], device=pixels.device).view(1, 3, 1, 1) + hue).remainder(6)
    return top - chroma * torch.minimum(k, 4 - k).clamp(0, 1)


_ADJUSTMENTS = (_brightness, _contrast, _saturation, _hue)  # A.ColorJitter's order of its four factors


def _colour(pixels: torch.Tensor, jitter: torch.Tensor, order: torch.Tensor, grey: torch.Tensor) -> torch.Tensor:
    """Colour jitter, each view's four operations in its own order and each result clipped to 0-255 (as uint8
    saturates), then grey (RGB views only): (B, C, S, S) pixels in 0-255, transformed."""
    for place in range(order.shape[1]):
        for operation, adjust in enumerate(_ADJUSTMENTS):
            chosen = (order[:, place] == operation).nonzero()[:, 0]
            if len(chosen):  # in place: only the chosen views' rows are written
                pixels.index_copy_(0, chosen, adjust(pixels[chosen], jitter[chosen, operation]).clamp(0, 255))
    if pixels.shape[1] == 3:
        pixels = torch.where(grey[:, None, None, None], _grey(pixels).expand_as(pixels), pixels)
    return pixels


def build_augmentation(config: Mapping[str, Any], size: int) -> Augmentation:
    """The augmentation of ``config``: ``{"preset": "fundus" | "chest", ...}``, where every other key
    replaces the preset's value of that key (a mapping replaces the whole mapping), for views of ``size`` px."""
    return Augmentation(_settings(config), size)
