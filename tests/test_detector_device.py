"""The detector stages' device: a GPU only where mmcv's compiled operators run on it; else the CPU with a
warning (``auto``) or a stop with the fix (a GPU by name), before any training or detection. The GPU and mmcv's
build are mocked: these run on a CPU-only machine."""

from __future__ import annotations

import logging

import mmcv.ops
import mmengine.device.utils
import mmengine.runner.runner
import pytest
import torch

from comcl import devices
from comcl.detector import detect, train
from comcl.errors import DataError
from tests.conftest import REPO

NO_KERNEL = "CUDA error: no kernel image is available for execution on the device"


@pytest.fixture
def gpu(monkeypatch):
    """A machine where torch sees a GPU; what mmcv says of it is the test's to set (``devices.mmcv_cuda_problem``)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    checked = []

    def problem(answer):
        monkeypatch.setattr(devices, "mmcv_cuda_problem", lambda device: checked.append(device) or answer)
        return checked

    return problem


def test_an_mmcv_without_cuda_operators_says_so_without_touching_the_gpu(monkeypatch):
    monkeypatch.setattr(mmcv.ops, "get_compiling_cuda_version", lambda: "not available")
    assert devices.mmcv_cuda_problem(torch.device("cuda")) == "mmcv was built without its CUDA operators"


def test_an_mmcv_with_cuda_operators_runs_a_tiny_nms_on_the_device(monkeypatch):
    monkeypatch.setattr(mmcv.ops, "get_compiling_cuda_version", lambda: "12.8")
    assert devices.mmcv_cuda_problem(torch.device("cpu")) is None  # the real NMS, on the device given

    def no_kernel(*args, **kwargs):
        raise RuntimeError(NO_KERNEL)

    monkeypatch.setattr(mmcv.ops, "nms", no_kernel)  # built for other GPUs
    assert devices.mmcv_cuda_problem(torch.device("cpu")) == f"mmcv's CUDA operators do not run on cpu ({NO_KERNEL})"


def test_the_real_check_agrees_with_the_installed_mmcv():
    compiled = mmcv.ops.get_compiling_cuda_version()
    if compiled == "not available":
        assert devices.mmcv_cuda_problem(torch.device("cuda")) == "mmcv was built without its CUDA operators"
    elif torch.cuda.is_available():
        assert devices.mmcv_cuda_problem(torch.device("cuda")) is None, "mmcv's CUDA operators fail on this GPU"


def test_working_operators_keep_the_gpu(gpu):
    checked = gpu(None)
    assert devices.detector_device("auto", "detect.device") == torch.device("cuda")
    assert devices.detector_device("cuda:1", "detect.device") == torch.device("cuda:1")
    assert checked == [torch.device("cuda"), torch.device("cuda:1")]


def test_auto_falls_back_to_the_cpu_with_a_warning_that_says_how_to_use_the_gpu(gpu, caplog):
    gpu("mmcv was built without its CUDA operators")
    with caplog.at_level(logging.WARNING, logger="comcl.devices"):
        assert devices.detector_device("auto", "detector.device") == torch.device("cpu")
    (record,) = caplog.records
    assert record.getMessage().startswith(
        "mmcv was built without its CUDA operators: the detector runs on the CPU (detector.device: auto), far slower."
    )
    assert "rebuild mmcv with its CUDA operators" in record.getMessage() and "scripts/install.sh" in record.getMessage()


@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_a_gpu_asked_for_by_name_stops_with_the_fix(gpu, name):
    gpu("mmcv was built without its CUDA operators")
    with pytest.raises(DataError, match=rf"detect.device is {name}, but mmcv was built without its CUDA operators") as raised:
        devices.detector_device(name, "detect.device")
    assert raised.value.hint.startswith("rebuild mmcv with its CUDA operators, on a machine with these GPUs")
    assert "`python -m pip uninstall -y mmcv`, then scripts/install.sh" in raised.value.hint
    assert raised.value.hint.endswith("or set detect.device to cpu, or to auto (the CPU, with a warning)")


def test_without_a_gpu_nothing_is_checked(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "mmcv_cuda_problem", lambda device: pytest.fail("checked without a GPU"))
    assert devices.detector_device("auto", "detect.device") == torch.device("cpu")
    assert devices.detector_device("cpu", "detect.device") == torch.device("cpu")
    assert devices.detector_device("cuda", "detect.device") == torch.device("cuda")  # torch's own error follows


class Checked(Exception):
    pass


def refuse(name: str, setting: str) -> torch.device:
    raise Checked(name, setting)


def test_training_checks_its_device_before_anything_else(monkeypatch, tmp_path):
    monkeypatch.setattr(train, "detector_device", refuse)
    missing = tmp_path / "missing"
    splits = {"train": missing, "test": missing}
    with pytest.raises(Checked) as raised:
        train.train_detector(missing, splits, {"device": "cuda"}, tmp_path, *[missing] * 4, threads=1)
    assert raised.value.args == ("cuda", "detector.device")


def test_detection_checks_its_device_before_anything_else(monkeypatch, tmp_path):
    monkeypatch.setattr(detect, "detector_device", refuse)
    missing = tmp_path / "missing"
    with pytest.raises(Checked) as raised:
        detect.run_detect(missing, missing, missing, missing, {"device": "auto"}, missing, threads=1)
    assert raised.value.args == ("auto", "detect.device")


def test_the_runner_trains_on_the_chosen_device_not_on_the_one_mmengine_found(monkeypatch):
    monkeypatch.setattr(mmengine.device.utils, "DEVICE", "cuda")  # as MMEngine decides on a GPU machine
    with train.runner_device(torch.device("cpu")):
        assert mmengine.runner.runner.get_device() == "cpu"  # what Runner moves the model to
    assert mmengine.device.utils.DEVICE == "cuda"
    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    with train.runner_device(torch.device("cuda:1")):
        assert mmengine.runner.runner.get_device() == "cuda"
    assert chosen == [torch.device("cuda:1")]


def test_the_device_is_not_part_of_what_a_training_resumes_from(tmp_path):
    annotations = {"train": tmp_path / "train.json", "test": tmp_path / "test.json"}
    for path in annotations.values():
        path.write_text("{}")
    model = REPO / "config/detector/faster_rcnn_r18_fpn_small.py"
    params = {"iterations": 4, "lr": 0.01}
    devices_set = ({}, {"device": "cpu"}, {"device": "cuda"})
    stamps = {train.run_stamp(model, annotations, dict(params, **extra), None) for extra in devices_set}
    assert len(stamps) == 1  # and a work folder from before the setting existed still resumes
    assert train.run_stamp(model, annotations, dict(params, lr=0.02), None) not in stamps
