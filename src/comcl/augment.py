"""The two views of contrastive learning: random crops, flips, rotation and colour changes of one patch.

A view is a pure function of (image, seed): ``Augmentation`` reseeds its albumentations pipeline on
every call, so a resumed run, or DataLoader workers in any order, see exactly the views of an
uninterrupted run given the same per-sample seeds. The pipeline gets one shared generator per call
(``Compose.set_random_state``), not ``Compose.set_random_seed``: the latter gives every transform its
own generator with the same seed, so two flips with the same probability would always fire together.

Settings come from a preset per image form, ``PRESETS``, which a configuration may override key by
key. Output is what a ResNet takes: float32 (3, size, size), RGB, grey repeated to three channels,
normalised with the ImageNet mean and std (the encoders start from ImageNet weights).

Speed (one core, 128 x 128 patch, albumentations 2.0.8): ~0.3 ms per RGB view with the fundus preset,
~0.2 ms per grey view with the chest preset, ~0.04 ms for ``to_input``.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping
from typing import Any

import cv2
import numpy as np

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


def to_input(patch: np.ndarray) -> np.ndarray:
    """A uint8 (H, W, 1 or 3) patch as float32 (3, H, W) network input, unaugmented (evaluation, embedding)."""
    if patch.dtype != np.uint8 or patch.ndim != 3 or patch.shape[2] not in (1, 3):
        raise ValueError(f"expected a uint8 H x W x 1 or H x W x 3 image, got shape {patch.shape} and dtype {patch.dtype}")
    out = np.empty((3, *patch.shape[:2]), dtype=np.float32)
    for channel in range(3):
        # A grey patch's one channel fills all three, each normalised with its own mean and std.
        np.take(_LUT[channel], patch[..., channel % patch.shape[2]], out=out[channel])
    return out


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
    """``augmentation(image, seed)``: one view of a uint8 (H, W, 1 or 3) image as float32 (3, size, size).

    Not thread-safe (each call reseeds the shared pipeline); DataLoader workers are processes, each with its copy.
    """

    def __init__(self, settings: Mapping[str, Any], size: int) -> None:
        self.settings = dict(settings)
        self.size = size
        # Grey images skip the grayscale transform (albumentations warns on it and returns them unchanged).
        self._pipelines = {channels: A.Compose(_transforms(settings, size, channels == 1)) for channels in (1, 3)}

    def __call__(self, image: np.ndarray, seed: int) -> np.ndarray:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (1, 3):
            raise ValueError(f"expected a uint8 H x W x 1 or H x W x 3 image, got shape {image.shape} and dtype {image.dtype}")
        pipeline = self._pipelines[image.shape[2]]
        pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))
        return to_input(pipeline(image=image)["image"])


def build_augmentation(config: Mapping[str, Any], size: int) -> Augmentation:
    """The augmentation of ``config``: ``{"preset": "fundus" | "chest", ...}``, where every other key
    replaces the preset's value of that key (a mapping replaces the whole mapping), for views of ``size`` px."""
    return Augmentation(_settings(config), size)
