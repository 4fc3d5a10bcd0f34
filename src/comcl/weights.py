"""ImageNet weights for backbones: fetched once into torch's cache, or ``None`` when they cannot be.

Training goes on from scratch when the weights cannot be fetched (no internet on a compute node,
say), and the caller says so in its log and outputs. Files follow torchvision's naming
(``resnet50-0676ba61.pth``: the part after the last dash is the start of the file's SHA-256), so
a file already in ``$TORCH_HOME/hub/checkpoints`` from torchvision itself is reused, and a
download that does not match is refused before it takes that name. A URL without the hash in its
name raises DataError instead of training from scratch: that is a mistake in the configuration,
which a run from scratch would hide until its results are read, not weights that happen to be out
of reach. The hash is short (8 hex digits): it catches a broken or wrong file, not one forged to
match it, which only https keeps out (torchvision's URLs are https).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from urllib.parse import urlparse

import torch

from comcl.download import download
from comcl.errors import DataError

log = logging.getLogger(__name__)
# torchvision's IMAGENET1K_V1 files (``torchvision.models.*_Weights.IMAGENET1K_V1.url``): the same names,
# so a file that torchvision has already put in $TORCH_HOME is reused.
IMAGENET_URLS = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "inception_v3": "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
    "densenet121": "https://download.pytorch.org/models/densenet121-a639ec97.pth",
}
_HASH_PREFIX = re.compile(r"-([a-f0-9]{6,})\.")


def cache_path(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def _hash_prefix(url: str) -> str:
    """The start of the SHA-256 that ``url``'s file name promises; DataError if it promises none."""
    expected = _HASH_PREFIX.search(cache_path(url).name)
    if expected is None:
        raise DataError(
            f"the weights at {url} have no SHA-256 in their file name to check them against",
            hint="use torchvision's URL of the weights (torchvision.models.<Model>_Weights.<NAME>.url), or name "
            "the file <name>-<first 8 hex digits of its SHA-256>.pth as torchvision does",
        )
    return expected.group(1)


def fetch_weights(url: str | None, timeout: float = 30.0) -> Path | None:
    """The cached file for ``url``, downloading it if needed; ``None`` (and a warning) if that fails.

    One attempt, no retries: offline, every job that asks would otherwise wait out the back-off before
    going on from scratch. The download is checked against the name's hash before it takes the cached
    name (one that does not match is deleted), so a cached file is trusted, as torchvision trusts it.
    A URL whose name has no hash raises DataError.
    """
    if not url:
        return None
    prefix = _hash_prefix(url)
    target = cache_path(url)
    if target.is_file():
        return target
    try:
        log.info("downloading %s to %s", url, target)
        download([url], target, sha256=prefix, retries=0, timeout=timeout)
    except (DataError, OSError) as error:
        log.warning("cannot fetch pretrained weights from %s (%s)", url, error)
        return None
    return target


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A plain state dict: loaded with ``weights_only=True``, so a file cannot run code."""
    return torch.load(path, map_location="cpu", weights_only=True)
