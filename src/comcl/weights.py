"""ImageNet weights for backbones: fetched once into torch's cache, or ``None`` when they cannot be.

Training goes on from scratch when the weights cannot be fetched (no internet on a compute node,
say), and the caller says so in its log and outputs. Files follow torchvision's naming
(``resnet50-0676ba61.pth``: the part after the last dash is the start of the file's SHA-256), so
a file already in ``$TORCH_HOME/hub/checkpoints`` from torchvision itself is reused, and a
download that does not match is refused.
"""

from __future__ import annotations

import hashlib
import logging
import re
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import torch
from tqdm import tqdm

from comcl.io import atomic_path

log = logging.getLogger(__name__)
_HASH_PREFIX = re.compile(r"-([a-f0-9]{6,})\.")


def cache_path(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def _download(url: str, target: Path, timeout: float) -> None:
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=timeout) as response, atomic_path(target) as tmp, open(tmp, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=target.name, disable=None) as bar:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
        expected = _HASH_PREFIX.search(target.name)
        if expected and not digest.hexdigest().startswith(expected.group(1)):
            raise ValueError(f"{url}: SHA-256 {digest.hexdigest()[:16]}... does not start with {expected.group(1)}")


def fetch_weights(url: str | None, timeout: float = 30.0) -> Path | None:
    """The cached file for ``url``, downloading it if needed; ``None`` (and a warning) if that fails."""
    if not url:
        return None
    target = cache_path(url)
    if target.is_file():
        return target
    try:
        log.info("downloading %s to %s", url, target)
        _download(url, target, timeout)
    except (urllib.error.URLError, OSError, ValueError) as error:
        log.warning("cannot fetch pretrained weights from %s (%s)", url, error)
        return None
    return target


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A plain state dict: loaded with ``weights_only=True``, so a file cannot run code."""
    return torch.load(path, map_location="cpu", weights_only=True)
