"""Pretrained weights: fetched over HTTP into torch's cache, hash-checked, and used by the detector."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import threading
from collections.abc import Iterator

import pytest
import torch
import torchvision
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules

from comcl.detector.train import build_config
from comcl.errors import DataError
from comcl.weights import fetch_weights, load_state_dict
from tests.conftest import REPO


@pytest.fixture(scope="module")
def weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return torchvision.models.resnet18().state_dict()


@pytest.fixture
def server(tmp_path, weights, monkeypatch) -> Iterator[tuple[str, str]]:
    """A local HTTP server with a torchvision-named weights file; torch's cache moved to tmp_path."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    served = tmp_path / "served"
    served.mkdir()
    buffer = io.BytesIO()
    torch.save(weights, buffer)
    digest = hashlib.sha256(buffer.getvalue()).hexdigest()
    name = f"resnet18-{digest[:8]}.pth"
    (served / name).write_bytes(buffer.getvalue())
    (served / "resnet18-00000000.pth").write_bytes(buffer.getvalue())  # a name whose hash does not match
    (served / "resnet18.pth").write_bytes(buffer.getvalue())  # a name without a hash
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", name
    httpd.shutdown()


def test_weights_are_downloaded_once_and_load_as_plain_tensors(server, weights, tmp_path):
    url, name = server
    path = fetch_weights(f"{url}/{name}")
    assert path == tmp_path / "torch" / "hub" / "checkpoints" / name
    loaded = load_state_dict(path)
    assert all(torch.equal(loaded[key], weights[key]) for key in weights)
    assert fetch_weights(f"http://127.0.0.1:9/{name}") == path  # cached: no network needed


def test_a_hash_mismatch_is_refused_and_nothing_is_kept(server, tmp_path, caplog):
    url, _ = server
    assert fetch_weights(f"{url}/resnet18-00000000.pth") is None
    assert "SHA-256 is" in caplog.text and "not the expected 00000000..." in caplog.text
    assert list((tmp_path / "torch" / "hub" / "checkpoints").iterdir()) == []


def test_a_weights_url_without_a_hash_in_its_name_is_a_configuration_error(server, tmp_path):
    url, _ = server
    with pytest.raises(DataError, match=f"the weights at {url}/resnet18.pth have no SHA-256 in their file name") as error:
        fetch_weights(f"{url}/resnet18.pth")
    assert "name the file <name>-<first 8 hex digits of its SHA-256>.pth" in str(error.value)
    assert not (tmp_path / "torch").exists()  # nothing requested, nothing cached


def test_unreachable_weights_mean_training_from_scratch(server, caplog):
    url, _ = server
    assert fetch_weights(f"{url}/resnet18-12345678.pth") is None  # 404
    assert fetch_weights("http://127.0.0.1:9/resnet18-12345678.pth", timeout=5) is None  # nothing listening
    assert fetch_weights(None) is None
    assert caplog.text.count("cannot fetch pretrained weights") == 2


def test_the_detector_backbone_starts_from_fetched_weights(server, weights, tmp_path):
    url, name = server
    path = fetch_weights(f"{url}/{name}")
    params = dict(
        scale=[64, 64], iterations=1, batch_size=1, lr=0.01, warmup_iterations=0, checkpoint_interval=1, workers=0, seed=0
    )
    config = build_config(
        REPO / "config/detector/faster_rcnn_r18_fpn_small.py", ["a"], {"train": "t", "test": "t"}, params, tmp_path, path
    )
    register_all_modules()
    model = MODELS.build(config.model)
    model.init_weights()
    assert torch.equal(model.backbone.conv1.weight.detach(), weights["conv1.weight"])
    assert torch.equal(model.backbone.layer4[1].bn2.running_var, weights["layer4.1.bn2.running_var"])
