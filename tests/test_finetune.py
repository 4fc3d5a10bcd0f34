"""Fine-tuning end to end on tiny indexes: grading and multi-label, encoder initialisation, resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from comcl.errors import DataError
from comcl.finetune import train
from comcl.finetune.data import ImageDataset
from comcl.finetune.model import load_classifier
from comcl.finetune.train import CHECKPOINT, finetune, predict
from comcl.io import read_table, save_image, write_table
from comcl.pretrain.model import ContrastiveModel

PARAMS = dict(
    arch="resnet18",
    input_size=32,
    epochs=2,
    batch_size=4,
    lr=1e-3,
    weight_decay=0.0,
    balanced=True,
    threshold=0.5,
    workers=0,
    device="cpu",
    seed=0,
    loss="ce",
    optimizer="adam",
    cosine=False,
    augment={"fundus": {"preset": "fundus"}, "chest": {"preset": "chest"}},
)
FINDINGS = ["Atelectasis", "Effusion"]


def tiny_index(root: Path, task: str) -> Path:
    """9 train, 3 val and 6 test images whose brightness follows the label, so a classifier can learn something."""
    rng = np.random.default_rng(1)
    rows = []
    for i in range(18):
        label = i % 5 if task == "grading" else i % 2
        value = 40 + 40 * label
        grey = task == "multilabel"
        image = np.clip(rng.normal(value, 10, (40, 40) if grey else (40, 40, 3)), 0, 255).astype(np.uint8)
        path = root / f"{i}.png"
        save_image(path, image)
        split = "train" if i < 9 else "val" if i < 12 else "test"
        row = {"image_id": str(i), "path": str(path), "split": split, "patient_id": str(i)}
        row |= {"dr_grade": label} if task == "grading" else {FINDINGS[0]: bool(label), FINDINGS[1]: bool(i % 3 == 0)}
        rows.append(row)
    if task == "grading":
        meta = {"format": "eyeq", "modality": "fundus", "task": "grading", "label_columns": ["dr_grade"], "num_classes": 5}
    else:
        meta = {"format": "chestxray14", "modality": "chest", "task": "multilabel", "label_columns": FINDINGS, "num_classes": 2}
    write_table(root / "index.parquet", pd.DataFrame(rows), meta)
    return root / "index.parquet"


def run(index: Path, folder: Path, init: str = "scratch", encoder: Path | None = None, **changes) -> dict:
    outputs = dict(
        metrics=folder / "metrics.json",
        predictions=folder / "predictions.parquet",
        training_log=folder / "log.csv",
        model_file=folder / "model.pt",
    )
    return finetune(index, dict(PARAMS, **changes), init, encoder, folder / "work", **outputs, threads=2)


def test_an_undefined_validation_kappa_in_every_epoch_keeps_the_first_epoch(tmp_path, monkeypatch):
    """Kappa is undefined where the validation images and their predictions are all of one grade: no epoch beats
    another, and the first is the one selected and plotted."""
    evaluate = train.evaluate
    monkeypatch.setattr(train, "evaluate", lambda *args: {**evaluate(*args), "kappa": None})
    result = run(tiny_index(tmp_path, "grading"), tmp_path)
    assert [row["val_kappa"] for row in result["history"]] == [None, None] and result["best_epoch"] == 1


@pytest.mark.parametrize("task", ["grading", "multilabel"])
def test_fine_tuning_writes_test_metrics_without_nan(task, tmp_path):
    result = run(tiny_index(tmp_path, task), tmp_path)
    assert result["sizes"] == {"train": 9, "val": 3, "test": 6} and result["best_epoch"] in (1, 2)
    text = (tmp_path / "metrics.json").read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in metrics.json"))
    predictions = pd.read_parquet(tmp_path / "predictions.parquet")
    assert len(predictions) == 6 and predictions.drop(columns="image_id").to_numpy().min() >= 0
    if task == "grading":
        assert np.allclose(predictions.drop(columns="image_id").sum(axis=1), 1, atol=1e-5)
    assert len(pd.read_csv(tmp_path / "log.csv")) == 2


def test_an_index_without_a_validation_split_is_refused(tmp_path):
    index = tiny_index(tmp_path, "grading")
    frame, meta = read_table(index)
    write_table(index, frame.replace({"split": {"val": "train"}}), meta)
    with pytest.raises(DataError, match=r"needs a train, a val and a test split(.|\n)*index.val_share"):
        run(index, tmp_path)


def test_the_saved_classifier_gives_the_test_predictions(tmp_path):
    index = tiny_index(tmp_path, "grading")
    run(index, tmp_path)
    model, arch, objective = load_classifier(tmp_path / "model.pt")
    frame, meta = read_table(index)
    test = frame[frame["split"] == "test"].reset_index(drop=True)
    probabilities = predict(model, ImageDataset(test, meta, PARAMS["input_size"], None, 0), 4, 0, torch.device("cpu"), objective)
    saved = pd.read_parquet(tmp_path / "predictions.parquet").drop(columns="image_id").to_numpy()
    assert arch == PARAMS["arch"] and np.allclose(probabilities, saved, atol=1e-5)


def test_a_grade_regression_trains_one_output_and_predicts_whole_grades(tmp_path):
    """With loss mse the classifier regresses the grade: one output, saved as such, whose test predictions are the
    one-hot of a grade. SGD with Nesterov momentum on the cosine schedule trains it."""
    result = run(tiny_index(tmp_path, "grading"), tmp_path, loss="mse", optimizer="sgd", cosine=True)
    model, _, objective = load_classifier(tmp_path / "model.pt")
    assert objective.regression and model.fc.out_features == 1
    predictions = pd.read_parquet(tmp_path / "predictions.parquet").drop(columns="image_id").to_numpy()
    assert predictions.shape == (6, 5) and set(np.unique(predictions)) <= {0.0, 1.0} and (predictions.sum(axis=1) == 1).all()
    assert result["test"]["kappa"] is None or -1 <= result["test"]["kappa"] <= 1


def test_a_diverging_fine_tuning_stops_with_what_to_change(tmp_path):
    with pytest.raises(FloatingPointError, match=r"diverged(.|\n)*lower finetune.lr \(now 1e\+30\)"):
        run(tiny_index(tmp_path, "grading"), tmp_path, loss="mse", optimizer="sgd", lr=1e30)


def test_sgd_steps_with_nesterov_momentum():
    optimizer = train.build_optimizer("sgd", [torch.nn.Parameter(torch.zeros(1))], 0.1, 0.0)
    assert optimizer.param_groups[0]["nesterov"] and optimizer.param_groups[0]["momentum"] == train.MOMENTUM
    with pytest.raises(ValueError, match="adam, sgd"):
        train.build_optimizer("rmsprop", [torch.nn.Parameter(torch.zeros(1))], 0.1, 0.0)


def test_a_pretrained_encoder_initialises_the_classifier(tmp_path):
    encoder = tmp_path / "encoder.pt"
    torch.save(ContrastiveModel("resnet18", ["L"], queue_size=2, dim=8, hidden=8).encoder_state_dict(), encoder)
    result = run(tiny_index(tmp_path, "grading"), tmp_path, "encoder", encoder, epochs=1)
    assert result["init"].startswith("encoder")


def test_an_encoder_of_another_backbone_is_refused(tmp_path):
    encoder = tmp_path / "encoder.pt"
    torch.save(ContrastiveModel("resnet34", ["L"], queue_size=2, dim=8, hidden=8).encoder_state_dict(), encoder)
    with pytest.raises(DataError, match="encoder.pt"):
        run(tiny_index(tmp_path, "grading"), tmp_path, "encoder", encoder, epochs=1)


def test_a_killed_fine_tuning_resumes_to_the_same_result(tmp_path, monkeypatch):
    index = tiny_index(tmp_path, "grading")
    whole = run(index, tmp_path / "whole", epochs=2)
    steps_per_epoch = whole["sizes"]["train"] // PARAMS["batch_size"]  # the last, partial batch is dropped

    class Killed(Exception):
        pass

    original, calls = torch.optim.Adam.step, {"n": 0}

    def step_then_die(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > steps_per_epoch + 1:
            raise Killed
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step_then_die)
    with pytest.raises(Killed):
        run(index, tmp_path / "stopped", epochs=2)
    monkeypatch.setattr(torch.optim.Adam, "step", original)
    assert torch.load(tmp_path / "stopped" / "work" / CHECKPOINT, weights_only=True)["epoch"] == 1
    resumed = run(index, tmp_path / "stopped", epochs=2)
    assert resumed["history"] == whole["history"] and resumed["test"] == whole["test"]
    assert not (tmp_path / "stopped" / "work" / CHECKPOINT).exists()  # a finished run's checkpoint is deleted
