"""What each training step sees: a batch of two augmented views per level group, a pure function of the step.

Every group (a level, or levels merged, as a configuration says) walks through its own seeded
permutation of its patches, epoch after epoch, and every view is augmented with a seed drawn from
(seed, step, group, position, view). A step's batch therefore depends on nothing but the step
number, which is what lets a killed run resume exactly where it stopped, and lets DataLoader workers
build batches in any order. Under several processes each builds only its rows of the step's batch,
seeded by their positions in the whole batch, so the processes' rows together are the one-process batch.

Sources: the patch store (CoMCL and its variants, Lesion-based CL) or whole images from the index,
resized to a square (Basic CL's instance discrimination).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch

from comcl.augment import Augment
from comcl.errors import DataError
from comcl.images import CHANNELS, read_image
from comcl.parallel import derived_seed
from comcl.patches.store import PatchDataset


class PatchSource:
    """Patches of a store by position; ``frame`` has a ``level`` and a ``split`` column."""

    def __init__(self, path: str | Path) -> None:
        self.store = PatchDataset(path)
        self.path = Path(path)
        self.frame = self.store.index

    def load(self, indices: Sequence[int]) -> list[np.ndarray]:
        return self.store.__getitems__(list(indices))


class ImageSource:
    """Whole images of an index, resized to ``size`` x ``size`` (aspect not kept: the views are crops anyway)."""

    def __init__(self, frame: pd.DataFrame, meta: Mapping[str, Any], size: int, path: str | Path) -> None:
        self.frame = frame.reset_index(drop=True)
        self.channels = CHANNELS[meta["modality"]]
        self.size = size
        self.path = Path(path)

    def load(self, indices: Sequence[int]) -> list[np.ndarray]:
        images = []
        for i in indices:
            record = self.frame.iloc[int(i)]
            image = read_image(record["path"], self.channels)
            if image is None:
                raise DataError(f"cannot decode image {record['image_id']!r}", path=record["path"], hint="replace the file")
            resized = cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_AREA)
            images.append(resized.reshape(self.size, self.size, self.channels))
        return images


def group_members(source: PatchSource | ImageSource, groups: Mapping[str, Sequence[str]], split: str) -> dict[str, np.ndarray]:
    """Positions in ``source`` of each group's items of ``split``."""
    frame = source.frame
    return {
        name: np.flatnonzero((frame["split"] == split).to_numpy() & frame["level"].isin(levels).to_numpy())
        for name, levels in groups.items()
    }


def check_groups(members: Mapping[str, np.ndarray], needs: Mapping[str, int], source_path: Path) -> None:
    """Every group a pair uses must fill a batch (anchors) and its queue (negatives) with distinct items."""
    for name, count in needs.items():
        have = len(members[name])
        if have < count:
            raise DataError(
                f"group {name!r} has {have} training items, but the configuration needs {count} of them "
                "(one batch as anchors, or a full queue of negatives, whichever is larger)",
                path=source_path,
                hint=(
                    "lower pretrain.batch_size or pretrain.queue_size, or get more patches of that level "
                    "(patches.conf lower, patches.k higher), or leave the level out of this variant's pairs"
                ),
            )


def image_codes(frame: pd.DataFrame) -> np.ndarray:
    """An integer per row naming its image (the codes of the sorted image ids): what the queues keep of a key."""
    return pd.factorize(frame["image_id"].astype(str), sort=True)[0].astype(np.int64)


class StepBatches(torch.utils.data.Dataset):
    """Item ``t``: ``views``, for each group a (2, B, 3, S, S) float32 tensor of two views of its step-``t``
    batch, and ``images``, for each group the (B,) int64 codes of those items' images (:func:`image_codes`).

    Unbounded: a DataLoader reads it through a sampler of the steps to run. With ``rows`` (a process's
    shard), only those rows of each batch.
    """

    def __init__(
        self,
        source: PatchSource | ImageSource,
        members: Mapping[str, np.ndarray],
        batch_size: int,
        augment: Augment,
        seed: int,
        rows: slice | None = None,
    ) -> None:
        self.source = source
        self.members = dict(members)
        self.batch_size = batch_size
        self.augment = augment
        self.seed = seed
        self.rows = slice(0, batch_size) if rows is None else rows
        self._keys = {name: zlib.crc32(name.encode()) for name in self.members}
        self.codes = image_codes(source.frame)

    def positions(self, group: str, first: int, count: int) -> np.ndarray:
        """Items ``first`` .. ``first + count - 1`` of the group's endless sequence of epoch permutations."""
        members = self.members[group]
        wanted = np.arange(first, first + count)
        epochs, offsets = np.divmod(wanted, len(members))
        out = np.empty(count, dtype=np.int64)
        for epoch in np.unique(epochs):
            order = np.random.default_rng([self.seed, self._keys[group], int(epoch)]).permutation(len(members))
            out[epochs == epoch] = members[order[offsets[epochs == epoch]]]
        return out

    def views(self, group: str, positions: np.ndarray, stream: int, first: int = 0) -> torch.Tensor:
        """Two augmented views of the items at ``positions``, the rows from ``first`` on of a batch."""
        images = self.source.load(positions)
        key = self._keys[group]
        views = [
            [self.augment(image, derived_seed(self.seed, stream, key, i, view)) for i, image in enumerate(images, start=first)]
            for view in (0, 1)
        ]
        return torch.from_numpy(np.stack([np.stack(view) for view in views]))

    def __getitem__(self, step: int) -> dict[str, dict[str, torch.Tensor]]:
        positions = {group: self.positions(group, step * self.batch_size, self.batch_size)[self.rows] for group in self.members}
        return {
            "views": {group: self.views(group, rows, step, self.rows.start) for group, rows in positions.items()},
            "images": {group: torch.from_numpy(self.codes[rows]) for group, rows in positions.items()},
        }

    def queue_fill(self, group: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Second views of ``size`` distinct items of ``group`` and their image codes: what a queue starts with."""
        order = np.random.default_rng([self.seed, self._keys[group], 2**31]).permutation(self.members[group])[:size]
        return self.views(group, order, 2**40)[1], torch.from_numpy(self.codes[order])
