"""The fundus degradation model: confined to the field of view, reproducible, and each family does
what it models."""

from __future__ import annotations

import json
from itertools import combinations

import cv2
import numpy as np
import pytest

from comcl.degrade.fundus import FUNDUS_DEGRADATION_TYPES, FUNDUS_DEGRADATIONS, degrade_fundus, estimate_fov_mask
from comcl.synth.fundus import FundusRendering, render_fundus

HEIGHT, WIDTH = 128, 160


@pytest.fixture(scope="module")
def fundus() -> FundusRendering:
    return render_fundus(HEIGHT, WIDTH, {"MA": 4, "HE": 4, "EX": 3, "SE": 1}, "right", np.random.default_rng(0))


@pytest.fixture(scope="module")
def grey(fundus) -> np.ndarray:
    """A uniform grey retina: contrast and saturation leave it alone, so brightness, halo, hole
    and spots can be read off it exactly."""
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    image[fundus.fov_mask] = 100
    return image


def luma(image: np.ndarray) -> np.ndarray:
    return image.astype(float) @ np.array([0.299, 0.587, 0.114])


def test_the_seven_types_are_all_non_empty_combinations_in_canonical_order():
    expected = {frozenset(c) for n in (1, 2, 3) for c in combinations(FUNDUS_DEGRADATIONS, n)}
    assert len(FUNDUS_DEGRADATION_TYPES) == 7
    assert {frozenset(kinds) for kinds in FUNDUS_DEGRADATION_TYPES} == expected
    assert FUNDUS_DEGRADATION_TYPES[-1] == FUNDUS_DEGRADATIONS
    for kinds in FUNDUS_DEGRADATION_TYPES:
        assert list(kinds) == sorted(kinds, key=FUNDUS_DEGRADATIONS.index)


@pytest.mark.parametrize("kinds", FUNDUS_DEGRADATION_TYPES, ids="+".join)
def test_every_type_changes_only_the_field_of_view(fundus, kinds):
    before = fundus.image.copy()
    out, params = degrade_fundus(fundus.image, fundus.fov_mask, kinds, np.random.default_rng(1))
    assert (fundus.image == before).all(), "the input must not be modified"
    assert out.shape == before.shape and out.dtype == np.uint8
    assert (out[~fundus.fov_mask] == before[~fundus.fov_mask]).all()
    assert np.abs(out[fundus.fov_mask].astype(int) - before[fundus.fov_mask]).mean() > 1
    assert params["type"] == "+".join(kinds)
    assert set(params) == {"type", *kinds}
    assert json.loads(json.dumps(params)) == params


def test_order_of_kinds_does_not_matter(fundus):
    a, pa = degrade_fundus(fundus.image, fundus.fov_mask, ["blur", "illumination"], np.random.default_rng(2))
    b, pb = degrade_fundus(fundus.image, fundus.fov_mask, ("illumination", "blur"), np.random.default_rng(2))
    assert pa == pb and pa["type"] == "illumination+blur" and (a == b).all()


def test_same_seed_same_output_different_seed_different_output(fundus):
    kinds = FUNDUS_DEGRADATION_TYPES[-1]
    a, pa = degrade_fundus(fundus.image, fundus.fov_mask, kinds, np.random.default_rng(3))
    b, pb = degrade_fundus(fundus.image, fundus.fov_mask, kinds, np.random.default_rng(3))
    c, pc = degrade_fundus(fundus.image, fundus.fov_mask, kinds, np.random.default_rng(4))
    assert a.tobytes() == b.tobytes() and pa == pb
    assert a.tobytes() != c.tobytes() and pa != pc


def test_unknown_or_no_kind_is_rejected(fundus):
    with pytest.raises(ValueError, match="illumination"):
        degrade_fundus(fundus.image, fundus.fov_mask, ["fog"], np.random.default_rng(0))
    with pytest.raises(ValueError, match="non-empty"):
        degrade_fundus(fundus.image, fundus.fov_mask, [], np.random.default_rng(0))


def test_blur_lowers_the_variance_of_the_laplacian(fundus):
    interior = cv2.erode(fundus.fov_mask.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    before = cv2.Laplacian(luma(fundus.image), cv2.CV_64F)[interior].var()
    for seed in range(3):
        out, params = degrade_fundus(fundus.image, fundus.fov_mask, ["blur"], np.random.default_rng(seed))
        assert 5 <= params["blur"]["sigma_512"] <= 15
        assert params["blur"]["sigma"] == pytest.approx(params["blur"]["sigma_512"] * HEIGHT / 512)
        assert cv2.Laplacian(luma(out), cv2.CV_64F)[interior].var() < 0.3 * before


def test_blur_does_not_darken_the_rim_with_the_black_border(grey, fundus):
    out, _ = degrade_fundus(grey, fundus.fov_mask, ["blur"], np.random.default_rng(0))
    assert np.abs(out[fundus.fov_mask].astype(int) - 100).max() <= 1


def test_illumination_factors_and_mean_brightness_agree(grey, fundus):
    """On a uniform retina the FOV mean must be brightness * 100, raised by at most the halo
    amplitude and lowered by at most the hole depth."""
    variants = set()
    for seed in range(12):
        out, params = degrade_fundus(grey, fundus.fov_mask, ["illumination"], np.random.default_rng(seed))
        p = params["illumination"]
        assert 0.7 <= p["brightness"] <= 1.2 and 0.6 <= p["contrast"] <= 1.4 and 0.6 <= p["saturation"] <= 1.4
        assert "halo" in p or "hole" in p
        variants.add(("halo" in p, "hole" in p))
        mean = luma(out)[fundus.fov_mask].mean()
        base = 100 * p["brightness"]
        low = base * (1 - p["hole"]["depth"]) if "hole" in p else base
        high = base + p["halo"]["amplitude"] if "halo" in p else base
        assert low - 1 <= mean <= high + 1
        if "halo" in p and "hole" not in p:
            assert mean > base + 1
        if "hole" in p and "halo" not in p:
            assert mean < base - 1
    assert variants == {(True, False), (False, True), (True, True)}


def test_spots_lie_inside_the_fov_and_brighten_it(grey, fundus):
    depth = cv2.distanceTransform(fundus.fov_mask.astype(np.uint8), cv2.DIST_L2, 5)
    for seed in range(4):
        out, params = degrade_fundus(grey, fundus.fov_mask, ["spot"], np.random.default_rng(seed))
        spots = params["spot"]["spots"]
        assert 5 <= len(spots) <= 10
        for spot in spots:
            x, y, radius = spot["x"], spot["y"], spot["radius"]
            assert 0.01 * HEIGHT <= radius <= 0.05 * HEIGHT
            assert fundus.fov_mask[y, x] and depth[y, x] >= radius
            assert out[y, x].astype(int).min() > 100
        assert luma(out)[fundus.fov_mask].mean() > 100


def test_estimate_fov_mask_recovers_the_rendered_fov():
    for seed, (height, width, eye) in enumerate([(128, 160, "right"), (160, 160, "left"), (256, 320, "right")]):
        rendering = render_fundus(height, width, {"HE": 3, "MA": 3}, eye, np.random.default_rng(seed))
        # Also as read back from an EyePACS-style JPEG, whose chroma subsampling bleeds the red rim.
        _, jpeg = cv2.imencode(".jpg", rendering.image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
        for image in (rendering.image, cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[..., ::-1]):
            estimate = estimate_fov_mask(image)
            iou = (estimate & rendering.fov_mask).sum() / (estimate | rendering.fov_mask).sum()
            assert iou > 0.97
