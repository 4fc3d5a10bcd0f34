"""Where tensors go: a configured device name, with ``auto`` meaning a GPU when there is one, and how many
processes a job trains with."""

from __future__ import annotations

import torch


def device_for(name: str) -> torch.device:
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)


def processes_for(name: str) -> int:
    """One training process per GPU the job sees (``CUDA_VISIBLE_DEVICES``) when ``name`` resolves to
    ``cuda``, else one. A numbered GPU (``cuda:1``) is a choice of one GPU, so one process."""
    device = device_for(name)
    return max(1, torch.cuda.device_count()) if device.type == "cuda" and device.index is None else 1
