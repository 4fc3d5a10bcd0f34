"""The paper's Fig. 3: Grad-CAM (Selvaraju et al. 2017) of fine-tuned classifiers on diseased test images.

The figure shows where each classifier looks when it scores the image's true disease: rows are
images, the first column the image, then one column per classifier with its map over the image.
Every classifier sees exactly the input that evaluation gives it (``ImageDataset`` without
augmentation), and the image drawn is that input, un-normalised, so map and image line up pixel
for pixel.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from torch import nn

from comcl.augment import IMAGENET_MEAN, IMAGENET_STD
from comcl.errors import DataError
from comcl.finetune.data import ImageDataset
from comcl.finetune.model import MIN_INPUT_SIZES, load_classifier
from comcl.finetune.objective import Objective
from comcl.io import read_table, save_figure

log = logging.getLogger(__name__)

# The last convolutional block of each network: the finest map that still carries class evidence.
TARGET_LAYERS = {"densenet121": "features", "inception_v3": "Mixed_7c"}
OVERLAY_ALPHA = 0.45


def target_layer(model: nn.Module, arch: str) -> nn.Module:
    """The module whose output Grad-CAM weighs: ResNet ``layer4``, DenseNet-121 ``features``, Inception-v3 ``Mixed_7c``."""
    name = "layer4" if arch.startswith("resnet") else TARGET_LAYERS.get(arch)
    if name is None:
        raise ValueError(f"no Grad-CAM layer known for {arch!r}: use a ResNet, densenet121 or inception_v3")
    return getattr(model, name)


def grad_cam(model: nn.Module, layer: nn.Module, image: torch.Tensor, target: int) -> np.ndarray:
    """(H, W) float32 map in [0, 1] of where ``layer``'s features raise the score of class ``target``.

    Weights w_k are the spatial means of d score / d A_k, the map ReLU(sum_k w_k A_k), upsampled
    bilinearly to the input and divided by its maximum (a map of zeros stays zeros). A forward hook
    keeps A and hands the rest of the network a copy, so that an in-place op after the layer
    (DenseNet's ReLU after ``features``) changes neither A nor its gradient. The gradient comes from
    ``torch.autograd.grad``, not ``backward``: no ``.grad`` is written to the parameters. The hook is
    removed also on error; the model is left in eval mode.

    By hand, not the grad-cam package: its hook keeps the layer's output itself, which DenseNet's in-place ReLU
    overwrites (its maps of DenseNet-121 differ), and its ``backward`` leaves ``.grad`` on every parameter.
    """
    if image.ndim != 4 or image.shape[:2] != (1, 3):
        raise ValueError(f"expected one image as a (1, 3, H, W) tensor, got shape {tuple(image.shape)}")
    captured: list[torch.Tensor] = []

    def keep(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        captured.append(output)
        return output.clone()

    model.eval()
    handle = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            # An input that needs a gradient gives a graph even when every parameter is frozen.
            scores = model(image.detach().clone().requires_grad_(True))
            if not 0 <= target < scores.shape[1]:
                raise ValueError(f"target class {target} outside the model's {scores.shape[1]} outputs")
            if not captured:
                raise ValueError("the Grad-CAM layer took no part in the model's forward pass")
            activation = captured[0]
            (gradient,) = torch.autograd.grad(scores[0, target], activation)
    finally:
        handle.remove()
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activation.detach()).sum(dim=1, keepdim=True)).float()
    cam = F.interpolate(cam, size=tuple(image.shape[-2:]), mode="bilinear", align_corners=False)[0, 0]
    peak = cam.max()
    return (cam / peak if peak > 0 else cam).cpu().numpy().astype(np.float32)


def choose_images(
    frame: pd.DataFrame, meta: Mapping[str, Any], count: int, seed: int, source: str | Path | None = None
) -> pd.DataFrame:
    """Up to ``count`` diseased test images, with the class to explain (``target``) and a ``caption``.

    Grading: grade > 0, the highest grades first (their lesions are the ones a map can show), ties
    in seeded order; the target is the true grade. Multi-label: images with at least one finding, in
    seeded order; the target is the first positive label. ``source`` is the index, named in errors.
    """
    columns = list(meta["label_columns"])
    test = frame[frame["split"] == "test"]
    rng = np.random.default_rng(seed)
    if meta["task"] == "multilabel":
        positive = test[columns].to_numpy() > 0
        diseased = test[positive.any(axis=1)]
        order = rng.permutation(len(diseased))[:count]
        chosen = diseased.iloc[order]
        targets = np.argmax(positive[positive.any(axis=1)][order], axis=1)
        captions = [f"{image_id}, {columns[t]}" for image_id, t in zip(chosen["image_id"], targets, strict=True)]
    else:
        diseased = test[test[columns[0]] > 0]
        chosen = diseased.iloc[rng.permutation(len(diseased))].sort_values(columns[0], ascending=False, kind="stable").head(count)
        targets = chosen[columns[0]].to_numpy(np.int64)
        captions = [f"{image_id}, grade {t}" for image_id, t in zip(chosen["image_id"], targets, strict=True)]
    if chosen.empty:
        raise DataError(
            "no diseased image in the test split to explain",
            path=source,
            hint="Grad-CAM maps the evidence of a disease: use a dataset version whose test split has diseased images",
        )
    if len(chosen) < count:
        log.warning("only %d diseased test images for the %d Grad-CAM rows asked for", len(chosen), count)
    return chosen.assign(target=targets, caption=captions).reset_index(drop=True)


def _display(pixels: torch.Tensor) -> np.ndarray:
    """The (H, W, 3) image in [0, 1] that a normalised (3, H, W) input came from."""
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    return np.clip(pixels.numpy().transpose(1, 2, 0) * std + mean, 0, 1)


def draw_gradcam(
    images: Sequence[np.ndarray],
    captions: Sequence[str],
    maps: Mapping[str, Sequence[np.ndarray]],
    notes: Mapping[str, Sequence[str]],
    title: str,
    path: str | Path,
) -> None:
    """Rows: images (``captions`` beside them); columns: the image, then each model's map over it, ``notes`` under it.

    ``maps`` and ``notes`` go from a model's label to one entry per image, in the order of ``images``.
    """
    fig = Figure(figsize=(2.3 * (1 + len(maps)) + 0.8, 2.3 * len(images) + 0.8), layout="constrained")
    axes = fig.subplots(len(images), 1 + len(maps), squeeze=False)
    for row, (image, caption) in enumerate(zip(images, captions, strict=True)):
        axes[row, 0].imshow(image)
        axes[row, 0].set_ylabel(caption, fontsize=8)
        for column, (label, heatmaps) in enumerate(maps.items(), start=1):
            axes[row, column].imshow(image)
            axes[row, column].imshow(heatmaps[row], cmap="jet", alpha=OVERLAY_ALPHA, vmin=0, vmax=1)
            axes[row, column].set_xlabel(notes[label][row], fontsize=7)
    for column, label in enumerate(["image", *maps]):
        axes[0, column].set_title(label, fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    colourbar = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap="jet"), ax=axes, shrink=0.5, aspect=30)
    colourbar.set_label("Grad-CAM (each map divided by its maximum)", fontsize=8)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def _note(scores: torch.Tensor, target: int, objective: Objective, names: Sequence[str]) -> str:
    """What the model says about the image (``scores`` its ``(1, outputs)``): its grade, or its probability of the
    mapped finding."""
    if objective.task == "multilabel":
        return f"P({names[target]}) = {torch.sigmoid(scores[0, target]).item():.2f}"
    return f"predicts grade {int(objective.grades(scores)[0])}"


def run_gradcam(
    index: str | Path, models: Mapping[str, str | Path], input_size: int, count: int, seed: int, figure: str | Path
) -> None:
    """Grad-CAM of every classifier (label -> ``save_classifier`` file; columns in this order) on ``count`` test images."""
    if not models:
        raise ValueError("run_gradcam needs at least one classifier")
    frame, meta = read_table(index)
    chosen = choose_images(frame, meta, count, seed, source=index)
    dataset = ImageDataset(chosen, meta, input_size, None, seed)
    inputs = torch.stack([dataset[i][0] for i in range(len(dataset))])
    targets = chosen["target"].tolist()
    multilabel = meta["task"] == "multilabel"
    maps: dict[str, list[np.ndarray]] = {}
    notes: dict[str, list[str]] = {}
    for label, path in models.items():
        model, arch, objective = load_classifier(path)
        if (objective.task, objective.num_classes) != (meta["task"], meta["num_classes"]):
            raise DataError(
                f"the classifier was fine-tuned for {objective.task} of {objective.num_classes} classes, the index's task is "
                f"{meta['task']} of {meta['num_classes']}",
                path=path,
                hint="pass classifiers fine-tuned on this dataset",
            )
        if input_size < MIN_INPUT_SIZES.get(arch, 1):
            raise ValueError(f"{arch} needs inputs of at least {MIN_INPUT_SIZES[arch]} px, got {input_size}")
        layer = target_layer(model, arch)
        # A grade regression has one output, the grade: its map shows what raises the predicted grade.
        outputs = [0 if objective.regression else target for target in targets]
        maps[label] = [grad_cam(model, layer, inputs[i : i + 1], output) for i, output in enumerate(outputs)]
        with torch.no_grad():
            scores = model(inputs)
        notes[label] = [
            _note(scores[i : i + 1], target, objective, meta["label_columns"]) + ("" if maps[label][i].any() else "; empty map")
            for i, target in enumerate(targets)
        ]
        log.info("Grad-CAM of %s (%s) on %d images", label, arch, len(targets))
    kind = "first finding" if multilabel else "true grade"
    title = (
        f"{meta.get('dataset')} {meta.get('proportion')}: Grad-CAM of the {kind}\non diseased test images ({input_size} px input)"
    )
    draw_gradcam([_display(pixels) for pixels in inputs], chosen["caption"].tolist(), maps, notes, title, figure)
