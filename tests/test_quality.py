"""The no-reference chest quality score: every degradation kind lowers it, scored together with the originals as
an index scores them, and a film's score does not depend on the resolution it is stored at."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from comcl.degrade.chest import CHEST_DEGRADATIONS, degrade_chest
from comcl.index.quality import FEATURES, measure_pixels, score, shares_scored_lower
from comcl.synth.chest import CHEST_FINDINGS, render_chest

FINDINGS = [(), *[(finding,) for finding in CHEST_FINDINGS]]


def radiographs(size: int, count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [render_chest(size, FINDINGS[number % len(FINDINGS)], rng).image for number in range(count)]


def scores(images: list[np.ndarray]) -> np.ndarray:
    return score(pd.DataFrame([measure_pixels(image) for image in images], columns=FEATURES)).to_numpy()


@pytest.fixture(scope="module")
def films() -> list[np.ndarray]:
    return radiographs(512, 20, seed=0)


def test_every_degradation_kind_scores_below_its_original(films):
    degraded = {
        kind: [degrade_chest(film, [kind], np.random.default_rng([number, index]))[0] for index, film in enumerate(films)]
        for number, kind in enumerate(CHEST_DEGRADATIONS)
    }
    shares = shares_scored_lower(films, degraded)
    assert set(shares) == set(CHEST_DEGRADATIONS)
    assert all(share >= 0.9 for share in shares.values()), shares


def test_a_film_at_half_its_resolution_scores_nearly_the_same():
    full = radiographs(1024, 6, seed=1)
    half = [cv2.resize(film, (512, 512), interpolation=cv2.INTER_AREA) for film in full]
    assert np.abs(scores(full) - scores(half)).mean() <= 0.2


def test_a_films_score_depends_on_that_film_alone(films):
    """No standardisation over the dataset: adding other films, even bad ones, changes no film's score."""
    alone = scores(films[:4])
    flattened = [np.full_like(film, 128) + (film // 16) for film in films[4:8]]
    assert np.allclose(scores([*films[:4], *flattened])[:4], alone)


def test_blur_lowers_the_sharpness_but_not_the_contrast_and_a_grid_reads_as_periodic(films):
    film = films[0]
    sharp, _, contrast, _, periodic = measure_pixels(film)
    blurred = measure_pixels(cv2.GaussianBlur(film, (0, 0), 3.0))
    assert blurred[0] < sharp - 0.3 and abs(blurred[2] - contrast) < 0.1
    grid, _ = degrade_chest(film, ["grid"], np.random.default_rng(3))
    assert periodic == 0 and measure_pixels(grid)[4] > 0


def test_scoring_images_that_do_not_match_their_originals_is_refused(films):
    with pytest.raises(ValueError, match="3 blur images for 20 originals"):
        shares_scored_lower(films, {"blur": films[:3]})
