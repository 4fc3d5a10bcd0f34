"""What fine-tuning reads: whole images of the index with their labels, a validation split, class-balanced sampling.

An item is a pure function of (seed, epoch, position), so a resumed run, or DataLoader workers in
any order, see the same augmented images as an uninterrupted run. The validation split is drawn
per patient where one patient has several images (ChestX-ray14): images of one patient are alike,
and a patient on both sides would make validation scores optimistic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch

from comcl.errors import DataError
from comcl.parallel import derived_seed
from comcl.patches.stage import CHANNELS, read_image
from comcl.pretrain.augment import to_input
from comcl.pretrain.data import Augment


def validation_split(frame: pd.DataFrame, share: float, seed: int, by: str | None) -> pd.Series:
    """True for the rows of ``frame`` (the training rows) held out for validation: about ``share`` of the groups.

    A group is the value of column ``by`` (a patient) or, without ``by``, an image (``image_id``). Groups
    are drawn from their sorted values, so the split does not depend on row order. At least one group
    is held out when ``share`` > 0 and at least one is kept for training.
    """
    if not 0 <= share < 1:
        raise ValueError(f"the validation share must be in [0, 1), got {share}")
    keys = frame[by if by else "image_id"]
    groups = np.unique(keys.to_numpy())
    count = 0
    if share > 0 and len(groups) > 1:
        count = min(max(round(share * len(groups)), 1), len(groups) - 1)
    chosen = np.random.default_rng(seed).permutation(groups)[:count]
    return pd.Series(keys.isin(chosen).to_numpy(), index=frame.index, name="validation")


class ImageDataset(torch.utils.data.Dataset):
    """Item ``i``: row ``i``'s image as float32 (3, size, size) and its target.

    The target is the class (int64) for grading and the vector of label columns (float32) for the
    multi-label task. With ``augment`` (training) each item is augmented with a seed drawn from
    (``seed``, epoch, ``i``): call ``set_epoch`` before each epoch; without it (evaluation) the image
    is only resized and normalised. Images are resized to a square, aspect not kept, as the
    classifier's input is square and fundus images and radiographs are nearly so.
    """

    def __init__(self, frame: pd.DataFrame, meta: Mapping[str, Any], size: int, augment: Augment | None, seed: int) -> None:
        columns = list(meta["label_columns"])
        # Plain arrays, not the frame: cheap to index per item and to copy into DataLoader workers.
        self.ids = frame["image_id"].astype(str).to_numpy()
        self.paths = frame["path"].astype(str).to_numpy()
        if meta["task"] == "multilabel":
            self.targets = frame[columns].to_numpy(np.float32)
        else:
            self.targets = frame[columns[0]].to_numpy(np.int64)
            outside = (self.targets < 0) | (self.targets >= meta["num_classes"])
            if outside.any():
                first = int(np.flatnonzero(outside)[0])
                raise DataError(
                    f"image {self.ids[first]!r} has {columns[0]} {self.targets[first]}, outside 0..{meta['num_classes'] - 1}",
                    hint="fix the label in the dataset's label file and rebuild the index",
                )
        self.channels = CHANNELS[meta["format"]]
        self.size = size
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = read_image(self.paths[index], self.channels)
        if image is None:
            raise DataError(f"cannot decode image {self.ids[index]!r}", path=self.paths[index], hint="replace the file")
        # cv2 drops the channel axis of a one-channel image; the augmentation wants it back.
        image = cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_AREA).reshape(self.size, self.size, -1)
        pixels = to_input(image) if self.augment is None else self.augment(image, derived_seed(self.seed, self.epoch, int(index)))
        return torch.from_numpy(pixels), torch.tensor(self.targets[index])


def class_balanced_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-sample weights 1 / (images of its class) for a ``WeightedRandomSampler``: every class is drawn equally often.

    For grading only: a multi-label image belongs to several classes or none, so there is no one
    class to weigh it by, and the multi-label task samples uniformly.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}")
    counts = np.bincount(labels, minlength=num_classes)
    return 1.0 / counts[labels]
