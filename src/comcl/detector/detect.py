"""Run the trained lesion detector on every lesion image (levels L and L~) of a dataset version."""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
from mmcv.transforms import Compose
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.config import ConfigDict
from mmengine.dataset import pseudo_collate
from tqdm import tqdm

from comcl.detector.annotations import coco_classes
from comcl.detector.train import CHECKPOINT_FORMAT, model_definition
from comcl.devices import detector_device
from comcl.errors import DataError
from comcl.io import read_table, write_table
from comcl.levels import LESION_LEVELS

log = logging.getLogger(__name__)
DETECTION_COLUMNS = ["image_id", "split", "level", "x1", "y1", "x2", "y2", "score", "label"]


def load_detector(
    checkpoint: str | Path, model_file: str | Path, classes: list[str], device: torch.device
) -> tuple[torch.nn.Module, dict]:
    """The exported detector, checked against the model file and classes it is meant to be."""
    checkpoint = Path(checkpoint)
    try:
        content = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        content = None  # more than tensors and plain data: not a file this workflow exported
    meta = content.get("meta", {}) if isinstance(content, dict) else {}
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise DataError(
            "not a detector checkpoint exported by this workflow",
            path=checkpoint,
            hint="use the model.pth that the train_detector rule writes (MMEngine's iter_*.pth files are not for inference)",
        )
    if meta["classes"] != list(classes):
        raise DataError(
            f"the detector was trained for classes {meta['classes']}, this dataset's lesions are {list(classes)}",
            path=checkpoint,
            hint="retrain the detector for this dataset (delete the checkpoint and run the workflow again)",
        )
    definition = model_definition(model_file, classes)
    trained = json.loads(meta["model"])
    if trained != definition:
        changed = sorted(key for key in definition.keys() | trained.keys() if definition.get(key) != trained.get(key))
        raise DataError(
            f"the detector was trained with another model configuration than {model_file} (differs in: {', '.join(changed)})",
            path=checkpoint,
            hint="retrain the detector with this model file, or point the workflow at the model file it was trained with",
        )
    register_all_modules()
    model = MODELS.build(ConfigDict(definition))
    model.load_state_dict(content["state_dict"], strict=True)
    return model.to(device).eval(), meta


class _Images(torch.utils.data.Dataset):
    """Images through the detector's test pipeline; an unreadable file comes back as ``None``."""

    def __init__(self, paths: list[str], scale: list[int]) -> None:
        self.paths = paths
        self.pipeline = Compose(
            [
                dict(type="mmdet.LoadImageFromNDArray"),
                dict(type="mmdet.Resize", scale=tuple(scale), keep_ratio=True),
                dict(type="mmdet.PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")),
            ]
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, dict | None]:
        image = cv2.imread(self.paths[index], cv2.IMREAD_COLOR)
        if image is None:
            return index, None
        return index, self.pipeline(dict(img=image, img_id=index, img_path=self.paths[index]))


def _collate(items: list[tuple[int, dict | None]]) -> tuple[list[int], list[dict | None]]:
    indices, data = zip(*items, strict=True)
    return list(indices), list(data)


@torch.no_grad()
def detect(model: torch.nn.Module, meta: Mapping[str, Any], images: pd.DataFrame, batch_size: int, workers: int) -> pd.DataFrame:
    """All detections (above the model's own score floor) on ``images`` (columns image_id, path, split, level, line)."""
    dataset = _Images(images["path"].tolist(), meta["scale"])
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=_collate)
    rows = []
    for indices, data in tqdm(loader, desc="detect", unit="batch", mininterval=1.0, disable=None):
        for index, item in zip(indices, data, strict=True):
            if item is None:
                record = images.iloc[index]
                raise DataError(
                    f"cannot decode image {record['image_id']!r}",
                    path=record["path"],
                    hint="replace the file or remove the image from the dataset, then run the index stage again",
                )
        for index, sample in zip(indices, model.test_step(pseudo_collate(data)), strict=True):
            record = images.iloc[index]
            found = sample.pred_instances
            boxes = found.bboxes.cpu().numpy()
            for box, score, label in zip(boxes, found.scores.cpu().numpy(), found.labels.cpu().numpy(), strict=True):
                rows.append(
                    (record["image_id"], record["split"], record["level"], *map(float, box), float(score), meta["classes"][label])
                )
    frame = pd.DataFrame(rows, columns=DETECTION_COLUMNS)
    return frame.astype({"x1": np.float64, "y1": np.float64, "x2": np.float64, "y2": np.float64, "score": np.float64})


def run_detect(
    index: str | Path,
    checkpoint: str | Path,
    model_file: str | Path,
    annotations: str | Path,
    params: Mapping[str, Any],
    detections: str | Path,
    threads: int,
) -> pd.DataFrame:
    """Detections on the lesion images of ``index``, written to ``detections`` (Parquet)."""
    device = detector_device(params["device"], "detect.device")
    torch.set_num_threads(max(1, threads))
    frame, meta = read_table(index)
    classes = coco_classes(annotations)
    model, detector_meta = load_detector(checkpoint, model_file, classes, device)
    lesion = frame[frame["level"].isin(LESION_LEVELS)].reset_index(drop=True)
    log.info("detecting lesions on %d images (levels %s) of %s", len(lesion), "/".join(LESION_LEVELS), index)
    found = detect(model, detector_meta, lesion, params["batch_size"], params["workers"])
    write_table(
        detections,
        found,
        {
            "dataset": meta.get("dataset"),
            "proportion": meta.get("proportion"),
            "classes": classes,
            "images": len(lesion),
            "scale": detector_meta["scale"],
        },
    )
    return found
