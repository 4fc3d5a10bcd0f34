"""The degradation gallery: one column per degradation type, reproducible to the byte, and clear
errors when there is nothing to show."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from comcl.degrade import gallery
from comcl.degrade.chest import CHEST_DEGRADATIONS
from comcl.degrade.fundus import FUNDUS_DEGRADATION_TYPES
from comcl.degrade.gallery import choose_examples, draw_gallery, read_example
from comcl.errors import DataError
from comcl.io import save_image
from comcl.synth.chest import render_chest
from comcl.synth.fundus import render_fundus

EYEQ = {"format": "eyeq", "modality": "fundus", "dataset": "eyeq_tiny"}
CHEST = {"format": "chestxray14", "modality": "chest", "dataset": "chest_tiny"}


@pytest.fixture(scope="module")
def eyeq_index(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("gallery_eyeq")
    rows = []
    for i, counts in enumerate([{"HE": 2, "EX": 2}, {}, {"MA": 3}, {}]):
        path = root / f"fundus_{i}.jpeg"
        save_image(path, render_fundus(96, 120, counts, "left", np.random.default_rng(i)).image)
        rows.append({"image_id": f"fundus_{i}", "path": str(path), "quality": "high", "lesion": bool(counts)})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def chest_index(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("gallery_chest")
    rows = []
    for i, findings in enumerate([["Nodule"], [], ["Effusion"]]):
        path = root / f"chest_{i}.png"
        save_image(path, render_chest(96, findings, np.random.default_rng(i)).image)
        rows.append({"image_id": f"chest_{i}", "path": str(path), "quality": "high", "lesion": bool(findings)})
    return pd.DataFrame(rows)


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_one_column_per_degradation_type(tmp_path, eyeq_index, chest_index):
    assert len(FUNDUS_DEGRADATION_TYPES) + 1 == 8 and len(CHEST_DEGRADATIONS) + 1 == 7
    draw_gallery(eyeq_index, EYEQ, tmp_path / "eyeq.png", seed=0)
    draw_gallery(chest_index, CHEST, tmp_path / "chest.png", seed=0)
    (eyeq_width, _), (chest_width, _) = _size(tmp_path / "eyeq.png"), _size(tmp_path / "chest.png")
    assert eyeq_width / chest_width == pytest.approx(8 / 7, rel=0.01)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chest.png", "eyeq.png"], "no temporary file is left behind"


def test_rows_follow_n_images_and_shrink_to_what_exists(tmp_path, chest_index):
    draw_gallery(chest_index, CHEST, tmp_path / "one.png", seed=0, n_images=1)
    draw_gallery(chest_index, CHEST, tmp_path / "three.png", seed=0, n_images=3)
    draw_gallery(chest_index, CHEST, tmp_path / "all.png", seed=0, n_images=10)
    (w1, h1), (w3, h3), (w_all, h_all) = (_size(tmp_path / f"{name}.png") for name in ("one", "three", "all"))
    assert w1 == w3 == w_all
    assert h3 > 2 * h1
    assert h_all == h3, "only 3 high-quality images exist, so 3 rows"


def test_same_seed_same_bytes(tmp_path, eyeq_index):
    draw_gallery(eyeq_index, EYEQ, tmp_path / "a.png", seed=5, n_images=2)
    draw_gallery(eyeq_index, EYEQ, tmp_path / "b.png", seed=5, n_images=2)
    draw_gallery(eyeq_index, EYEQ, tmp_path / "c.png", seed=6, n_images=2)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "c.png").read_bytes()


def test_rows_mix_lesion_and_healthy_and_skip_low_quality(eyeq_index):
    frame = eyeq_index.assign(quality=["high", "high", "high", "low"])
    for seed in range(5):
        chosen = choose_examples(frame, 2, np.random.default_rng(seed), "eyeq_tiny")
        assert sorted(chosen["lesion"]) == [False, True]
        assert (chosen["quality"] == "high").all()
        assert len(choose_examples(frame, 5, np.random.default_rng(seed), "eyeq_tiny")) == 3


def test_large_images_are_shrunk_to_the_reference_size(tmp_path):
    path = tmp_path / "big.png"
    save_image(path, np.full((300, 400), 128, np.uint8))
    assert read_example(path, "L", "chest").shape == (192, 256)
    save_image(path, np.full((1024, 1280, 3), 128, np.uint8))
    assert read_example(path, "RGB", "fundus").shape == (512, 640, 3)


def test_only_low_quality_images_is_a_data_error(tmp_path, eyeq_index):
    with pytest.raises(DataError, match="nothing to show") as caught:
        draw_gallery(eyeq_index.assign(quality="low"), EYEQ, tmp_path / "none.png", seed=0)
    assert caught.value.hint and "quality" in caught.value.hint
    assert not (tmp_path / "none.png").exists()


def test_unknown_modality_is_a_value_error(tmp_path, eyeq_index):
    with pytest.raises(ValueError, match="unknown modality 'idrid'"):
        draw_gallery(eyeq_index, {"modality": "idrid"}, tmp_path / "x.png", seed=0)
    with pytest.raises(ValueError, match="unknown modality None"):
        draw_gallery(eyeq_index, {}, tmp_path / "x.png", seed=0)


def test_captions_give_the_drawn_values_and_the_structure_kept(tmp_path, eyeq_index, chest_index, monkeypatch):
    """Under each degraded fundus photograph its key values and the share of structure it kept,
    the figure that says whether its lesions are still there; radiographs get their values only."""
    captions: list[str] = []
    monkeypatch.setattr(gallery, "_show", lambda ax, image, caption: captions.append(caption))
    draw_gallery(eyeq_index, EYEQ, tmp_path / "eyeq.png", seed=0, n_images=1)
    original, *degraded = captions
    assert original.endswith(" px") and len(degraded) == len(FUNDUS_DEGRADATION_TYPES)
    for caption, kinds in zip(degraded, FUNDUS_DEGRADATION_TYPES, strict=True):
        *values, kept = caption.split("\n")
        assert re.fullmatch(r"structure kept \d+\.\d\d", kept)
        assert ("brightness ×" in values[0]) == ("illumination" in kinds)
        assert any(line.endswith("spots") for line in values) == ("spot" in kinds)
        assert any(re.fullmatch(r"blur [\d.]+×[\d.]+ px, σ [\d.]+", line) for line in values) == ("blur" in kinds)
    captions.clear()
    draw_gallery(chest_index, CHEST, tmp_path / "chest.png", seed=0, n_images=1)
    assert not any("structure" in caption for caption in captions)


def test_unreadable_image_is_a_data_error(tmp_path, chest_index):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    frame = chest_index.iloc[:1].assign(path=str(broken))
    with pytest.raises(DataError, match="cannot read the image") as caught:
        draw_gallery(frame, CHEST, tmp_path / "x.png", seed=0)
    assert caught.value.path == broken
