"""Fine-tuning's parts: classifier initialisation (encoder, ImageNet, scratch), the image dataset."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision

from comcl.augment import build_augmentation
from comcl.errors import DataError
from comcl.finetune.data import ImageDataset, class_balanced_weights
from comcl.finetune.model import ARCHITECTURES, build_classifier
from comcl.io import read_table, save_image, write_table
from comcl.pretrain.model import ContrastiveModel
from comcl.weights import IMAGENET_URLS, cache_path


def save_encoder(path: Path, arch: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    state = ContrastiveModel(arch, ["L"], queue_size=2, dim=8, hidden=8).encoder_state_dict()
    torch.save(state, path)
    return state


def test_a_pretrained_encoder_fills_the_whole_backbone(tmp_path):
    state = save_encoder(tmp_path / "encoder.pt", "resnet18")
    model, description = build_classifier("resnet18", 5, "encoder", tmp_path / "encoder.pt")
    assert description == f"encoder {tmp_path / 'encoder.pt'}"
    loaded = model.state_dict()
    assert set(loaded) - set(state) == {"fc.weight", "fc.bias"}
    assert all(torch.equal(loaded[key], value) for key, value in state.items())
    assert model.fc.out_features == 5


def test_an_encoder_of_another_resnet_is_refused_naming_its_keys(tmp_path):
    save_encoder(tmp_path / "encoder.pt", "resnet50")
    with pytest.raises(DataError, match="encoder.pt") as error:
        build_classifier("resnet18", 5, "encoder", tmp_path / "encoder.pt")
    text = str(error.value)
    assert "keys of another shape" in text and "layer1.0.conv1.weight (64, 64, 1, 1) vs (64, 64, 3, 3)" in text
    assert "unexpected keys" in text and "layer1.0.conv3.weight" in text
    assert "pretrain.arch must equal the fine-tuning arch" in text


def test_a_file_that_is_no_state_dict_is_refused(tmp_path):
    (tmp_path / "encoder.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="encoder.pt.*cannot read"):
        build_classifier("resnet18", 5, "encoder", tmp_path / "encoder.pt")


def test_unreachable_imagenet_weights_mean_scratch_and_say_so(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    model, description = build_classifier("resnet18", 3, "imagenet", imagenet_url="http://127.0.0.1:9/resnet18-00000000.pth")
    assert description == "scratch (ImageNet weights unavailable)"
    assert "training from scratch" in caplog.text
    assert model.fc.out_features == 3


@pytest.fixture
def served_resnet18(tmp_path, monkeypatch) -> Iterator[tuple[str, dict[str, torch.Tensor]]]:
    """A local HTTP server's URL of a torchvision-named resnet18 state dict, and that state dict; torch's cache in tmp_path."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.manual_seed(1)
    weights = torchvision.models.resnet18().state_dict()
    buffer = io.BytesIO()
    torch.save(weights, buffer)
    name = f"resnet18-{hashlib.sha256(buffer.getvalue()).hexdigest()[:8]}.pth"
    served = tmp_path / "served"
    served.mkdir()
    (served / name).write_bytes(buffer.getvalue())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/{name}", weights
    httpd.shutdown()


def test_fetched_imagenet_weights_initialise_the_backbone(served_resnet18):
    url, weights = served_resnet18
    model, description = build_classifier("resnet18", 5, "imagenet", imagenet_url=url)
    assert description == "imagenet"
    assert torch.equal(model.conv1.weight.detach(), weights["conv1.weight"])
    assert torch.equal(model.layer4[1].bn2.running_var, weights["layer4.1.bn2.running_var"])
    assert model.fc.weight.shape == (5, 512)


@pytest.mark.parametrize("arch", ["densenet121", "inception_v3"])
def test_torchvision_imagenet_files_load_as_torchvision_loads_them(arch, tmp_path, monkeypatch):
    """DenseNet's file has old key names ('norm.1') and no BatchNorm counters; Inception-v3's has the unused auxiliary head."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.manual_seed(2)
    if arch == "densenet121":
        weights = torchvision.models.densenet121().state_dict()
        # As in torchvision's file, which predates BatchNorm's num_batches_tracked.
        kept = {key: value for key, value in weights.items() if not key.endswith("num_batches_tracked")}
        stored = {re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", key): value for key, value in kept.items()}
        assert "features.denseblock1.denselayer1.norm.1.weight" in stored
    else:
        weights = stored = torchvision.models.inception_v3(aux_logits=True, init_weights=False).state_dict()
    url = f"http://127.0.0.1:9/{arch}-00000000.pth"  # never fetched: the file is in the cache already
    cache_path(url).parent.mkdir(parents=True)
    torch.save(stored, cache_path(url))
    model, description = build_classifier(arch, 5, "imagenet", imagenet_url=url)
    assert description == "imagenet"
    loaded = model.state_dict()
    head = "classifier." if arch == "densenet121" else "fc."
    assert all(torch.equal(loaded[key], value) for key, value in weights.items() if key in loaded and not key.startswith(head))
    assert arch == "densenet121" or (model.transform_input and model.AuxLogits is None)


def test_imagenet_urls_follow_torchvision_names():
    assert set(IMAGENET_URLS) == set(ARCHITECTURES)
    assert IMAGENET_URLS["resnet50"] == torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_gives_one_output_per_class(arch):
    size = 80 if arch == "inception_v3" else 32
    model, description = build_classifier(arch, 4, "scratch", input_size=size)
    assert description == "scratch"
    with torch.no_grad():
        assert model.eval()(torch.zeros(2, 3, size, size)).shape == (2, 4)


def test_inputs_below_inception_minimum_are_refused():
    with pytest.raises(ValueError, match="at least 75"):
        build_classifier("inception_v3", 5, "scratch", input_size=74)


def tiny_index(root: Path, task: str) -> Path:
    """Four 20 x 30 images (RGB for grading, grey for multi-label) and their index."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(4):
        shape = (20, 30, 3) if task == "grading" else (20, 30)
        path = root / f"{i}.png"
        save_image(path, rng.integers(0, 256, shape, dtype=np.uint8))
        row = {"image_id": f"img{i}", "path": str(path), "split": "train"}
        row |= {"dr_grade": i % 3} if task == "grading" else {"Effusion": i % 2 == 1, "Mass": i >= 2}
        rows.append(row)
    if task == "grading":
        meta = {"format": "eyeq", "modality": "fundus", "task": "grading", "label_columns": ["dr_grade"], "num_classes": 5}
    else:
        meta = {
            "format": "chestxray14",
            "modality": "chest",
            "task": "multilabel",
            "label_columns": ["Effusion", "Mass"],
            "num_classes": 2,
        }
    write_table(root / "index.parquet", pd.DataFrame(rows), meta)
    return root / "index.parquet"


def test_the_dataset_gives_grading_classes_and_repeatable_augmented_images(tmp_path):
    frame, meta = read_table(tiny_index(tmp_path, "grading"))
    dataset = ImageDataset(frame, meta, 16, build_augmentation({"preset": "fundus"}, 16), seed=0)
    image, target = dataset[2]
    assert len(dataset) == 4 and image.shape == (3, 16, 16) and image.dtype == torch.float32
    assert target.dtype == torch.int64 and int(target) == 2
    assert torch.equal(dataset[2][0], image)
    dataset.set_epoch(1)
    assert not torch.equal(dataset[2][0], image)
    plain = ImageDataset(frame, meta, 16, None, seed=0)
    assert torch.equal(plain[2][0], plain[2][0]) and not torch.equal(plain[2][0], image)


def test_the_dataset_gives_multilabel_vectors_for_grey_images(tmp_path):
    frame, meta = read_table(tiny_index(tmp_path, "multilabel"))
    dataset = ImageDataset(frame, meta, 12, None, seed=0)
    image, target = dataset[3]
    assert image.shape == (3, 12, 12) and torch.allclose(image[0] * 0.229 + 0.485, image[1] * 0.224 + 0.456, atol=1e-6)
    assert target.dtype == torch.float32 and target.tolist() == [1.0, 1.0]
    assert dataset[0][1].tolist() == [0.0, 0.0]


def test_an_undecodable_image_is_named(tmp_path):
    frame, meta = read_table(tiny_index(tmp_path, "grading"))
    Path(frame.path[1]).write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"1\.png.*'img1'"):
        ImageDataset(frame, meta, 16, None, seed=0)[1]


def test_a_grade_outside_the_classes_is_refused(tmp_path):
    frame, meta = read_table(tiny_index(tmp_path, "grading"))
    with pytest.raises(DataError, match="'img3' has dr_grade 7"):
        ImageDataset(frame.assign(dr_grade=[0, 1, 2, 7]), meta, 16, None, seed=0)


def test_class_balanced_weights_give_every_class_the_same_mass():
    labels = np.array([0, 0, 0, 0, 1, 2, 2, 4])
    weights = class_balanced_weights(labels, 5)
    assert weights.shape == labels.shape
    assert np.allclose([weights[labels == c].sum() for c in (0, 1, 2, 4)], 1.0)
    with pytest.raises(ValueError, match="0..4"):
        class_balanced_weights(np.array([5]), 5)
