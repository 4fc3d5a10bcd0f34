"""Where the fundus detector fires on the field of view's rim: the evidence run's detector on the synthetic IDRiD
test images as they are, cut into squares as EyeQ's photographs are preprocessed, and those squares padded back to
IDRiD's 3:2 shape. Prints, per variant, the detections above 0.2 and how many of them the rim guard would drop.

    .venv/bin/python scripts/detector_rim.py results/evidence
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import cv2
import pandas as pd
import torch

from comcl.datasets.preprocess import preprocess_image
from comcl.detector.annotations import coco_classes
from comcl.detector.detect import detect, load_detector
from comcl.fov import boxes_inside, estimate_fov_mask, inner_fov

CONF, MARGIN, SIZE = 0.2, 0.08, 256

# Each variant with the shape detect pads it to: its own, so that detect adds no margin of its own.
VARIANTS = {
    "as they are": (lambda image: image, 1.5),
    "cut into squares as EyeQ's": (lambda image: preprocess_image(image, SIZE)[0], 1.0),
    "squares padded to 3:2": (
        lambda image: cv2.copyMakeBorder(
            preprocess_image(image, SIZE)[0], 0, 0, SIZE // 4, SIZE // 4, cv2.BORDER_CONSTANT, value=0
        ),
        1.5,
    ),
}


def main(results: Path) -> None:
    torch.set_num_threads(2)
    classes = coco_classes(results / "eyeq/detector/annotations/train.json")
    model, meta = load_detector(
        results / "eyeq/detector/model.pth", "config/detector/faster_rcnn_r18_fpn_small.py", classes, torch.device("cpu")
    )
    files = sorted((results / "synthetic/idrid/A. Segmentation/1. Original Images/b. Testing Set").glob("*.jpg"))
    with tempfile.TemporaryDirectory() as folder:
        for number, (name, (transform, aspect)) in enumerate(VARIANTS.items()):
            paths = []
            for file in files:
                path = f"{folder}/{number}_{file.name}"
                cv2.imwrite(path, transform(cv2.imread(str(file))))
                paths.append(path)
            frame = pd.DataFrame({"image_id": paths, "path": paths, "split": "test", "level": "L"})
            found = detect(model, meta, frame, 2, 0, aspect=aspect)
            found = found[found["score"] > CONF]
            on_rim = 0
            for path, boxes in found.groupby("image_id"):
                mask = estimate_fov_mask(cv2.imread(path)[:, :, ::-1])
                on_rim += int((~boxes_inside(boxes[["x1", "y1", "x2", "y2"]].to_numpy(), mask, inner_fov(mask, MARGIN))).sum())
            print(f"{name}: {len(found)} detections above {CONF} on {len(files)} images, {on_rim} on the rim")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
