"""Grad-CAM (paper Fig. 3): CAM equivalence, locality, hook hygiene, target layers, image choice and the figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from comcl.errors import DataError
from comcl.finetune.model import build_classifier, save_classifier
from comcl.finetune.objective import Objective
from comcl.io import save_image, write_table
from comcl.report.gradcam import choose_images, grad_cam, run_gradcam, target_layer

GRADING_META = {"format": "eyeq", "modality": "fundus", "task": "grading", "label_columns": ["dr_grade"], "num_classes": 5}


class PooledNet(nn.Module):
    """conv -> ReLU (``features``, the mapped layer) -> global average pool -> linear: the network CAM is defined for."""

    def __init__(self, mask: torch.Tensor | None = None, outputs: int = 3) -> None:
        super().__init__()
        self.mask = mask
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1, bias=mask is None), nn.ReLU())
        self.fc = nn.Linear(6, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mask is not None:
            x = x * self.mask
        return self.fc(self.features(x).mean(dim=(2, 3)))


def test_grad_cam_of_a_pooled_linear_net_is_its_cam():
    torch.manual_seed(0)
    model = PooledNet()
    image = torch.randn(1, 3, 20, 28)
    activation = model.features(image)[0]
    mapped = 0
    for target in range(3):
        cam = F.relu(torch.einsum("k,khw->hw", model.fc.weight[target], activation))
        cam = F.interpolate(cam[None, None], size=(20, 28), mode="bilinear", align_corners=False)[0, 0].detach()
        if cam.max() > 0:
            cam = cam / cam.max()
            mapped += 1
        result = grad_cam(model, model.features, image, target)
        assert result.shape == (20, 28) and result.dtype == np.float32
        np.testing.assert_allclose(result, cam.numpy(), atol=1e-5)
    assert mapped > 0


def test_a_score_of_the_top_left_quadrant_gives_a_map_there():
    torch.manual_seed(1)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., :16, :16] = 1
    model = PooledNet(mask, outputs=1)
    with torch.no_grad():
        model.features[0].weight.abs_()
        model.fc.weight.abs_()
    result = grad_cam(model, model.features, torch.rand(1, 3, 32, 32), 0)
    assert result.max() == pytest.approx(1.0)
    # The stride-2 map reaches one cell past the quadrant, and bilinear upsampling half a cell more.
    assert result[:16, :16].sum() / result.sum() > 0.85
    assert result[19:].max() == 0 and result[:, 19:].max() == 0
    row, column = np.unravel_index(result.argmax(), result.shape)
    assert row < 16 and column < 16


def test_hooks_are_removed_no_gradient_is_left_and_the_model_stays_in_eval_mode():
    model = PooledNet().train()
    grad_cam(model, model.features, torch.randn(1, 3, 16, 16), 1)
    assert not model.features._forward_hooks and not model.features._backward_hooks
    assert all(parameter.grad is None for parameter in model.parameters())
    assert not model.training
    with pytest.raises(ValueError, match="target class 7"):
        grad_cam(model, model.features, torch.randn(1, 3, 16, 16), 7)
    assert not model.features._forward_hooks


@pytest.mark.parametrize(("arch", "layer"), [("resnet18", "layer4"), ("densenet121", "features"), ("inception_v3", "Mixed_7c")])
def test_target_layer_of_each_architecture_gives_a_map(arch, layer):
    torch.manual_seed(0)
    model, _ = build_classifier(arch, 3, "scratch")
    assert target_layer(model, arch) is getattr(model, layer)
    result = grad_cam(model, target_layer(model, arch), torch.randn(1, 3, 80, 80), 2)
    assert result.shape == (80, 80) and result.dtype == np.float32
    assert 0 <= result.min() and result.max() <= 1
    assert all(parameter.grad is None for parameter in model.parameters())


def grading_frame(grades: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "image_id": [f"im{i}" for i in range(len(grades))],
            "path": [f"/nowhere/im{i}.png" for i in range(len(grades))],
            "split": ["train", *["test"] * (len(grades) - 1)],
            "dr_grade": grades,
        }
    )


def test_choose_images_takes_diseased_test_images_highest_grades_first():
    frame = grading_frame([4, 0, 2, 4, 1, 3, 0])
    chosen = choose_images(frame, GRADING_META, 3, seed=0)
    assert chosen["dr_grade"].tolist() == [4, 3, 2]  # im0 (grade 4) is a training image
    assert chosen["target"].tolist() == [4, 3, 2]
    assert chosen["caption"].tolist() == ["im3, grade 4", "im5, grade 3", "im2, grade 2"]
    assert len(choose_images(frame, GRADING_META, 10, seed=0)) == 4
    with pytest.raises(DataError, match="no diseased image"):
        choose_images(grading_frame([3, 0, 0]), GRADING_META, 2, seed=0)


def test_choose_images_maps_the_first_finding_of_multilabel_images():
    meta = {
        "format": "chestxray14",
        "modality": "chest",
        "task": "multilabel",
        "label_columns": ["Effusion", "Mass", "Nodule"],
        "num_classes": 3,
    }
    frame = pd.DataFrame(
        {
            "image_id": ["a", "b", "c", "d"],
            "split": ["test"] * 4,
            "Effusion": [0, 0, 1, 0],
            "Mass": [0, 1, 1, 0],
            "Nodule": [0, 1, 0, 0],
        }
    )
    chosen = choose_images(frame, meta, 5, seed=3).set_index("image_id")
    assert sorted(chosen.index) == ["b", "c"]
    assert chosen.loc["b", "target"] == 1 and chosen.loc["b", "caption"] == "b, Mass"
    assert chosen.loc["c", "target"] == 0 and chosen.loc["c", "caption"] == "c, Effusion"


def write_index(folder: Path) -> None:
    rng = np.random.default_rng(0)
    grades = [0, 2, 0, 4, 1, 3]
    paths = []
    for i in range(len(grades)):
        path = folder / f"im{i}.png"
        save_image(path, rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
        paths.append(str(path))
    frame = grading_frame(grades).assign(path=paths)
    write_table(folder / "index.parquet", frame, {"dataset": "eyeq", "proportion": "original", **GRADING_META})


def save_model(path: Path, classes: int, seed: int, loss: str = "ce") -> None:
    torch.manual_seed(seed)
    objective = Objective("grading", classes, loss)
    model, description = build_classifier("resnet18", objective.outputs, "scratch")
    save_classifier(path, model, "resnet18", objective, description)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny grading index, classifiers of 5 and 3 grades and a grade regression, written once for the tests below."""
    folder = tmp_path_factory.mktemp("gradcam")
    write_index(folder)
    for name, classes, seed in (("a", 5, 0), ("b", 5, 1), ("three", 3, 0)):
        save_model(folder / f"{name}.pt", classes, seed)
    save_model(folder / "regression.pt", 5, 0, loss="mse")
    return folder


def test_run_gradcam_draws_one_column_per_classifier(saved, tmp_path):
    models = {"CoMCL": saved / "a.pt", "ResNet-18": saved / "b.pt", "regression": saved / "regression.pt"}
    run_gradcam(saved / "index.parquet", models, input_size=40, count=3, seed=0, figure=tmp_path / "out" / "gradcam.png")
    with Image.open(tmp_path / "out" / "gradcam.png") as image:
        assert image.format == "PNG" and min(image.size) > 300


def test_run_gradcam_refuses_a_classifier_of_another_task(saved, tmp_path):
    models = {"CoMCL": saved / "a.pt", "chest": saved / "three.pt"}
    with pytest.raises(DataError, match=r"three\.pt.*grading of 3 classes.*grading of 5"):
        run_gradcam(saved / "index.parquet", models, input_size=40, count=2, seed=0, figure=tmp_path / "gradcam.png")
    assert not (tmp_path / "gradcam.png").exists()
