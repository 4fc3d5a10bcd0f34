"""Chest radiograph degradations: each changes what it should, by drawn and recorded amounts."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from comcl.degrade.chest import CHEST_DEGRADATIONS, degrade_chest
from comcl.synth.chest import render_chest

SIZE = 128


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    return render_chest(SIZE, ["Nodule"], np.random.default_rng(0)).image


def _sharpness(image: np.ndarray) -> float:
    return float(cv2.Laplacian(image.astype(np.float32), cv2.CV_32F).var())


def _noise(image: np.ndarray) -> float:
    """Immerkaer's estimate of the noise standard deviation."""
    mask = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    residual = np.abs(cv2.filter2D(image.astype(np.float32), cv2.CV_32F, mask)[1:-1, 1:-1])
    return float(np.sqrt(np.pi / 2) * residual.mean() / 6)


@pytest.mark.parametrize("kind", ["blur", "motion"])
def test_blur_and_motion_lower_the_laplacian_variance(clean, kind):
    for seed in range(3):
        degraded, params = degrade_chest(clean, [kind], np.random.default_rng(seed))
        assert _sharpness(degraded) < 0.5 * _sharpness(clean)
        assert _noise(degraded) > 0.8 * _noise(clean), "the detector noise is not blurred away"
        assert params[kind]["restored_noise"] > 0


def test_blur_sigma_scales_with_the_image():
    for size, scale in ((SIZE, 0.5), (512, 2.0)):
        _, params = degrade_chest(np.full((size, size), 100, np.uint8), ["blur"], np.random.default_rng(1))
        assert 1.5 * scale <= params["blur"]["sigma"] <= 4.0 * scale


def test_noise_is_strong_and_grows_where_fewer_photons_arrive(clean):
    degraded, params = degrade_chest(clean, ["noise"], np.random.default_rng(2))
    assert _noise(degraded) > 3 * _noise(clean)
    residual = degraded.astype(np.float32) - clean.astype(np.float32)
    bright, dark = (clean > 170) & (clean < 230), (clean > 40) & (clean < 110)
    assert residual[bright].std() > 1.3 * residual[dark].std(), "quantum noise is signal-dependent"
    assert 250 <= params["noise"]["photons"] <= 1200 and 1.5 <= params["noise"]["electronic"] <= 5


def test_contrast_pulls_grey_levels_to_the_mean(clean):
    degraded, params = degrade_chest(clean, ["contrast"], np.random.default_rng(3))
    factor = params["contrast"]["factor"]
    assert 0.4 <= factor <= 0.75
    assert degraded.std() / clean.std() == pytest.approx(factor, abs=0.02)
    assert degraded.mean() == pytest.approx(clean.mean(), abs=1)


def test_exposure_shifts_the_mean_both_ways(clean):
    seen = set()
    for seed in range(12):
        degraded, params = degrade_chest(clean, ["exposure"], np.random.default_rng(seed))
        direction = params["exposure"]["direction"]
        shift = degraded.mean() - clean.mean()
        assert shift < -20 if direction == "over" else shift > 20
        seen.add(direction)
    assert seen == {"over", "under"}


def test_grid_adds_stripes_at_the_recorded_period_and_angle(clean):
    for seed in range(3):
        degraded, params = degrade_chest(clean, ["grid"], np.random.default_rng(seed))
        spectrum = np.abs(np.fft.fft2(degraded.astype(np.float32) - clean.astype(np.float32)))
        spectrum[0, 0] = 0
        row, col = np.unravel_index(np.argmax(spectrum), spectrum.shape)
        fy, fx = np.fft.fftfreq(SIZE)[row], np.fft.fftfreq(SIZE)[col]
        grid = params["grid"]
        assert np.hypot(fx, fy) == pytest.approx(1 / grid["period"], abs=1.5 / SIZE)
        angle = np.rad2deg(np.arctan2(fy, fx)) % 180
        assert min(abs(angle - grid["angle"]), 180 - abs(angle - grid["angle"])) < 4
        assert spectrum[row, col] > 20 * np.median(spectrum)


def test_params_are_json_and_record_what_was_applied(clean):
    for kinds in [[kind] for kind in CHEST_DEGRADATIONS] + [["grid", "noise"], list(CHEST_DEGRADATIONS)]:
        degraded, params = degrade_chest(clean, kinds, np.random.default_rng(4))
        assert degraded.shape == clean.shape and degraded.dtype == np.uint8
        assert json.loads(json.dumps(params)) == params
        assert params["type"] == "+".join(kinds)
        assert set(params) == {"type", *kinds}
        assert all(params[kind] for kind in kinds)


def test_fixed_order_and_seeded(clean):
    copy = clean.copy()
    first, params = degrade_chest(clean, ["noise", "blur"], np.random.default_rng(5))
    swapped, swapped_params = degrade_chest(clean, ["blur", "noise"], np.random.default_rng(5))
    assert np.array_equal(first, swapped), "applied in the documented order whatever the list order"
    assert {k: v for k, v in params.items() if k != "type"} == {k: v for k, v in swapped_params.items() if k != "type"}
    again, _ = degrade_chest(clean, ["noise", "blur"], np.random.default_rng(5))
    other, _ = degrade_chest(clean, ["noise", "blur"], np.random.default_rng(6))
    assert first.tobytes() == again.tobytes() and not np.array_equal(first, other)
    assert np.array_equal(clean, copy), "the input is left alone"


def test_bad_requests_are_refused(clean):
    with pytest.raises(ValueError, match="valid kinds are .*grid"):
        degrade_chest(clean, ["noise", "haze"], np.random.default_rng(0))
    with pytest.raises(ValueError, match="at most once"):
        degrade_chest(clean, ["blur", "blur"], np.random.default_rng(0))
    with pytest.raises(ValueError, match="uint8"):
        degrade_chest(clean.astype(np.float32), ["blur"], np.random.default_rng(0))
