"""Embedding t-SNE (paper Fig. 1): patch sampling per level, encoder loading, silhouette, the figure and its summary."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from comcl.errors import DataError
from comcl.levels import LEVELS
from comcl.patches.store import PatchRow, PatchStoreWriter
from comcl.pretrain.model import ContrastiveModel, backbone
from comcl.report.embeddings import level_silhouette, load_encoder, run_tsne, sample_patches, tsne_2d

SIZE = 32
# Level -> base grey value, so that even a random encoder sees the levels differ.
SHADES = {"L": 40, "L~": 100, "H": 160, "H~": 220}


def write_store(path: Path, counts: dict[tuple[str, str], int]) -> Path:
    """A store with ``counts[(split, level)]`` patches of each split and level."""
    rng = np.random.default_rng(0)
    rows = []
    for (split, level), count in counts.items():
        for i in range(count):
            pixels = np.clip(SHADES[level] + rng.normal(0, 20, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
            rows.append(PatchRow(f"{level}{split}{i // 2}", split, level, (0, 0, SIZE, SIZE), None, None, None, False, pixels))
    with PatchStoreWriter(path, SIZE, 3, {"dataset": "eyeq", "proportion": "original"}) as writer:
        writer.add(rows)
    return path


def save_encoder(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    torch.save(ContrastiveModel("resnet18", ["L"], queue_size=2, dim=8, hidden=8).encoder_state_dict(), path)
    return path


def patch_index(counts: dict[tuple[str, str], int]) -> pd.DataFrame:
    pairs = [pair for pair, count in counts.items() for _ in range(count)]
    return pd.DataFrame({"patch_id": np.arange(len(pairs)), "split": [s for s, _ in pairs], "level": [v for _, v in pairs]})


def test_sample_patches_takes_per_level_from_the_test_split_seeded_and_sorted():
    index = patch_index({("train", level): 9 for level in LEVELS} | {("test", level): 6 for level in LEVELS})
    positions = sample_patches(index, per_level=4, seed=5)
    assert np.all(np.diff(positions) > 0)
    chosen = index.iloc[positions]
    assert set(chosen["split"]) == {"test"}
    assert chosen["level"].value_counts().to_dict() == dict.fromkeys(LEVELS, 4)
    assert np.array_equal(positions, sample_patches(index, per_level=4, seed=5))
    assert not np.array_equal(positions, sample_patches(index, per_level=4, seed=6))
    assert len(sample_patches(index, per_level=50, seed=5)) == 24


def test_a_level_missing_from_the_split_comes_from_all_splits(caplog):
    index = patch_index({("train", "L"): 3, ("test", "H"): 5, ("train", "H"): 5})
    with caplog.at_level(logging.WARNING):
        chosen = index.iloc[sample_patches(index, per_level=2, seed=0)]
    assert chosen.groupby(["level", "split"]).size().to_dict() == {("H", "test"): 2, ("L", "train"): 2}
    assert "no L patch in the test split" in caplog.text
    with pytest.raises(DataError, match="no patch"):
        sample_patches(index.iloc[:0], per_level=2, seed=0)


def test_silhouette_of_separated_levels_is_near_one_and_undefined_for_one_level():
    rng = np.random.default_rng(0)
    levels = np.repeat(LEVELS, 10)
    centres = {level: 50 * rng.normal(size=16) for level in LEVELS}
    features = np.stack([centres[level] for level in levels]) + rng.normal(size=(40, 16))
    assert level_silhouette(features, levels) > 0.9
    assert abs(level_silhouette(rng.normal(size=(40, 16)), levels)) < 0.2
    assert level_silhouette(features, ["L"] * 40) is None


def test_tsne_is_seeded_and_refuses_too_few_points():
    features = np.random.default_rng(0).normal(size=(12, 5))
    xy = tsne_2d(features, seed=1)
    assert xy.shape == (12, 2) and np.isfinite(xy).all()
    assert np.array_equal(xy, tsne_2d(features, seed=1))
    with pytest.raises(DataError, match="at least 4 patches"):
        tsne_2d(features[:3], seed=1)


def test_run_tsne_writes_the_figure_and_a_summary_without_nan(tmp_path):
    counts = {("test", "L"): 5, ("test", "L~"): 4, ("test", "H"): 5, ("train", "H~"): 6, ("train", "L"): 3}
    store = write_store(tmp_path / "patches.parquet", counts)
    encoders = {"CoMCL": save_encoder(tmp_path / "comcl.pt", 0), "Basic CL": save_encoder(tmp_path / "basic.pt", 1)}
    figure, summary = tmp_path / "out" / "tsne.png", tmp_path / "out" / "tsne.json"
    result = run_tsne(store, encoders, "resnet18", view_size=32, per_level=4, seed=0, figure=figure, summary=summary, threads=1)
    written = json.loads(summary.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in the summary"))
    assert written == result and list(written) == ["CoMCL", "Basic CL"]
    for entry in written.values():
        assert entry["patches"] == {"L": 4, "L~": 4, "H": 4, "H~": 4}
        assert -1 <= entry["silhouette"] <= 1
    with Image.open(figure) as image:
        assert image.format == "PNG" and image.width > image.height > 300


def test_an_encoder_of_another_arch_is_refused_naming_the_file(tmp_path):
    torch.save(backbone("resnet34")[0].state_dict(), tmp_path / "resnet34.pt")
    with pytest.raises(
        DataError, match=r"resnet34\.pt.*do not fit the resnet18 backbone.*unexpected keys \(layer1\.2\."
    ) as error:
        load_encoder(tmp_path / "resnet34.pt", "resnet18")
    assert "pretrain.arch must match" in str(error.value)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match=r"junk\.pt.*cannot read"):
        load_encoder(tmp_path / "junk.pt", "resnet18")


def test_load_encoder_fills_the_backbone_in_eval_mode(tmp_path):
    path = save_encoder(tmp_path / "encoder.pt", 3)
    encoder = load_encoder(path, "resnet18")
    assert not encoder.training
    saved = torch.load(path, weights_only=True)
    assert all(torch.equal(encoder.state_dict()[key], value) for key, value in saved.items())
