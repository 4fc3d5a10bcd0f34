"""What fine-tuning reads: whole images of the index with their labels, and class-balanced sampling.

An item is a pure function of (seed, epoch, position), so a resumed run, or DataLoader workers in
any order, see the same augmented images as an uninterrupted run. The validation split is the
index's (``comcl.index.build.carve_validation``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

from comcl.augment import Augment, to_input
from comcl.errors import DataError
from comcl.images import CHANNELS, read_image, resize_square
from comcl.parallel import derived_seed


class ImageDataset(torch.utils.data.Dataset):
    """Item ``i``: row ``i``'s image as float32 (3, size, size) and its target.

    The target is the class (int64) for grading and the vector of label columns (float32) for the
    multi-label task. With ``augment`` (training) each item is augmented with a seed drawn from
    (``seed``, epoch, ``i``): call ``set_epoch`` before each epoch; without it (evaluation) the image
    is only resized and normalised. Images are resized to a square, aspect not kept, as the
    classifier's input is square and fundus images and radiographs are nearly so; the patch stage
    cuts its patches from images resized by the same function (:func:`comcl.patches.stage.resize_square`).
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
        self.channels = CHANNELS[meta["modality"]]
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
        image = resize_square(image, self.size)
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
