"""Contrastive views: shapes, reproducibility from a seed, what each preset may change, overrides, normalisation."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from comcl.augment import IMAGENET_MEAN, IMAGENET_STD, PRESETS, build_augmentation, to_input

SIZE = 64
MEAN = np.array(IMAGENET_MEAN, dtype=np.float32)[:, None, None]
STD = np.array(IMAGENET_STD, dtype=np.float32)[:, None, None]
OFF = {"resized_crop": None, "hflip": 0.0, "vflip": 0.0, "rotate": None, "color_jitter": None, "grayscale": 0.0}


def _image(channels: int, height: int = SIZE, width: int = SIZE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


def _pixels(view: np.ndarray) -> np.ndarray:
    """A view back in [0, 255] RGB levels, (3, H, W)."""
    return (view * STD + MEAN) * 255


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize(("channels", "height", "width"), [(3, SIZE, SIZE), (1, SIZE, SIZE), (3, 40, 50), (1, 90, 33)])
def test_views_are_normalised_three_channel_float32_of_the_requested_size(
    preset: str, channels: int, height: int, width: int
) -> None:
    view = build_augmentation({"preset": preset}, SIZE)(_image(channels, height, width), 7)
    assert view.shape == (3, SIZE, SIZE) and view.dtype == np.float32 and view.flags.c_contiguous
    pixels = _pixels(view)
    assert np.isfinite(view).all() and pixels.min() > -0.01 and pixels.max() < 255.01
    if channels == 1:
        np.testing.assert_allclose(pixels[0], pixels[1], atol=1e-3)
        np.testing.assert_allclose(pixels[0], pixels[2], atol=1e-3)


@pytest.mark.parametrize(("preset", "channels"), [("fundus", 3), ("chest", 1)])
def test_a_view_depends_only_on_image_and_seed(preset: str, channels: int) -> None:
    image = _image(channels)
    first, resumed = build_augmentation({"preset": preset}, SIZE), build_augmentation({"preset": preset}, SIZE)
    views = [first(image, seed) for seed in range(8)]
    # Another instance (a resumed run), called in another order, gives the same views.
    for seed in reversed(range(8)):
        np.testing.assert_array_equal(resumed(image, seed), views[seed])
    np.testing.assert_array_equal(first(image, 3), views[3])
    assert all(not np.array_equal(views[i], views[j]) for i in range(8) for j in range(i + 1, 8))


def test_transforms_draw_independently_within_a_view() -> None:
    # Seeding every transform alike (albumentations' set_random_seed) would flip both ways or neither, always.
    augment = build_augmentation({"preset": "fundus", **OFF, "hflip": 0.5, "vflip": 0.5}, SIZE)
    image = _image(1)
    outcomes = {
        (h, v): to_input(np.ascontiguousarray(image[:: -1 if v else 1, :: -1 if h else 1])) for h in (0, 1) for v in (0, 1)
    }
    seen = set()
    for seed in range(64):
        view = augment(image, seed)
        seen |= {flips for flips, expected in outcomes.items() if np.array_equal(view, expected)}
    assert seen == {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_chest_views_keep_hue_and_fundus_views_change_it() -> None:
    # Orange: R > G > B. Brightness and contrast map every channel through the same increasing function,
    # so the order stays; a hue shift of up to 0.1 turn (36 degrees) can move it past red, making B > G.
    image = np.empty((SIZE, SIZE, 3), dtype=np.uint8)
    image[:] = (200, 90, 40)
    chest, fundus = build_augmentation({"preset": "chest"}, SIZE), build_augmentation({"preset": "fundus"}, SIZE)
    for seed in range(40):
        red, green, blue = _pixels(chest(image, seed)).round()
        assert (red >= green).all() and (green >= blue).all() and (red > blue).any()
    assert any((np.diff(_pixels(fundus(image, seed)).round(), axis=0) > 0).any() for seed in range(40))


def test_an_override_replaces_the_preset_value() -> None:
    image = _image(3)
    augment = build_augmentation({"preset": "fundus", **OFF, "hflip": 1.0}, SIZE)
    for seed in range(4):
        np.testing.assert_array_equal(augment(image, seed), to_input(np.ascontiguousarray(image[:, ::-1])))
    # A nested override replaces the whole mapping: a crop of the full image at its own aspect is no crop.
    whole = build_augmentation({"preset": "chest", **OFF, "resized_crop": {"scale": [1.0, 1.0], "ratio": [1.0, 1.0]}}, SIZE)
    np.testing.assert_array_equal(whole(image, 5), to_input(image))
    assert build_augmentation({"preset": "chest", "grayscale": 0.5}, SIZE).settings["grayscale"] == 0.5
    assert PRESETS["chest"]["grayscale"] == 0.0


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"preset": "fundus", "blur": 0.5},
            r"unknown augmentation setting 'blur'; known settings are \['color_jitter', 'grayscale'",
        ),
        ({"preset": "knee"}, "preset must be one of"),
        ({"hflip": 0.5}, "preset must be one of"),
        ({"preset": "chest", "rotate": {"degrees": 5}}, r"'rotate' must be null or a mapping of exactly \['degrees', 'prob'\]"),
        ({"preset": "chest", "rotate": 5}, "'rotate' must be null or a mapping"),
    ],
)
def test_bad_configurations_are_refused_with_the_known_keys(config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_augmentation(config, SIZE)


def test_to_input_normalises_with_the_imagenet_statistics() -> None:
    expected = ((128 / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)).astype(np.float32)
    for channels in (1, 3):
        out = to_input(np.full((5, 7, channels), 128, dtype=np.uint8))
        assert out.shape == (3, 5, 7) and out.dtype == np.float32
        np.testing.assert_allclose(out, np.broadcast_to(expected[:, None, None], (3, 5, 7)), rtol=1e-6)
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[..., 1] = 255
    np.testing.assert_allclose(to_input(rgb)[:, 0, 0], (np.array([0, 1, 0]) - IMAGENET_MEAN) / IMAGENET_STD, rtol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        to_input(np.zeros((4, 4, 3), dtype=np.float32))


def test_importing_the_module_does_not_reach_the_network() -> None:
    code = (
        "import sys\n"
        "calls = []\n"
        "sys.addaudithook(lambda event, args: calls.append(event) if event in ('socket.connect', 'urllib.Request') else None)\n"
        "import comcl.augment\n"
        "sys.exit(f'network access at import: {calls}' if calls else 0)\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "NO_ALBUMENTATIONS_UPDATE"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
