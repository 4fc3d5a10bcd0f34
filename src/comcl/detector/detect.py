"""Run the trained lesion detector on every lesion image (levels L and L~) of a dataset version.

Each image is first given the shape of the detector's training images, with black margins
(:func:`frame_padding`). A preprocessed fundus photograph is a square cut tight around the disc, so its
rim touches all four sides of the image, while IDRiD's photographs (4288 x 2848, and the synthetic ones
alike) have black margins beside the disc: a detector trained on those, shown the disc against the
image border, fires on the rim (measured on the synthetic IDRiD test images cut as EyeQ's are: 8 % of the
detections above 0.2 on the rim, none once padded to IDRiD's shape, none on the photographs as they are).
Boxes are returned in the frame of the image as stored.
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from comcl.threads import limit_threads, one_thread_per_worker

if TYPE_CHECKING:
    from mmdet.models.detectors import BaseDetector

log = logging.getLogger(__name__)
DETECTION_COLUMNS = ["image_id", "split", "level", "x1", "y1", "x2", "y2", "score", "label"]


def load_detector(
    checkpoint: str | Path, model_file: str | Path, classes: list[str], device: torch.device
) -> tuple[BaseDetector, dict]:
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


def training_aspect(annotations: str | Path) -> float:
    """The median width / height of the detector's training images (a COCO file)."""
    images = json.loads(Path(annotations).read_text())["images"]
    return float(np.median([image["width"] / image["height"] for image in images]))


def frame_padding(width: int, height: int, aspect: float) -> tuple[int, int, int, int]:
    """Black margins ``(left, top, right, bottom)`` that give a ``width`` x ``height`` image the shape ``aspect``
    (width / height), the image centred; none where the shapes agree to a pixel."""
    if width < height * aspect:
        extra = round(height * aspect) - width
        return extra // 2, 0, extra - extra // 2, 0
    extra = round(width / aspect) - height
    return 0, extra // 2, 0, extra - extra // 2


class _Images(torch.utils.data.Dataset):
    """Images through the detector's test pipeline, padded to ``aspect``; an unreadable file comes back as ``None``."""

    def __init__(self, paths: list[str], scale: list[int], aspect: float) -> None:
        self.paths = paths
        self.aspect = aspect
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
        left, top, right, bottom = frame_padding(image.shape[1], image.shape[0], self.aspect)
        padded = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=0)
        data = self.pipeline(dict(img=padded, img_id=index, img_path=self.paths[index]))
        data["frame"] = (left, top, image.shape[1], image.shape[0])
        return index, data


def _collate(items: list[tuple[int, dict | None]]) -> tuple[list[int], list[dict | None]]:
    indices, data = zip(*items, strict=True)
    return list(indices), list(data)


@torch.no_grad()
def detect(
    model: BaseDetector, meta: Mapping[str, Any], images: pd.DataFrame, batch_size: int, workers: int, aspect: float
) -> pd.DataFrame:
    """All detections (above the model's own score floor) on ``images`` (columns image_id, path, split, level, line),
    each image padded to ``aspect`` (:func:`training_aspect`) and its boxes clipped to it."""
    dataset = _Images(images["path"].tolist(), meta["scale"], aspect)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, num_workers=workers, collate_fn=_collate, worker_init_fn=one_thread_per_worker
    )
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
        frames = [item.pop("frame") for item in data]
        for index, sample, (left, top, width, height) in zip(indices, model.test_step(pseudo_collate(data)), frames, strict=True):
            record = images.iloc[index]
            found = sample.pred_instances
            boxes = found.bboxes.cpu().numpy() - np.array([left, top, left, top], dtype=np.float32)
            boxes = np.clip(boxes, 0, np.array([width, height, width, height], dtype=np.float32))
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
    limit_threads(threads)
    frame, meta = read_table(index)
    classes = coco_classes(annotations)
    model, detector_meta = load_detector(checkpoint, model_file, classes, device)
    lesion = frame[frame["level"].isin(LESION_LEVELS)].reset_index(drop=True)
    log.info("detecting lesions on %d images (levels %s) of %s", len(lesion), "/".join(LESION_LEVELS), index)
    found = detect(model, detector_meta, lesion, params["batch_size"], params["workers"], training_aspect(annotations))
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
