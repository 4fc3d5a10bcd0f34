"""Where tensors go: a configured device name, with ``auto`` meaning a GPU when there is one."""

from __future__ import annotations

import torch


def device_for(name: str) -> torch.device:
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)
