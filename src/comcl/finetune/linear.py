"""Linear evaluation: a logistic regression on a frozen encoder's pooled features, beside fine-tuning.

MoCo and Huang et al.'s lesion-based CL report it beside fine-tuning because it measures what a
pretraining put into the features, where a fine-tuning can re-learn (or undo) them within a few epochs.
Every pretrained encoder of a dataset version is read, and so is its start, the weights pretraining
began from (random weights with each seed, or ImageNet's), which is the row a pretraining must beat.

The features are the backbone's global-average-pooled output for every train, val and test image at
the fine-tuning input size, without augmentation. Batch-norm statistics are first re-estimated on the
training images, the same for every encoder: an encoder pretrained on patches holds running
statistics of patches, and random weights hold none, so neither describes whole images. The features
are standardised on the training split; the inverse regularisation strength ``C`` is chosen among
``c_values`` on the validation split's kappa, as fine-tuning selects its epoch, and the chosen model is
tested once.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from torch import nn
from tqdm import tqdm

from comcl.devices import device_for
from comcl.errors import DataError
from comcl.finetune.data import ImageDataset
from comcl.finetune.model import build_classifier
from comcl.finetune.train import evaluate
from comcl.io import read_table, write_json, write_table
from comcl.threads import limit_threads

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
START = "start"  # the method name of the weights pretraining began from


@torch.no_grad()
def extract_features(
    backbone: nn.Module, datasets: Mapping[str, ImageDataset], batch_size: int, device: torch.device
) -> dict[str, np.ndarray]:
    """Pooled features per split, after re-estimating batch norm's statistics on the training images."""
    norms = [module for module in backbone.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the whole pass
    backbone.train()
    for images, _ in torch.utils.data.DataLoader(datasets["train"], batch_size=batch_size):
        if len(images) > 1:
            backbone(images.to(device))
    backbone.eval()
    return {
        split: torch.cat(
            [backbone(images.to(device)).float().cpu() for images, _ in torch.utils.data.DataLoader(data, batch_size=batch_size)]
        ).numpy()
        for split, data in datasets.items()
    }


def _fit(features: np.ndarray, targets: np.ndarray, c: float, multilabel: bool) -> list[LogisticRegression | float]:
    """One multinomial model, or one model per finding (a finding constant in the training split keeps its prevalence)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if not multilabel:
            return [LogisticRegression(C=c, max_iter=2000).fit(features, targets)]
        return [
            LogisticRegression(C=c, max_iter=2000).fit(features, column) if column.min() != column.max() else float(column[0])
            for column in targets.T
        ]


def _probabilities(
    models: Sequence[LogisticRegression | float], features: np.ndarray, classes: int, multilabel: bool
) -> np.ndarray:
    if multilabel:
        return np.stack(
            [np.full(len(features), m) if isinstance(m, float) else m.predict_proba(features)[:, 1] for m in models], axis=1
        )
    model = models[0]
    assert not isinstance(model, float), "one model, fitted on every class, when not multilabel"
    probabilities = np.zeros((len(features), classes))
    probabilities[:, model.classes_] = model.predict_proba(features)  # a grade absent from training keeps 0
    return probabilities


def _targets(frame: pd.DataFrame, meta: Mapping[str, Any]) -> np.ndarray:
    columns = list(meta["label_columns"])
    return frame[columns].to_numpy(int) if meta["task"] == "multilabel" else frame[columns[0]].to_numpy(int)


def probe(
    features: Mapping[str, np.ndarray],
    frames: Mapping[str, pd.DataFrame],
    meta: Mapping[str, Any],
    c_values: Sequence[float],
    threshold: float,
) -> tuple[dict[str, Any], np.ndarray]:
    """The logistic regression chosen on the validation split's kappa; its test metrics (with ``c`` and
    ``val_kappa``) and test probabilities. An undefined validation kappa ranks last; ties keep the
    smaller ``C``, the stronger regularisation."""
    multilabel = meta["task"] == "multilabel"
    mean, std = features["train"].mean(axis=0), features["train"].std(axis=0) + 1e-6
    scaled = {split: (values - mean) / std for split, values in features.items()}
    best: tuple[float, float, list[Any]] | None = None
    for c in sorted(c_values):
        models = _fit(scaled["train"], _targets(frames["train"], meta), c, multilabel)
        validation = evaluate(
            frames["val"], meta, _probabilities(models, scaled["val"], meta["num_classes"], multilabel), threshold
        )
        score = -np.inf if validation["kappa"] is None else float(validation["kappa"])
        if best is None or score > best[0]:
            best = (score, c, models)
    assert best is not None, "c_values is empty"
    score, c, models = best
    probabilities = _probabilities(models, scaled["test"], meta["num_classes"], multilabel)
    result = evaluate(frames["test"], meta, probabilities, threshold)
    return {**result, "c": c, "val_kappa": None if score == -np.inf else score}, probabilities


def linear_evaluation(
    index: str | Path,
    encoders: Mapping[str, str | Path],
    params: Mapping[str, Any],
    metrics: str | Path,
    predictions: str | Path,
    threads: int,
) -> dict[str, Any]:
    """Evaluate every encoder of ``encoders`` (method -> encoder.pt) and the start (``params["init"]``:
    scratch, once per seed of ``params["seeds"]``, or imagenet, once) on the index; write the metrics
    (method -> seed -> test metrics; seed "all" for an encoder, which no seed changes) and the test
    probabilities (method, seed, image_id, p_* per row; seed empty for an encoder)."""
    limit_threads(threads)
    frame, meta = read_table(index)
    frames = {split: frame[frame["split"] == split].reset_index(drop=True) for split in SPLITS}
    if any(part.empty for part in frames.values()):
        raise DataError("the index needs a train, a val and a test split", path=index, hint="run the index stage again")
    device = device_for(params["device"])
    size, arch = params["input_size"], params["arch"]
    datasets = {split: ImageDataset(part, meta, size, None, 0) for split, part in frames.items()}
    starts: list[tuple[str, int | None, str, Path | None]] = [
        (START, seed, "scratch", None) for seed in (params["seeds"] if params["init"] == "scratch" else [])
    ]
    if params["init"] == "imagenet":
        starts.append((START, None, "imagenet", None))
    runs = [*starts, *((method, None, "encoder", Path(path)) for method, path in encoders.items())]
    results: dict[str, dict[str, Any]] = {}
    rows = []
    columns = [f"p_{name}" for name in (meta["label_columns"] if meta["task"] == "multilabel" else range(meta["num_classes"]))]
    for method, seed, init, encoder in tqdm(runs, desc="linear evaluation", unit="encoder", disable=None):
        torch.manual_seed(0 if seed is None else seed)
        model, description = build_classifier(arch, 1, init, encoder, params.get("imagenet_url"), size)
        model.fc = nn.Identity()
        features = extract_features(model.to(device), datasets, params["batch_size"], device)
        result, probabilities = probe(features, frames, meta, params["c_values"], params["threshold"])
        results.setdefault(method, {})["all" if seed is None else str(seed)] = {**result, "init": description}
        log.info("%s seed %s: test kappa %s (C %s)", method, "all" if seed is None else seed, result["kappa"], result["c"])
        part = pd.DataFrame(probabilities, columns=columns)
        part.insert(0, "image_id", frames["test"]["image_id"].to_numpy())
        part.insert(0, "seed", pd.array([seed] * len(part), dtype="Int64"))
        part.insert(0, "method", method)
        rows.append(part)
    document = {
        "task": meta["task"],
        "arch": arch,
        "input_size": size,
        "sizes": {s: len(p) for s, p in frames.items()},
        "methods": results,
    }
    write_json(metrics, document)
    write_table(predictions, pd.concat(rows, ignore_index=True), {"task": meta["task"]})
    return document
