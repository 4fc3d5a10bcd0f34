"""What each training step sees: a batch of augmented views per level group, a pure function of the step.

Every group (a level, or levels merged, as a configuration says) walks through its own seeded
order of its patches, epoch after epoch, and every view is augmented with a seed drawn from
(seed, step, group, position, view). A step's batch therefore depends on nothing but the step
number, which is what lets a killed run resume exactly where it stopped, and lets DataLoader workers
build batches in any order. Under several processes each builds only its rows of the step's batch,
seeded by their positions in the whole batch, so the processes' rows together are the one-process batch.

An epoch's order is a grouped shuffle, as :class:`comcl.patches.store.GroupedShuffleSampler` reads
the store: the row groups that hold the group's patches in a random order, and the group's patches
of each row group in a random order, both drawn from (seed, group, epoch). A batch is a run of that
order, so it reads a few row groups, each once, where a plain permutation reads a row group for
nearly every patch once the store outgrows the reader's cache; every patch still comes once an epoch.
Whole images are each their own unit, so their order is a plain permutation.

Only the views a step reads are made: an anchor group's two (view 0 for the query encoder, view 1
for the key encoder), a group that only feeds a queue its key view (view 1, with the seed it had
when both were made). They leave the loader as uint8; the training device normalises them. On a GPU
the loader makes no view at all: it hands over the patches and each view's random parameters
(drawn, like the seeds, from (seed, step, group, position, view)), and the GPU makes the views
(``comcl.augment.Augmentation.device_views``).

Sources: the patch store (CoMCL and its variants, Lesion-based CL) or whole images from the index,
resized to a square (Basic CL's instance discrimination).
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch

from comcl.augment import DRAWS, Augmentation
from comcl.errors import DataError
from comcl.images import CHANNELS, read_image
from comcl.levels import LESION_LEVELS
from comcl.parallel import derived_seed
from comcl.patches.store import PatchDataset

# What the loader hands over for the device to make a group's views of: "patches", uint8 (B, H, W, C), and each of
# the views' parameters (Augmentation.draw), (V, B, ...).
DeviceViews = dict[str, torch.Tensor]


class PatchSource:
    """Patches of a store by position; ``frame`` has a ``level`` and a ``split`` column."""

    def __init__(self, path: str | Path) -> None:
        self.store = PatchDataset(path)
        self.path = Path(path)
        self.frame = self.store.index

    def load(self, indices: Sequence[int] | np.ndarray) -> list[np.ndarray]:
        return self.store.__getitems__(list(indices))

    def units(self, indices: np.ndarray) -> np.ndarray:
        """The row group of each patch: what the reader reads, and caches, at a time."""
        return np.searchsorted(self.store.row_group_starts, indices, side="right") - 1


class ImageSource:
    """Whole images of an index, resized to ``size`` x ``size`` (aspect not kept: the views are crops anyway)."""

    def __init__(self, frame: pd.DataFrame, meta: Mapping[str, Any], size: int, path: str | Path) -> None:
        self.frame = frame.reset_index(drop=True)
        self.channels = CHANNELS[meta["modality"]]
        self.size = size
        self.path = Path(path)

    def load(self, indices: Sequence[int] | np.ndarray) -> list[np.ndarray]:
        images = []
        for i in indices:
            record = self.frame.iloc[int(i)]
            image = read_image(record["path"], self.channels)
            if image is None:
                raise DataError(f"cannot decode image {record['image_id']!r}", path=record["path"], hint="replace the file")
            resized = cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_AREA)
            images.append(resized.reshape(self.size, self.size, self.channels))
        return images

    def units(self, indices: np.ndarray) -> np.ndarray:
        """Each image is a file of its own: read alone, whatever the order."""
        return np.asarray(indices)


def group_members(source: PatchSource | ImageSource, groups: Mapping[str, Sequence[str]], split: str) -> dict[str, np.ndarray]:
    """Positions in ``source`` of each group's items of ``split``."""
    frame = source.frame
    return {
        name: np.flatnonzero((frame["split"] == split).to_numpy() & frame["level"].isin(levels).to_numpy())
        for name, levels in groups.items()
    }


def check_groups(
    source: PatchSource | ImageSource,
    groups: Mapping[str, Sequence[str]],
    members: Mapping[str, np.ndarray],
    needs: Mapping[str, int],
) -> None:
    """Every group a pair uses must fill a batch (anchors) and its queue (negatives) with distinct items.

    The refusal names the group's levels and each one's count, and what gives more items of them: for
    patches, the patch stage's settings of those levels; for whole images, only the batch and the queue.
    """
    for name, count in needs.items():
        have = len(members[name])
        if have >= count:
            continue
        levels = list(groups[name])
        counts = source.frame["level"].iloc[members[name]].value_counts()
        each = ", ".join(f"{level}: {int(counts.get(level, 0))}" for level in levels)
        what = "patches" if isinstance(source, PatchSource) else "images"
        raise DataError(
            f"group {name!r} has {have} training items, but the configuration needs {count} of them "
            f"(one batch as anchors, or a full queue of negatives, whichever is larger); its {what} per level: {each}",
            path=source.path,
            hint=_more_items(source, levels),
        )


def _more_items(source: PatchSource | ImageSource, levels: Sequence[str]) -> str:
    """What to change when a group is short of items of ``levels``."""
    smaller = "lower pretrain.batch_size or pretrain.queue_size"
    named = " and ".join(filter(None, [", ".join(levels[:-1]), levels[-1]]))
    if isinstance(source, ImageSource):
        return f"{smaller}, or train on a dataset version with more training images of {named}"
    settings = []
    if any(level in LESION_LEVELS for level in levels):
        settings.append("patches.conf lower: more detections become lesion patches")
    if any(level not in LESION_LEVELS for level in levels):
        settings.append("patches.k higher: more random windows per healthy image")
    return f"{smaller}, get more patches of {named} ({'; '.join(settings)}), or leave the group out of this variant's pairs"


def image_codes(frame: pd.DataFrame) -> np.ndarray:
    """An integer per row naming its image (the codes of the sorted image ids): what the queues keep of a key."""
    return pd.factorize(frame["image_id"].astype(str), sort=True)[0].astype(np.int64)


def uniforms(seed: int, rows: np.ndarray, count: int) -> np.ndarray:
    """(len(rows), count) uniforms in [0, 1), each a hash (splitmix64) of (seed, row, draw): a row's draws do not
    depend on which rows are drawn beside it (a process's shard, a chunk of a queue's fill), and cost no
    generator per row, as a view drawn on the device needs 36 of them."""
    # uint64 throughout (numpy's stubs would promote the sum to float64, which it is not).
    counters: np.ndarray = np.asarray(rows, dtype=np.uint64)[:, None] * np.uint64(count) + np.arange(count, dtype=np.uint64)
    z = np.uint64(seed) + (counters + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


class StepBatches(torch.utils.data.Dataset):
    """Item ``t``: ``views``, for each group the views of its step-``t`` batch, and ``images``, for each group the
    (B,) int64 codes of those items' images (:func:`image_codes`).

    A group's views: uint8 (V, B, C, S, S), C the source's channels (1 grey, 3 RGB), V 2 for the ``anchors``
    (every group when None), 1 (the key view) for the others. ``on_device``: instead of the views, what the
    device makes them from (:meth:`Augmentation.device_views`): ``patches``, uint8 (B, H, W, C), and each of
    :meth:`Augmentation.draw`'s parameters, (V, B, ...). Unbounded: a DataLoader reads it through a sampler of
    the steps to run. With ``rows`` (a process's shard), only those rows of each batch.
    """

    def __init__(
        self,
        source: PatchSource | ImageSource,
        members: Mapping[str, np.ndarray],
        batch_size: int,
        augment: Augmentation,
        seed: int,
        rows: slice | None = None,
        anchors: Collection[str] | None = None,
        on_device: bool = False,
    ) -> None:
        self.source = source
        self.members = dict(members)
        self.batch_size = batch_size
        self.augment = augment
        self.seed = seed
        self.rows = slice(0, batch_size) if rows is None else rows
        self.on_device = on_device
        self.made = {name: (0, 1) if anchors is None or name in anchors else (1,) for name in self.members}
        self._keys = {name: zlib.crc32(name.encode()) for name in self.members}
        # Each member's unit (row group) as 0, 1, ... in store order: what an epoch's order keeps together.
        self._units = {
            name: np.unique(source.units(positions), return_inverse=True)[1] for name, positions in self.members.items()
        }
        self._orders: dict[str, tuple[int, np.ndarray]] = {}
        self.codes = image_codes(source.frame)

    def order(self, group: str, epoch: int) -> np.ndarray:
        """The group's items in ``epoch``: its units (row groups) in a random order, its items inside each in a
        random order. Kept for the epoch's later steps: a worker's steps mostly fall in one epoch."""
        kept = self._orders.get(group)
        if kept is not None and kept[0] == epoch:
            return kept[1]
        units = self._units[group]
        rng = np.random.default_rng([self.seed, self._keys[group], epoch])
        places = rng.permutation(units.max(initial=-1) + 1)[units]  # each item's unit's place in the epoch
        order = self.members[group][np.lexsort((rng.random(len(units)), places))]
        self._orders[group] = (epoch, order)
        return order

    def positions(self, group: str, first: int, count: int) -> np.ndarray:
        """Items ``first`` .. ``first + count - 1`` of the group's endless sequence of epoch orders."""
        wanted = np.arange(first, first + count)
        epochs, offsets = np.divmod(wanted, len(self.members[group]))
        out = np.empty(count, dtype=np.int64)
        for epoch in np.unique(epochs):
            out[epochs == epoch] = self.order(group, int(epoch))[offsets[epochs == epoch]]
        return out

    def views(
        self, group: str, positions: np.ndarray, stream: int, first: int = 0, made: Sequence[int] = (0, 1)
    ) -> torch.Tensor | DeviceViews:
        """The views ``made`` (0 the query's, 1 the key's) of the items at ``positions``, the rows from ``first`` on of
        a batch, or with ``on_device`` the patches and those views' parameters."""
        images = self.source.load(positions)
        key = self._keys[group]
        if self.on_device:
            patches = np.stack(images)  # (B, H, W, C)
            rows = np.arange(first, first + len(images))
            drawn = [
                self.augment.draw(uniforms(derived_seed(self.seed, stream, key, view), rows, DRAWS), *patches.shape[1:3])
                for view in made
            ]
            return {"patches": torch.from_numpy(patches)} | {
                name: torch.from_numpy(np.stack([params[name] for params in drawn])) for name in drawn[0]
            }
        views = [
            [
                self.augment.pixels(image, derived_seed(self.seed, stream, key, i, view))
                for i, image in enumerate(images, start=first)
            ]
            for view in made
        ]
        return torch.from_numpy(np.stack([np.stack(view) for view in views]))

    def __getitem__(self, step: int) -> dict[str, dict[str, Any]]:
        positions = {group: self.positions(group, step * self.batch_size, self.batch_size)[self.rows] for group in self.members}
        return {
            "views": {
                group: self.views(group, rows, step, self.rows.start, self.made[group]) for group, rows in positions.items()
            },
            "images": {group: torch.from_numpy(self.codes[rows]) for group, rows in positions.items()},
        }

    def queue_fill(self, group: str, size: int, chunk: int) -> tuple[list[torch.Tensor | DeviceViews], torch.Tensor]:
        """Key views of ``size`` distinct items of ``group`` in chunks of ``chunk``, and their image codes: what a queue
        starts with (the chunks are the views of one fill, cut where the key encoder's batches are cut)."""
        order = np.random.default_rng([self.seed, self._keys[group], 2**31]).permutation(self.members[group])[:size]
        chunks = [self.views(group, order[i : i + chunk], 2**40, i, (1,)) for i in range(0, size, chunk)]
        return chunks, torch.from_numpy(self.codes[order])
