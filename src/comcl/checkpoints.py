"""Training checkpoints of the workflow's own runs: written atomically, resumed only by the same configuration.

A checkpoint holds plain tensors and data, so it loads with ``weights_only=True``, and a ``stamp``
(:func:`run_stamp`, a hash of everything the run depends on): a run resumes only from a checkpoint with its own stamp.
The trained models that leave a run go through :func:`save_torch` too.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from comcl.errors import DataError
from comcl.io import atomic_path, remove_partial_writes

log = logging.getLogger(__name__)


def run_stamp(settings: Mapping[str, Any], sized: Iterable[str | Path] = (), read: Iterable[str | Path] = ()) -> str:
    """What a run's checkpoints belong to: its settings, the ``sized`` files by path and size (large data, whose
    rewrite changes its size), the ``read`` files by content (weights and annotations, which an edit may leave the
    same size)."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in sized:
        digest.update(f"\n{path} {Path(path).stat().st_size}".encode())
    for path in read:
        with open(path, "rb") as file:
            digest.update(hashlib.file_digest(file, "sha256").digest())
    return digest.hexdigest()


def save_torch(path: str | Path, content: object) -> None:
    """``torch.save``, atomically. Through an open file the archive's inner folder is named "archive", not after the
    temporary file, so equal content gives equal bytes from run to run."""
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        torch.save(content, file)


def save_checkpoint(path: Path, stamp: str, content: Mapping[str, Any]) -> None:
    save_torch(path, {"stamp": stamp, **content})


def discard_checkpoint(path: Path) -> None:
    """Called once a run's outputs are written: nothing resumes a finished run (a rerun with another configuration
    starts afresh), and at the paper's sizes the checkpoints of all runs would fill tens of GB."""
    path.unlink(missing_ok=True)


def load_checkpoint(path: Path, stamp: str) -> dict[str, Any]:
    """The checkpoint at ``path``, refused with a clear message if another configuration wrote it."""
    content = torch.load(path, map_location="cpu", weights_only=True)
    if content.get("stamp") != stamp:
        raise DataError(
            "this checkpoint was written by another configuration (data, variant or training parameters)",
            path=path,
            hint="delete it to start this configuration afresh, or restore the configuration it was written with",
        )
    return content


def resume_state(path: Path, stamp: str) -> dict[str, Any] | None:
    """What a rerun continues from: the run's own checkpoint, or ``None`` (none yet, or another configuration's).

    The temporary file of a checkpoint write that a kill interrupted is deleted here: nothing else would.
    """
    for stale in remove_partial_writes(path.parent):
        log.info("removed %s, left by a write that was interrupted", stale)
    if not path.is_file():
        return None
    try:
        return load_checkpoint(path, stamp)
    except DataError as error:
        log.info("starting afresh: %s", str(error).splitlines()[0])
        return None
