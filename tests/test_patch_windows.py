"""Patch windows: lesion boxes expanded to square windows, random field-of-view windows, duplicate merging."""

from __future__ import annotations

import numpy as np
import pytest

from comcl.patches.windows import expand_box, fov_windows, merge_windows

WIDTH, HEIGHT, SIZE = 500, 400, 64


def _inside(window: tuple[int, int, int, int], width: int = WIDTH, height: int = HEIGHT) -> bool:
    x0, y0, x1, y1 = window
    return 0 <= x0 and 0 <= y0 and x1 <= width and y1 <= height and x1 - x0 == SIZE and y1 - y0 == SIZE


def _contains(window: tuple[int, int, int, int], box: tuple[float, float, float, float]) -> bool:
    return window[0] <= box[0] and window[1] <= box[1] and box[2] <= window[2] and box[3] <= window[3]


def test_expand_box_centres_the_window_on_the_box() -> None:
    box = (100.0, 80.0, 120.0, 90.0)
    window, exceeds = expand_box(box, WIDTH, HEIGHT, SIZE)
    assert window == (78, 53, 142, 117)
    assert all(isinstance(value, int) for value in window)
    assert (window[0] + window[2]) / 2 == 110 and (window[1] + window[3]) / 2 == 85
    assert not exceeds


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ((2.0, 180.0, 12.0, 190.0), (0, 153)),  # left
        ((490.0, 180.0, 499.0, 190.0), (WIDTH - SIZE, 153)),  # right
        ((240.0, 1.0, 260.0, 9.0), (218, 0)),  # top
        ((240.0, 385.0, 260.0, 400.0), (218, HEIGHT - SIZE)),  # bottom
        ((0.0, 0.0, 10.0, 10.0), (0, 0)),  # top-left
        ((480.0, 0.0, 500.0, 30.0), (WIDTH - SIZE, 0)),  # top-right
        ((5.0, 370.0, 40.0, 399.0), (0, HEIGHT - SIZE)),  # bottom-left
        ((470.0, 350.0, 500.0, 400.0), (WIDTH - SIZE, HEIGHT - SIZE)),  # bottom-right
    ],
)
def test_expand_box_shifts_the_window_inside_at_borders_and_corners(
    box: tuple[float, float, float, float], expected: tuple[int, int]
) -> None:
    window, exceeds = expand_box(box, WIDTH, HEIGHT, SIZE)
    assert window[:2] == expected
    assert _inside(window)
    assert _contains(window, box)
    assert not exceeds


def test_a_box_larger_than_the_patch_gets_a_square_window_that_holds_it() -> None:
    # The window is as wide as the box's longer side, centred on the box and shifted inside the image:
    # the patch stage resizes it to the patch size, so the patch shows the whole lesion, not its centre.
    wide = (50.0, 60.0, 350.0, 100.0)
    window, exceeds = expand_box(wide, WIDTH, HEIGHT, SIZE)
    assert exceeds and window == (50, 0, 350, 300) and _contains(window, wide)
    tall = (300.0, 20.0, 310.0, 380.0)
    window, exceeds = expand_box(tall, WIDTH, HEIGHT, SIZE)
    assert exceeds and window == (125, 20, 485, 380) and _contains(window, tall)
    # A fraction of a pixel more than the patch makes a window one pixel wider.
    window, exceeds = expand_box((10.0, 10.0, 74.5, 20.0), WIDTH, HEIGHT, SIZE)
    assert exceeds and window == (10, 0, 75, 65)
    # No window is larger than the image's shorter side: a box wider than that is clipped to it.
    window, exceeds = expand_box((0.0, 0.0, 480.0, 30.0), WIDTH, HEIGHT, SIZE)
    assert exceeds and window == (40, 0, 440, 400)
    # A box exactly as wide as the window is not larger than it.
    assert expand_box((10.0, 10.0, 74.0, 20.0), WIDTH, HEIGHT, SIZE) == ((10, 0, 74, 64), False)


@pytest.mark.parametrize(("width", "height"), [(63, 400), (500, 50), (10, 10)])
def test_image_smaller_than_the_patch_size_raises(width: int, height: int) -> None:
    with pytest.raises(ValueError, match=rf"{width} x {height} px and patches are 64 px.*smaller patch size or larger images"):
        expand_box((1.0, 1.0, 5.0, 5.0), width, height, SIZE)


def _disc(height: int, width: int, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    return (xx - width / 2) ** 2 + (yy - height / 2) ** 2 <= radius**2


def test_fov_windows_lie_in_the_field_of_view_are_distinct_and_at_most_k() -> None:
    fov = _disc(160, 200, 70)
    windows = fov_windows(fov, 12, 32, np.random.default_rng(0), 0.9)
    assert len(windows) == 12 and len(set(windows)) == 12
    for x0, y0, x1, y1 in windows:
        assert (x1 - x0, y1 - y0) == (32, 32) and 0 <= x0 and 0 <= y0 and x1 <= 200 and y1 <= 160
        assert fov[y0:y1, x0:x1].mean() >= 0.9


def test_fov_windows_are_exactly_the_positions_with_enough_coverage() -> None:
    rng = np.random.default_rng(3)
    fov = np.zeros((30, 40), dtype=bool)
    for _ in range(6):
        y, x = rng.integers(0, 25), rng.integers(0, 35)
        fov[y : y + int(rng.integers(4, 12)), x : x + int(rng.integers(4, 12))] = True
    size, coverage = 6, 0.55
    naive = {
        (x, y, x + size, y + size)
        for y in range(30 - size + 1)
        for x in range(40 - size + 1)
        if fov[y : y + size, x : x + size].sum() >= coverage * size * size
    }
    assert naive
    assert set(fov_windows(fov, 10_000, size, np.random.default_rng(0), coverage)) == naive
    assert len(fov_windows(fov, 10_000, size, np.random.default_rng(0), coverage)) == len(naive)


def test_fov_windows_returns_fewer_when_few_positions_qualify() -> None:
    fov = np.zeros((50, 60), dtype=bool)
    fov[10:42, 20:53] = True  # 32 rows, 33 columns: exactly two full 32 x 32 windows
    windows = fov_windows(fov, 5, 32, np.random.default_rng(1), 1.0)
    assert sorted(windows) == [(20, 10, 52, 42), (21, 10, 53, 42)]


def test_fov_windows_empty_when_nothing_qualifies() -> None:
    rng = np.random.default_rng(0)
    assert fov_windows(np.zeros((80, 80), dtype=bool), 4, 32, rng, 0.5) == []
    assert fov_windows(_disc(80, 80, 10), 4, 32, rng, 0.9) == []
    assert fov_windows(np.ones((20, 80), dtype=bool), 4, 32, rng, 0.5) == []
    assert fov_windows(np.ones((80, 80), dtype=bool), 0, 32, rng, 0.5) == []


def test_fov_windows_reproducible_with_the_same_seed() -> None:
    fov = _disc(160, 200, 70)
    first = fov_windows(fov, 6, 32, np.random.default_rng(42), 0.8)
    assert first == fov_windows(fov, 6, 32, np.random.default_rng(42), 0.8)
    assert first != fov_windows(fov, 6, 32, np.random.default_rng(43), 0.8)


def test_merge_windows_by_hand() -> None:
    windows = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10]])
    scores = np.array([0.9, 0.8, 0.5, 0.95])
    # Window 3 (best) duplicates 0 (IoU 1) and overlaps 1 (IoU 81/119 = 0.68); 2 is disjoint.
    assert merge_windows(windows, scores, 0.5).tolist() == [3, 2]
    assert merge_windows(windows, scores, 0.7).tolist() == [3, 1, 2]
    assert merge_windows(windows, scores, 1.0).tolist() == [3, 0, 1, 2]
    # Equal scores keep the given order: the first of two duplicates survives.
    assert merge_windows(windows, np.zeros(4), 0.5).tolist() == [0, 2]
    assert merge_windows(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def _naive_nms(windows: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    def iou(a: np.ndarray, b: np.ndarray) -> float:
        w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
        return w * h / union

    kept: list[int] = []
    for i in sorted(range(len(windows)), key=lambda i: (-scores[i], i)):
        if all(iou(windows[i], windows[j]) <= threshold for j in kept):
            kept.append(i)
    return kept


@pytest.mark.parametrize("threshold", [0.0, 0.1, 0.3, 0.5, 0.9])
def test_merge_windows_equals_a_naive_reference(threshold: float) -> None:
    rng = np.random.default_rng(int(threshold * 10))
    for _ in range(20):
        n = int(rng.integers(1, 40))
        corners = rng.integers(0, 60, size=(n, 2))
        windows = np.hstack([corners, corners + 16])
        scores = np.round(rng.random(n), 1)  # ties on purpose
        assert merge_windows(windows, scores, threshold).tolist() == _naive_nms(windows, scores, threshold)
