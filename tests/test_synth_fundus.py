"""The fundus renderer: anatomy where it belongs, lesions exactly where their masks say, reproducible."""

from __future__ import annotations

from collections import Counter

import cv2
import numpy as np
import pytest

from comcl.synth.fundus import LESION_KINDS, FundusRendering, render_fundus

COUNTS = {"MA": 6, "HE": 6, "EX": 4, "SE": 2}
CASES = [(128, 160, "right", 0), (128, 160, "left", 1), (96, 120, "right", 2), (160, 160, "left", 3), (128, 176, "right", 4)]


def render(height: int, width: int, eye: str, seed: int, counts: dict[str, int] = COUNTS) -> FundusRendering:
    return render_fundus(height, width, counts, eye, np.random.default_rng(seed))


@pytest.fixture(scope="module")
def renderings() -> list[tuple[str, FundusRendering]]:
    return [(eye, render(h, w, eye, seed)) for h, w, eye, seed in CASES]


def ring(mask: np.ndarray, exclude: np.ndarray, width: int = 3) -> np.ndarray:
    """Background pixels within ``width`` of the mask."""
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((2 * width + 1, 2 * width + 1), np.uint8)).astype(bool)
    return grown & ~mask & ~exclude


def test_outputs_have_the_promised_types(renderings):
    for _, r in renderings:
        h, w = r.fov_mask.shape
        assert r.image.shape == (h, w, 3) and r.image.dtype == np.uint8
        assert r.fov_mask.dtype == bool
        assert set(r.masks) == {*LESION_KINDS, "OD"}
        assert all(m.shape == (h, w) and m.dtype == bool for m in r.masks.values())


def test_field_of_view_is_a_centred_circle_inside_the_image(renderings):
    for _, r in renderings:
        h, w = r.fov_mask.shape
        diameter = 2 * np.sqrt(r.fov_mask.sum() / np.pi)
        assert 0.9 * min(h, w) <= diameter <= 0.98 * min(h, w)
        ys, xs = np.nonzero(r.fov_mask)
        assert abs(xs.mean() - (w - 1) / 2) < 0.03 * h and abs(ys.mean() - (h - 1) / 2) < 0.03 * h
        assert not r.fov_mask[:, 0].any() and not r.fov_mask[:, -1].any()


def test_black_outside_the_field_of_view_orange_red_inside(renderings):
    for _, r in renderings:
        assert r.image[~r.fov_mask].max() <= 10
        red, green, blue = r.image[r.fov_mask].reshape(-1, 3).mean(axis=0)
        assert 110 < red < 230 and red > 1.5 * green > 1.5 * blue > 0
        assert r.image[r.fov_mask].max(axis=-1).min() > 15, "the vignetted rim must stay distinguishable from the border"


def test_every_lesion_is_rendered_with_a_tight_box(renderings):
    for _, r in renderings:
        assert Counter(lesion.kind for lesion in r.lesions) == Counter(COUNTS)
        for kind in LESION_KINDS:
            mask = r.masks[kind]
            covered = np.zeros_like(mask)
            for lesion in (lesion for lesion in r.lesions if lesion.kind == kind):
                x, y, w, h = lesion.box
                assert w >= 1 and h >= 1
                box = mask[y : y + h, x : x + w]
                # Tight: the mask reaches every side of the box.
                assert box[0].any() and box[-1].any() and box[:, 0].any() and box[:, -1].any()
                covered[y : y + h, x : x + w] = True
            assert not (mask & ~covered).any(), f"{kind} mask pixels outside every {kind} box"


def test_lesion_masks_lie_in_the_fov_clear_of_the_disc_and_of_each_other(renderings):
    for _, r in renderings:
        stack = np.stack([r.masks[kind] for kind in (*LESION_KINDS, "OD")])
        assert not (stack.any(axis=0) & ~r.fov_mask).any()
        assert stack.sum(axis=0).max() <= 1, "masks of different kinds (or the disc) overlap"


def test_red_lesions_are_darker_and_redder_than_their_surroundings(renderings):
    for _, r in renderings:
        image = r.image.astype(float)
        lesions = np.any([r.masks[kind] for kind in LESION_KINDS], axis=0)
        for kind in ("MA", "HE"):
            inside, around = image[r.masks[kind]], image[ring(r.masks[kind], lesions | r.masks["OD"])]
            assert inside[:, 1].mean() < 0.8 * around[:, 1].mean(), f"{kind} is not darker"
            assert inside.sum(axis=1).mean() < around.sum(axis=1).mean()
            redness = inside[:, 0].mean() / inside[:, 1].mean()
            assert redness > around[:, 0].mean() / around[:, 1].mean(), f"{kind} is not redder"


def test_exudates_are_bright_yellow_and_soft_exudates_pale(renderings):
    for _, r in renderings:
        image = r.image.astype(float)
        lesions = np.any([r.masks[kind] for kind in LESION_KINDS], axis=0)
        ex, ex_ring = image[r.masks["EX"]], image[ring(r.masks["EX"], lesions | r.masks["OD"])]
        assert ex[:, 1].mean() > ex_ring[:, 1].mean() + 60, "hard exudates are not brighter"
        assert ex[:, 1].mean() > ex[:, 2].mean() + 40, "hard exudates are not yellow"
        se, se_ring = image[r.masks["SE"]], image[ring(r.masks["SE"], lesions | r.masks["OD"])]
        assert se.mean() > se_ring.mean() + 20
        assert se[:, 2].mean() > ex[:, 2].mean(), "soft exudates are not paler (whiter) than hard ones"


def test_optic_disc_is_bright_nasal_and_of_realistic_size(renderings):
    for eye, r in renderings:
        disc = r.masks["OD"]
        assert disc.any()
        fov_diameter = 2 * np.sqrt(r.fov_mask.sum() / np.pi)
        disc_diameter = 2 * np.sqrt(disc.sum() / np.pi)
        assert fov_diameter / 9 < disc_diameter < fov_diameter / 5
        disc_x = np.nonzero(disc)[1].mean()
        fov_x = np.nonzero(r.fov_mask)[1].mean()
        assert (disc_x > fov_x) == (eye == "right"), "the disc must lie on the nasal side"
        green = r.image[..., 1].astype(float)
        assert green[disc].mean() > green[r.fov_mask].mean() + 40


def test_vessels_are_drawn(renderings):
    """A vessel tree shows as thin structures darker than the local background."""
    for _, r in renderings:
        green = r.image[..., 1]
        background = cv2.medianBlur(green, 9).astype(float)
        lesions = np.any([r.masks[kind] for kind in (*LESION_KINDS, "OD")], axis=0)
        interior = cv2.erode(r.fov_mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & ~lesions
        dark = (green < 0.85 * background) & interior
        assert 0.01 < dark.sum() / interior.sum() < 0.3


def test_same_seed_same_bytes_and_different_seed_different_image():
    a, b, c = render(96, 120, "left", 5), render(96, 120, "left", 5), render(96, 120, "left", 6)
    assert a.image.tobytes() == b.image.tobytes()
    assert all((a.masks[k] == b.masks[k]).all() for k in a.masks) and a.lesions == b.lesions
    assert a.image.tobytes() != c.image.tobytes()


def test_a_lesion_scale_of_two_about_doubles_every_lesion_kind_and_one_changes_nothing():
    counts = {"MA": 6, "HE": 6, "EX": 3, "SE": 2}
    usual = render_fundus(256, 320, counts, "left", np.random.default_rng(7))
    same = render_fundus(256, 320, counts, "left", np.random.default_rng(7), lesion_scale=1.0)
    assert usual.image.tobytes() == same.image.tobytes()
    doubled = render_fundus(256, 320, counts, "left", np.random.default_rng(7), 2.0)
    for kind in counts:
        ratio = np.sqrt(doubled.masks[kind].sum() / usual.masks[kind].sum())
        assert 1.5 < ratio < 2.6, (kind, ratio)


def test_zero_counts_give_empty_lesion_masks():
    r = render(96, 120, "right", 8, counts={})
    assert r.lesions == []
    assert not any(r.masks[kind].any() for kind in LESION_KINDS)
    assert r.masks["OD"].any()


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="eye"):
        render(96, 120, "up", 0)
    with pytest.raises(ValueError, match="NV"):
        render(96, 120, "left", 0, counts={"NV": 1})
    with pytest.raises(ValueError, match=">= 0"):
        render(96, 120, "left", 0, counts={"MA": -1})
