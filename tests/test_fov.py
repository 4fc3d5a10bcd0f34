"""The field of view's rim guard: which detections lie inside the disc, on hand-made masks and on a photograph-like
fundus image with a vignetted rim, a disc cut at top and bottom and JPEG noise, preprocessed as EyeQ's photographs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from comcl.datasets.preprocess import preprocess_image
from comcl.fov import boxes_inside, estimate_fov_mask, inner_fov


def disc(size: int = 101, radius: float = 50.0) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - size // 2) ** 2 + (xx - size // 2) ** 2 <= radius**2


def test_the_inner_field_of_view_loses_a_rim_of_the_margin_times_its_radius():
    mask = disc()
    inner = inner_fov(mask, 0.1)  # R = 50: pixels more than 5 px inside
    assert inner[50, 50] and inner[50, 6] and not inner[50, 4] and not inner[50, 0]
    assert inner.sum() == pytest.approx(np.pi * 45**2, rel=0.03)
    assert np.array_equal(inner_fov(mask, 0.0), mask)
    assert not inner_fov(np.zeros((10, 10), bool), 0.1).any()


def test_the_image_border_is_a_rim_too():
    """A field of view cut by the image (EyePACS cuts the disc at top and bottom) loses a rim along the cut."""
    mask = np.ones((40, 100), bool)
    inner = inner_fov(mask, 0.1)  # R = sqrt(4000 / pi) = 35.7: 3.6 px
    assert inner[20, 50] and not inner[1, 50] and not inner[20, 98]


def test_a_box_is_kept_when_its_centre_is_inside_and_at_least_half_of_it_is():
    mask = np.zeros((100, 100), bool)
    mask[:, :50] = True
    boxes = np.array(
        [
            [10, 10, 20, 20],  # inside
            [40, 10, 58, 20],  # centre at x 49, 10 of 18 columns inside
            [20, 10, 80, 20],  # centre at x 50, outside
            [30, 10, 66, 20],  # centre at x 48, 20 of 36 columns inside
            [18, 30, 80, 40],  # centre at x 49, 32 of 62 columns inside
            [5, 30, 96, 40],  # centre at x 50.5, outside
        ],
        dtype=float,
    )
    assert boxes_inside(boxes, mask, mask).tolist() == [True, True, False, True, True, False]
    thin = mask.copy()
    thin[:, 45:] = False
    assert boxes_inside(boxes[:2], mask, thin).tolist() == [True, False]  # the second's centre is off the inner mask
    assert boxes_inside(np.zeros((0, 4)), mask, mask).shape == (0,)
    assert boxes_inside(np.array([[-5.0, 200.0, -1.0, 210.0]]), mask, mask).tolist() == [False]  # off the image


def photograph(seed: int = 0) -> np.ndarray:
    """A 640 x 420 colour photograph: a vignetted orange disc of radius 225 cut at top and bottom, vessels, a notch of
    the camera's mask, a bright reflex, noise, a near-black surround; JPEG-compressed as EyePACS photographs are."""
    rng = np.random.default_rng(seed)
    height, width, radius = 420, 640, 225.0
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    r = np.hypot(xx - 320, yy - 210) / radius
    vignette = np.clip(1.0 - 0.55 * r**3, 0.25, 1.0)
    image = np.stack([200 * vignette, 95 * vignette**1.5, 45 * vignette**2], axis=2)
    for angle in (0.4, 2.2, 3.6, 5.1):
        end = (int(320 + 200 * np.cos(angle)), int(210 + 200 * np.sin(angle)))
        cv2.line(image, (400, 205), end, (120, 40, 30), 3)
    image += rng.normal(0, 4, image.shape)
    image[r > 1.0] = rng.integers(0, 6, (int((r > 1.0).sum()), 3))
    image[(np.abs(xx - 545) < 8) & (np.abs(yy - 210) < 14)] = 3  # the mask's notch on the rim
    pixels = np.clip(image, 0, 255).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)


def test_on_a_preprocessed_photograph_rim_boxes_are_dropped_and_lesions_inside_kept():
    square, fov = preprocess_image(photograph(), 128)
    assert fov.method == "circle" and fov.radius == pytest.approx(225, rel=0.03)
    mask = estimate_fov_mask(square)
    inner = inner_fov(mask, 0.08)
    boxes = np.array(
        [
            [60, 60, 66, 66],  # the centre
            [30, 90, 36, 96],  # a lesion well inside (0.6 of the radius)
            [0, 60, 6, 66],  # the left rim, where the disc meets the black surround
            [60, 2, 66, 8],  # the top, where the photograph cut the disc: the rim of what was photographed
            [119, 60, 125, 66],  # the notch on the right rim
            [100, 100, 120, 120],  # the lower right edge of the disc
        ],
        dtype=float,
    )
    assert boxes_inside(boxes, mask, inner).tolist() == [True, True, False, False, False, False]
