"""The fundus degradation model: confined to the field of view, reproducible, each family doing
what it models with the released code's numbers, and the structure it keeps: a mild blur, not one
that erases the vessels."""

from __future__ import annotations

import json
import math
from itertools import combinations

import cv2
import numpy as np
import pytest

from comcl.degrade import fundus as model
from comcl.degrade.fundus import FUNDUS_DEGRADATION_TYPES, FUNDUS_DEGRADATIONS, degrade_fundus
from comcl.degrade.structure import structure_kept
from comcl.fov import estimate_fov_mask
from comcl.synth.fundus import EYES, LESION_KINDS, FundusRendering, render_fundus

HEIGHT, WIDTH = 128, 160


@pytest.fixture(scope="module")
def fundus() -> FundusRendering:
    return render_fundus(HEIGHT, WIDTH, {"MA": 4, "HE": 4, "EX": 3, "SE": 1}, "right", np.random.default_rng(0))


@pytest.fixture(scope="module")
def grey(fundus) -> np.ndarray:
    """A uniform grey retina: contrast and saturation leave it uniform, so brightness, halo, hole
    and spots can be read off it exactly."""
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    image[fundus.fov_mask] = 100
    return image


@pytest.fixture(scope="module")
def photographs() -> list[FundusRendering]:
    """Photographs at the model's reference size, where the structure measure is defined: both
    eyes, from healthy to a few of every lesion."""
    rng = np.random.default_rng(7)
    counts = [{kind: (index + offset) % 4 * 2 for offset, kind in enumerate(LESION_KINDS)} for index in range(4)]
    return [render_fundus(512, 512, count, EYES[index % 2], rng) for index, count in enumerate(counts)]


def luma(image: np.ndarray) -> np.ndarray:
    return image.astype(float) @ np.array([0.299, 0.587, 0.114])


def disc_mask(size: int) -> np.ndarray:
    """A disc as wide as the square image: the released code's layout."""
    yy, xx = np.mgrid[:size, :size]
    centre = (size - 1) / 2
    return (xx - centre) ** 2 + (yy - centre) ** 2 <= (size / 2) ** 2


def test_the_seven_types_are_all_non_empty_combinations_in_canonical_order():
    expected = {frozenset(c) for n in (1, 2, 3) for c in combinations(FUNDUS_DEGRADATIONS, n)}
    assert len(FUNDUS_DEGRADATION_TYPES) == 7
    assert {frozenset(kinds) for kinds in FUNDUS_DEGRADATION_TYPES} == expected
    assert FUNDUS_DEGRADATION_TYPES[-1] == FUNDUS_DEGRADATIONS
    for kinds in FUNDUS_DEGRADATION_TYPES:
        assert list(kinds) == sorted(kinds, key=FUNDUS_DEGRADATIONS.index)


@pytest.mark.parametrize("kinds", FUNDUS_DEGRADATION_TYPES, ids="+".join)
def test_every_type_changes_only_the_field_of_view(photographs, kinds):
    """At 512 px: at a quarter of that, the released blur's kernels of 1-3 px shrink below a pixel."""
    photo = photographs[0]
    before = photo.image.copy()
    out, params = degrade_fundus(photo.image, photo.fov_mask, kinds, np.random.default_rng(1))
    assert (photo.image == before).all(), "the input must not be modified"
    assert out.shape == before.shape and out.dtype == np.uint8
    assert (out[~photo.fov_mask] == before[~photo.fov_mask]).all()
    # Spots are small: 5-10 discs of 3-12 px radius change about 2 % of the retina.
    assert np.abs(out[photo.fov_mask].astype(int) - before[photo.fov_mask]).mean() > 0.1
    assert params["type"] == "+".join(kinds)
    assert set(params) == {"type", "scale", *kinds}
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


def test_lengths_are_drawn_at_512_px_and_scale_with_the_field_of_view():
    """The same seed draws the same 512-px values on a disc of any size; in pixels they scale
    with the disc's diameter, the side of the released code's square."""
    drawn = []
    for size in (256, 1024):
        image = np.zeros((size, size, 3), np.uint8)
        mask = disc_mask(size)
        image[mask] = 120
        _, params = degrade_fundus(image, mask, FUNDUS_DEGRADATION_TYPES[-1], np.random.default_rng(5))
        assert params["scale"] == pytest.approx(size / 512)
        drawn.append(params)
    small, large = drawn
    assert small["blur"]["sigma_512"] == large["blur"]["sigma_512"]
    assert large["blur"]["sigma"] == pytest.approx(4 * small["blur"]["sigma"])
    assert large["blur"]["kernel"] == pytest.approx([4 * size for size in small["blur"]["kernel"]])
    assert [s["r_512"] for s in small["spot"]["spots"]] == [s["r_512"] for s in large["spot"]["spots"]]
    assert [4 * s["radius"] for s in small["spot"]["spots"]] == pytest.approx([s["radius"] for s in large["spot"]["spots"]])
    assert small["illumination"]["hole"]["diameter_512"] == large["illumination"]["hole"]["diameter_512"]


@pytest.mark.parametrize("size", [1, 3, 5, 7, 13])
def test_at_512_px_a_kernel_is_the_one_cv2_builds(size):
    """The released code hands kernel sizes and a sigma to cv2.GaussianBlur; at scale 1 the
    stretched kernel is exactly cv2's."""
    sigma = 2.5 * size
    expected = cv2.getGaussianKernel(size, sigma)[:, 0]
    assert model.blur_taps(size, sigma, 1.0) == pytest.approx(expected, abs=1e-6)
    assert model.blur_taps(size, sigma, 0.3).sum() == pytest.approx(1.0)


@pytest.mark.parametrize(
    "centre, radius, kernel, sigma", [((300, 255), 150, (151, 201), 160.0), ((200, 230), 240, (41, 41), 27.0)]
)
def test_smoothed_discs_are_the_released_blurred_discs(centre, radius, kernel, sigma):
    """The halo's and the hole's fields, computed on a coarse grid, against the released code's
    cv2.GaussianBlur of the full-size disc: within about 1 % everywhere, the border included."""
    mask = disc_mask(512)
    yy, xx = np.mgrid[:512, :512]
    disc = ((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= radius**2).astype(np.float32)
    expected = cv2.GaussianBlur(disc, kernel, sigma)
    field = model.smoothed_discs(model.fov_frame(mask), centre, [(radius, 1.0)], kernel, sigma)
    assert np.abs(field - expected).max() < 0.015


def test_blur_is_the_released_small_kernel_blur():
    """On a disc 512 px across, away from the rim, the blur is cv2.GaussianBlur with the drawn
    kernel of 1-7 px and sigma 5-15, exactly as the released code calls it."""
    mask = disc_mask(512)
    texture = cv2.resize(np.random.default_rng(0).integers(40, 220, (128, 128, 3), dtype=np.uint8), (512, 512))
    image = np.where(mask[..., None], texture, 0).astype(np.uint8)
    interior = cv2.erode(mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    for seed in range(4):
        out, params = degrade_fundus(image, mask, ["blur"], np.random.default_rng(seed))
        blur = params["blur"]
        assert 5 <= blur["sigma_512"] <= 15 and params["scale"] == 1.0
        low, high = int(blur["sigma_512"] / 3), int(blur["sigma_512"] / 2)
        for size in blur["kernel_512"]:
            assert size % 2 == 1 and 1 <= size <= 7 and low <= size <= high + 1
        expected = cv2.GaussianBlur(image.astype(np.float32), tuple(blur["kernel_512"]), blur["sigma_512"])
        assert np.abs(out[interior] - expected[interior]).max() <= 1


def test_blur_keeps_most_of_the_vessels(photographs):
    for index, photo in enumerate(photographs):
        for seed in range(3):
            out, params = degrade_fundus(photo.image, photo.fov_mask, ["blur"], np.random.default_rng([index, seed]))
            kept = structure_kept(photo.image, out, photo.fov_mask)
            assert kept > 0.2
            if params["blur"]["kernel_512"] != [1, 1]:  # the released code draws that (no blur) for sigma < 6
                assert kept < 0.95


def test_blur_does_not_darken_the_rim_with_the_black_border(grey, fundus):
    out, _ = degrade_fundus(grey, fundus.fov_mask, ["blur"], np.random.default_rng(0))
    assert np.abs(out[fundus.fov_mask].astype(int) - 100).max() <= 1


def test_colour_factors_act_as_torchvisions(grey, fundus):
    """Brightness scales, contrast blends with the mean grey of the whole square (its black
    corners included, as in the released code's image), saturation leaves grey alone."""
    frame = model.fov_frame(fundus.fov_mask)
    for seed in range(6):
        work = grey.astype(np.float32) / 255
        params, border = model.degrade_colour(work, frame, np.random.default_rng(seed))
        assert 0.7 <= params["brightness"] <= 1.2 and 0.6 <= params["contrast"] <= 1.4 and 0.6 <= params["saturation"] <= 1.4
        bright = 100 / 255 * params["brightness"]
        mean = bright * fundus.fov_mask.sum() / frame.side**2
        expected = mean + params["contrast"] * (bright - mean)
        assert work[fundus.fov_mask] == pytest.approx(np.full((fundus.fov_mask.sum(), 3), expected), abs=1e-5)
        assert border == pytest.approx(max(0.0, mean * (1 - params["contrast"])))


def test_halo_brightens_the_rim_in_its_tint(grey, fundus):
    frame = model.fov_frame(fundus.fov_mask)
    rim = fundus.fov_mask & ~cv2.erode(fundus.fov_mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    yy, xx = np.ogrid[:HEIGHT, :WIDTH]
    centre = (xx - frame.cx) ** 2 + (yy - frame.cy) ** 2 <= (0.15 * frame.side) ** 2
    rim_light = []
    for seed in range(6):
        work = grey.astype(np.float32) / 255
        halo = model.add_halo(work, frame, 0.0, np.random.default_rng(seed))
        assert 384 <= halo["inner_diameter_512"] <= 512 and halo["outer_diameter_512"] > 512
        assert all(abs(offset) <= 64 for offset in halo["offset_512"]) and halo["kernel_512"] % 2 == 1
        assert tuple(halo["tint"]) in model._HALO_TINTS[1:]
        # The light is the square's mean value: the retina's, diluted by the black corners.
        assert halo["amplitude"] == pytest.approx(100 / 255 * fundus.fov_mask.sum() / frame.side**2)
        added = np.where(fundus.fov_mask[..., None], work - 100 / 255, 0)
        x, y = round(halo["x"]), round(halo["y"])
        inside = halo["inner_diameter_512"] / 2 - halo["kernel_512"] / 2
        if inside > halo["kernel_512"] / 4 + 8:  # the centre lies clear of the ring's smoothed edge
            assert np.abs(added[y, x]).max() < 1e-5
        assert added[rim].mean() >= added[centre].mean()
        rim_light.append(added[rim].mean() / halo["amplitude"])
        assert added.min() >= 0 and added.max() <= halo["amplitude"] + 1e-6
        strongest = np.unravel_index(np.argmax(added[..., 1]), added.shape[:2])
        assert added[strongest] / added[strongest][1] == pytest.approx(np.array(halo["tint"]) / halo["tint"][1], rel=1e-3)
    assert max(rim_light) > 0.3


def test_hole_darkens_around_its_centre_by_its_strength(grey, fundus):
    frame = model.fov_frame(fundus.fov_mask)
    for seed in range(6):
        work = grey.astype(np.float32) / 255
        hole = model.add_hole(work, frame, np.random.default_rng(seed))
        assert 204 <= hole["diameter_512"] <= 358
        assert abs(hole["offset_512"][0]) <= 128 and abs(hole["offset_512"][1]) <= 64
        for size in hole["kernel_512"]:
            assert size % 2 == 1 and int(0.55 * hole["diameter_512"]) <= size <= int(0.75 * hole["diameter_512"]) + 1
        mean = 100 / 255
        assert -0.262 - 0.06 * mean <= hole["strength"] <= -0.26 - 0.05 * mean
        added = np.where(fundus.fov_mask[..., None], work - mean, 0)
        # Nearly all of it: the kernel's corners reach past the disc.
        at_centre = added[round(hole["y"]), round(hole["x"])]
        assert (at_centre <= 0.9 * hole["strength"]).all() and (at_centre >= hole["strength"] - 1e-6).all()
        assert added.max() <= 1e-6 and added.min() >= hole["strength"] - 1e-6


def test_no_hole_on_a_dark_retina(fundus):
    """The released code darkens only a retina whose mean value exceeds 0.25."""
    frame = model.fov_frame(fundus.fov_mask)
    work = np.where(fundus.fov_mask[..., None], np.float32(0.2), np.float32(0)).astype(np.float32)
    before = work.copy()
    hole = model.add_hole(work, frame, np.random.default_rng(0))
    assert hole["strength"] == 0 and (work == before).all()


def test_spots_are_the_released_small_discs_of_added_light(grey, fundus):
    depth = cv2.distanceTransform(fundus.fov_mask.astype(np.uint8), cv2.DIST_L2, 5)
    for seed in range(4):
        out, params = degrade_fundus(grey, fundus.fov_mask, ["spot"], np.random.default_rng(seed))
        spots, scale = params["spot"]["spots"], params["scale"]
        assert 5 <= len(spots) <= 10
        changed = np.zeros(fundus.fov_mask.shape, bool)
        for spot in spots:
            r = spot["r_512"]
            assert 6 <= r <= 25 and spot["radius_512"] == r // 2 and spot["radius"] == pytest.approx(r // 2 * scale)
            assert spot["intensity"] == pytest.approx((14 / 25 + 1 - r / 25) * (1 - math.exp(-(0.5 + r / 25) * 0.3 * r / 25)))
            assert 0.06 <= spot["intensity"] <= 0.21
            for size in spot["kernel_512"]:
                assert size % 2 == 1 and 3 <= size <= 13
            x, y = spot["x"], spot["y"]
            assert fundus.fov_mask[y, x] and depth[y, x] >= spot["radius"]
            assert out[y, x].astype(int).min() > 100
            reach = spot["radius"] + max(spot["kernel_512"]) * scale / 2 * math.sqrt(2) + 2
            yy, xx = np.ogrid[: out.shape[0], : out.shape[1]]
            changed |= (xx - x) ** 2 + (yy - y) ** 2 <= reach**2
        # Light is added only on the spots: everything else keeps its grey.
        assert (out[fundus.fov_mask & ~changed] == 100).all()
        assert luma(out)[fundus.fov_mask].mean() > 100


def test_a_large_spot_adds_its_full_intensity_at_its_centre():
    """At 512 px the disc of a spot is wider than its kernel, so its centre gets (nearly) all its light."""
    mask = disc_mask(512)
    image = np.zeros((512, 512, 3), np.uint8)
    image[mask] = 100
    out, params = degrade_fundus(image, mask, ["spot"], np.random.default_rng(0))
    for spot in params["spot"]["spots"]:
        assert out[spot["y"], spot["x"]].astype(int).min() >= 100 + 0.9 * 255 * spot["intensity"]


@pytest.mark.parametrize("kinds", FUNDUS_DEGRADATION_TYPES, ids="+".join)
def test_structure_kept_per_type(photographs, kinds):
    """Blur keeps the vessels visible (as in real Usable photographs), the others barely touch
    them; for reference, a full Gaussian of sigma 5-15 px keeps well under 1 %."""
    kept = []
    for index, photo in enumerate(photographs):
        for seed in range(3):
            degraded, _ = degrade_fundus(photo.image, photo.fov_mask, kinds, np.random.default_rng([index, seed]))
            kept.append(structure_kept(photo.image, degraded, photo.fov_mask))
    low, high = (0.25, 0.85) if "blur" in kinds else (0.6, 1.2)
    assert low <= float(np.median(kept)) <= high


def test_structure_kept_is_one_unchanged_and_the_square_of_a_contrast_factor(photographs):
    photo = photographs[0]
    assert structure_kept(photo.image, photo.image.copy(), photo.fov_mask) == pytest.approx(1.0)
    halved = photo.image.astype(np.float32) / 2
    assert structure_kept(photo.image.astype(np.float32), halved, photo.fov_mask) == pytest.approx(0.25, rel=1e-3)
    erased = cv2.GaussianBlur(photo.image, (0, 0), 10)
    assert structure_kept(photo.image, erased, photo.fov_mask) < 0.01
    grey_image = cv2.cvtColor(photo.image, cv2.COLOR_RGB2GRAY)
    assert structure_kept(grey_image, grey_image, photo.fov_mask) == pytest.approx(1.0)


def test_structure_kept_ignores_the_rim(photographs):
    """Brightening the retina as a whole changes the rim's step to the black border, not the
    structure inside it."""
    photo = photographs[1]
    lifted = np.where(photo.fov_mask[..., None], photo.image.astype(np.float32) + 40, photo.image)
    assert structure_kept(photo.image, lifted, photo.fov_mask) == pytest.approx(1.0, abs=1e-3)


def test_structure_kept_refuses_what_it_cannot_measure(photographs):
    photo = photographs[0]
    with pytest.raises(ValueError, match="differ in shape"):
        structure_kept(photo.image, photo.image[:-1], photo.fov_mask)
    with pytest.raises(ValueError, match="fov_mask shape"):
        structure_kept(photo.image, photo.image, photo.fov_mask[:-1])
    with pytest.raises(ValueError, match="too small"):
        structure_kept(photo.image, photo.image, np.zeros(photo.fov_mask.shape, bool))
    flat = np.full_like(photo.image, 90)
    with pytest.raises(ValueError, match="uniform"):
        structure_kept(flat, flat, photo.fov_mask)


def test_estimate_fov_mask_recovers_the_rendered_fov():
    for seed, (height, width, eye) in enumerate([(128, 160, "right"), (160, 160, "left"), (256, 320, "right")]):
        rendering = render_fundus(height, width, {"HE": 3, "MA": 3}, eye, np.random.default_rng(seed))
        # Also as read back from an EyePACS-style JPEG, whose chroma subsampling bleeds the red rim.
        _, jpeg = cv2.imencode(".jpg", rendering.image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
        for image in (rendering.image, cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[..., ::-1]):
            estimate = estimate_fov_mask(image)
            iou = (estimate & rendering.fov_mask).sum() / (estimate | rendering.fov_mask).sum()
            assert iou > 0.97
