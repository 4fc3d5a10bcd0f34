"""The synthetic chest radiograph: anatomy that measures like a chest, findings inside their boxes."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import pytest

from comcl.synth.chest import CHEST_FINDINGS, ChestRendering, render_chest

SIZE = 96


def _render(findings: Sequence[str], seed: int, size: int = SIZE) -> ChestRendering:
    return render_chest(size, findings, np.random.default_rng(seed))


def _pixel_box(box: tuple[float, float, float, float]) -> tuple[slice, slice]:
    x, y, w, h = box
    return slice(int(np.floor(y)), int(np.ceil(y + h))), slice(int(np.floor(x)), int(np.ceil(x + w)))


def _heart_and_thorax(rendering: ChestRendering, rows: range) -> tuple[int, int, int]:
    """Left and right heart borders (at the widest row) and the widest inner thorax, in pixels.

    The ribs are smoothed away vertically; on each row the heart is the bright run through the
    midline, bounded by lung darker than halfway from the lungs to the heart, and the thorax ends
    where the lungs meet the (brighter) chest wall."""
    n = rendering.image.shape[0]
    smooth = cv2.GaussianBlur(rendering.image.astype(np.float32), (0, 0), sigmaX=0.5, sigmaY=0.025 * n)
    centre, hearts, thoraces = n // 2, [], []
    for row in rows:
        profile, body = smooth[row], rendering.body_mask[row]
        low = np.percentile(profile[body], 10)
        lung = (profile < low + 0.5 * (profile[centre] - low)) & body
        hearts.append((int(np.flatnonzero(lung[:centre])[-1]) + 1, centre + int(np.flatnonzero(lung[centre:])[0])))
        dark = (profile < low + 0.35 * (profile[centre] - low)) & body
        left, right = int(np.flatnonzero(dark[:centre])[-1]), centre + int(np.flatnonzero(dark[centre:])[0])
        while left > 0 and dark[left - 1]:
            left -= 1
        while right < n - 1 and dark[right + 1]:
            right += 1
        thoraces.append(right - left + 1)
    left, right = max(hearts, key=lambda edges: edges[1] - edges[0])
    return left, right, max(thoraces)


def test_normal_chest_looks_like_a_chest():
    rendering = _render([], seed=0, size=128)
    image, body = rendering.image, rendering.body_mask
    assert image.shape == (128, 128) and image.dtype == np.uint8
    assert body.shape == (128, 128) and body.dtype == bool
    assert rendering.findings == []
    assert 0.5 < body.mean() < 0.95
    assert not body[0, 0] and not body[0, -1], "the air above the shoulders is not body"
    assert body[64, 64]
    assert np.median(image[~body]) < 40 and np.median(image[body]) > 80, "air dark, patient bright"
    lungs = [image[48:64, 32:40].mean(), image[48:64, 88:96].mean()]
    mediastinum = image[32:48, 60:68].mean()
    abdomen = image[112:120, 40:88].mean()
    assert max(lungs) + 50 < min(mediastinum, abdomen), "radiolucent lungs, dense mediastinum and abdomen"


@pytest.mark.parametrize("name", CHEST_FINDINGS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_finding_changes_the_pixels_in_its_box(name, seed):
    normal = _render([], seed)
    rendering = _render([name], seed)
    assert [finding.name for finding in rendering.findings] == [name]
    x, y, w, h = rendering.findings[0].box
    assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= SIZE and y + h <= SIZE
    change = rendering.image.astype(np.float32) - normal.image.astype(np.float32)
    inside = change[_pixel_box((x, y, w, h))].mean()
    if name == "Pneumothorax":
        assert inside < -2, "a pneumothorax is darker: more air, no lung markings"
    else:
        assert inside > 2, f"{name} is an opacity"
    if name != "Atelectasis":  # its volume loss also raises the hemidiaphragm, outside the box
        margin = 0.05 * SIZE
        near = change[_pixel_box((x - margin, y - margin, w + 2 * margin, h + 2 * margin))]
        assert np.abs(near).sum() > 0.75 * np.abs(change).sum(), "the change is where the box is"


def test_findings_co_occur_and_keep_their_order():
    names = ["Pneumothorax", "Mass", "Effusion", "Cardiomegaly", "Nodule", "Atelectasis", "Pneumonia", "Infiltration"]
    rendering = _render(names, seed=5, size=128)
    normal = _render([], seed=5, size=128)
    assert [finding.name for finding in rendering.findings] == names
    for finding in rendering.findings:
        x, y, w, h = finding.box
        assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= 128 and y + h <= 128
        assert not np.array_equal(rendering.image[_pixel_box(finding.box)], normal.image[_pixel_box(finding.box)])


def test_adding_a_finding_leaves_the_others_alone():
    mass = _render(["Mass"], seed=3)
    both = _render(["Nodule", "Mass"], seed=3)
    assert mass.findings[0].box == both.findings[1].box
    assert np.array_equal(mass.body_mask, both.body_mask)


@pytest.mark.parametrize("name, low, high", [("Mass", 0.07, 0.18), ("Nodule", 0.015, 0.06)])
def test_round_lesions_have_their_sizes(name, low, high):
    for seed in range(4):
        _x, _y, w, h = _render([name], seed, size=256).findings[0].box
        assert low * 256 <= max(w, h) <= high * 256


def test_cardiomegaly_raises_the_cardiothoracic_ratio():
    for seed in range(5):
        normal, enlarged = _render([], seed, size=128), _render(["Cardiomegaly"], seed, size=128)
        _x, y, w, h = enlarged.findings[0].box
        rows = range(int(y + 0.25 * h), int(y + 0.6 * h) + 1)  # above both domes, through both hearts
        ratios = []
        for rendering in (normal, enlarged):
            left, right, thorax = _heart_and_thorax(rendering, rows)
            ratios.append((right - left) / thorax)
            assert right - 64 > 64 - left, "the heart bulges to the patient's left, the image's right"
        assert ratios[0] < 0.5 < ratios[1], f"seed {seed}: cardiothoracic ratios {ratios}"
        assert w / _heart_and_thorax(enlarged, rows)[2] > 0.5, "the box is the enlarged heart"


def test_unknown_or_repeated_findings_are_refused():
    with pytest.raises(ValueError, match="valid names are .*Pneumothorax"):
        render_chest(SIZE, ["Mass", "Hernia"], np.random.default_rng(0))
    with pytest.raises(ValueError, match="more than once"):
        render_chest(SIZE, ["Mass", "Mass"], np.random.default_rng(0))


def test_same_seed_same_bytes_other_seed_other_image():
    first, again, other = (
        _render(["Effusion", "Nodule"], 7),
        _render(["Effusion", "Nodule"], 7),
        _render(["Effusion", "Nodule"], 8),
    )
    assert first.image.tobytes() == again.image.tobytes()
    assert np.array_equal(first.body_mask, again.body_mask) and first.findings == again.findings
    assert np.abs(first.image.astype(int) - other.image.astype(int)).mean() > 2


def test_consumes_the_generator_the_same_way_whatever_the_findings():
    """The dataset generator goes on drawing from the same generator (for the degradation)."""
    draws = []
    for findings in ([], ["Mass", "Pneumothorax", "Cardiomegaly"]):
        rng = np.random.default_rng(11)
        render_chest(SIZE, findings, rng)
        draws.append(rng.random())
    assert draws[0] == draws[1]
