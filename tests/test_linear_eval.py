"""Linear evaluation: frozen features, the regularisation chosen on validation, the start as a baseline row, the table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from comcl.finetune.data import ImageDataset
from comcl.finetune.linear import START, extract_features, linear_evaluation, probe
from comcl.io import read_table
from comcl.pretrain.model import ContrastiveModel, backbone
from comcl.report.linear_eval import summarize, write_linear_table
from tests.test_finetune import tiny_index

PARAMS = dict(
    arch="resnet18", init="scratch", seeds=[0, 1], input_size=40, batch_size=8, c_values=[0.01, 1.0], threshold=0.5, device="cpu"
)


def _encoder(folder: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    path = folder / f"encoder{seed}.pt"
    torch.save(ContrastiveModel("resnet18", ["L"], queue_size=2, dim=8, hidden=8).encoder_state_dict(), path)
    return path


@pytest.mark.parametrize("task", ["grading", "multilabel"])
def test_every_encoder_once_and_random_weights_once_per_seed(task, tmp_path):
    index = tiny_index(tmp_path, task)
    document = linear_evaluation(
        index, {"comcl": _encoder(tmp_path, 5)}, PARAMS, tmp_path / "m.json", tmp_path / "p.parquet", threads=2
    )
    assert set(document["methods"]) == {START, "comcl"}
    assert set(document["methods"][START]) == {"0", "1"} and set(document["methods"]["comcl"]) == {"all"}
    assert document["methods"][START]["0"]["init"] == "scratch" and document["methods"]["comcl"]["all"]["init"].startswith(
        "encoder"
    )
    written = json.loads((tmp_path / "m.json").read_text())
    assert written["methods"]["comcl"]["all"]["kappa"] == document["methods"]["comcl"]["all"]["kappa"]
    predictions, meta = read_table(tmp_path / "p.parquet")
    assert meta["task"] == task and len(predictions) == 3 * 6  # three runs of the six test images
    assert predictions.loc[predictions["method"] == "comcl", "seed"].isna().all()
    probabilities = predictions.filter(like="p_").to_numpy()
    assert np.isfinite(probabilities).all() and ((0 <= probabilities) & (probabilities <= 1)).all()
    if task == "grading":
        assert np.allclose(probabilities.sum(axis=1), 1)
    # Two seeds of random weights are two networks.
    start = predictions[predictions["method"] == START]
    assert not np.allclose(start[start["seed"] == 0].filter(like="p_"), start[start["seed"] == 1].filter(like="p_"))


def test_an_imagenet_start_is_evaluated_once(tmp_path, monkeypatch):
    """Without ImageNet weights at hand, the start is said to be scratch, as build_classifier says."""
    monkeypatch.setattr("comcl.finetune.model.fetch_weights", lambda url: None)
    document = linear_evaluation(
        tiny_index(tmp_path, "grading"), {}, dict(PARAMS, init="imagenet"), tmp_path / "m.json", tmp_path / "p.parquet", 2
    )
    assert list(document["methods"][START]) == ["all"]
    assert document["methods"][START]["all"]["init"] == "scratch (ImageNet weights unavailable)"


def test_features_do_not_depend_on_the_batch_norm_statistics_an_encoder_brings(tmp_path):
    """Pretraining on patches leaves running statistics of patches: they are re-estimated on the training images."""
    frame, meta = read_table(tiny_index(tmp_path, "grading"))
    datasets = {split: ImageDataset(frame[frame["split"] == split], meta, 40, None, 0) for split in ("train", "test")}
    torch.manual_seed(0)
    network, _ = backbone("resnet18")
    other, _ = backbone("resnet18")
    other.load_state_dict(network.state_dict())
    for module in other.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.add_(3.0)
            module.running_var.mul_(5.0)
    first, second = (
        extract_features(network, datasets, 4, torch.device("cpu")),
        extract_features(other, datasets, 4, torch.device("cpu")),
    )
    assert np.allclose(first["test"], second["test"], atol=1e-5)


def test_the_regularisation_is_chosen_on_validation_and_ties_keep_the_stronger_one():
    """Grade 0 is most of the training split: C = 1e-4 predicts it for every image (kappa undefined on validation),
    C = 1 reads the features. Balanced, both classify the separable features alike, and the smaller C is kept."""
    rng = np.random.default_rng(0)
    meta = {"task": "grading", "label_columns": ["dr_grade"], "num_classes": 5}

    def split(grades: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
        return pd.DataFrame({"dr_grade": grades}), np.eye(5)[grades] * 3 + rng.normal(0, 0.3, (len(grades), 5))

    for train_grades, chosen in ((np.r_[np.zeros(48, int), np.repeat(np.arange(1, 5), 3)], 1.0), (np.arange(60) % 5, 1e-4)):
        parts = {"train": split(train_grades), "val": split(np.arange(20) % 5), "test": split(np.arange(30) % 5)}
        frames = {name: frame for name, (frame, _) in parts.items()}
        features = {name: values for name, (_, values) in parts.items()}
        result, probabilities = probe(features, frames, meta, [1e-4, 1.0], threshold=0.5)
        assert result["c"] == chosen and result["kappa"] == pytest.approx(1.0)
        assert probabilities.shape == (30, 5)
    noise = {name: rng.normal(0, 1, values.shape) for name, values in features.items()}
    assert probe(noise, frames, meta, [1.0], threshold=0.5)[0]["kappa"] < 0.6


def test_the_table_shows_random_weights_beside_each_encoder(tmp_path):
    document = {
        "task": "grading",
        "methods": {
            START: {
                "0": {"kappa": 0.2, "accuracy": 0.5, "init": "scratch"},
                "1": {"kappa": 0.4, "accuracy": 0.6, "init": "scratch"},
            },
            "comcl": {"all": {"kappa": 0.7, "accuracy": None, "init": "encoder e.pt"}},
        },
    }
    (tmp_path / "m.json").write_text(json.dumps(document))
    summary = write_linear_table(
        {("eyeq", "lq70"): tmp_path / "m.json"}, {"comcl": "CoMCL"}, tmp_path / "t.csv", tmp_path / "t.md"
    )
    text = (tmp_path / "t.md").read_text()
    assert "| Random weights | 0.300 ± 0.141 | 0.550 ± 0.071 |" in text
    assert "| CoMCL | 0.700 | n/d |" in text
    assert pd.read_csv(tmp_path / "t.csv").shape == (4, len(summary.columns))
    assert summarize({("eyeq", "lq70"): tmp_path / "m.json"}).set_index(["method", "metric"]).loc[(START, "kappa"), "runs"] == 2
