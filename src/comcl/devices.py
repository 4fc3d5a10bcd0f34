"""Where tensors go: a configured device name, with ``auto`` meaning a GPU when there is one, and how many
processes a job trains with. The detector stages also need mmcv's compiled operators to run on that GPU."""

from __future__ import annotations

import logging

import torch

from comcl.errors import DataError

log = logging.getLogger(__name__)
MMCV_CUDA_FIX = (
    "rebuild mmcv with its CUDA operators, on a machine with these GPUs and the CUDA toolkit of torch's CUDA version "
    f"({torch.version.cuda}; its nvcc on PATH or CUDA_HOME set): `python -m pip uninstall -y mmcv`, then scripts/install.sh "
    "(a conda environment: delete it, Snakemake builds it again); README: GPU machines"
)


def device_for(name: str) -> torch.device:
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)


def processes_for(name: str) -> int:
    """One training process per GPU the job sees (``CUDA_VISIBLE_DEVICES``) when ``name`` resolves to
    ``cuda``, else one. A numbered GPU (``cuda:1``) is a choice of one GPU, so one process."""
    device = device_for(name)
    return max(1, torch.cuda.device_count()) if device.type == "cuda" and device.index is None else 1


def mmcv_cuda_problem(device: torch.device) -> str | None:
    """Why mmcv's compiled operators (MMDetection's RoIAlign, NMS) cannot run on the GPU ``device``, or None.

    An mmcv built where torch saw no GPU, or without a matching nvcc, has CPU operators only and says so; one
    built for other GPUs fails on the first kernel, so a tiny NMS runs on ``device`` (milliseconds)."""
    from mmcv.ops import get_compiling_cuda_version, nms

    if get_compiling_cuda_version() == "not available":
        return "mmcv was built without its CUDA operators"
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0]], device=device)
    try:
        nms(boxes, torch.tensor([0.9, 0.8], device=device), iou_threshold=0.5)[1].cpu()
    except RuntimeError as error:
        return f"mmcv's CUDA operators do not run on {device} ({error})"
    return None


def detector_device(name: str, setting: str) -> torch.device:
    """The device of a detector stage, from its ``setting`` (``detector.device``, ``detect.device``) ``name``.

    ``device_for(name)``, unless that is a GPU where mmcv's operators cannot run, which would otherwise fail on
    the first CUDA tensor, hours into the job: then ``auto`` takes the CPU with a warning, and a GPU asked for
    by name stops here with the fix. Without a GPU, ``cuda`` is left to torch's own error."""
    device = device_for(name)
    if device.type != "cuda" or not torch.cuda.is_available():
        return device
    problem = mmcv_cuda_problem(device)
    if problem is None:
        return device
    if name == "auto":
        log.warning("%s: the detector runs on the CPU (%s: auto), far slower. For the GPU, %s", problem, setting, MMCV_CUDA_FIX)
        return torch.device("cpu")
    hint = f"{MMCV_CUDA_FIX}; or set {setting} to cpu, or to auto (the CPU, with a warning)"
    raise DataError(f"{setting} is {name}, but {problem}", hint=hint)
