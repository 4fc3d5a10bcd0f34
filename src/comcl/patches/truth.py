"""How much of what pretraining reads as lesion is lesion, measured against a dataset's own lesion boxes.

CoMCL's levels L and L~ are the detector's windows: a window without a lesion teaches the encoder that
healthy retina (or the rim of the field of view) is a lesion. Where the images to be graded come with
lesion boxes (:mod:`comcl.datasets.lesion_boxes`), this module measures, per split and lesion level:

* the detector's **precision and recall** at the patch stage's score threshold ``patches.conf``: a
  detection is true when its intersection over union with a lesion of its image is at least
  ``MATCH_IOU`` (any kind: what a patch needs is a lesion, and kinds the detector confuses are still
  lesions), matched greedily by score, each lesion at most once;
* what the rim guard dropped (:func:`comcl.patches.stage.kept_boxes`), and how many of those were true;
* the **purity** of the lesion patches: the share of windows in the store that hold the centre of a lesion.

The boxes are in pixels of the images as stored; they are carried into the frame of the indexed images
through the square each preprocessed image was cut from (recorded in its file), and into the store's
frame (``input_size`` squares) as the patch stage scales detections.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comcl.datasets.lesion_boxes import read_lesion_boxes
from comcl.datasets.preprocess import fov_square, recorded_fov
from comcl.errors import DataError
from comcl.images import CHANNELS, read_image, resize_square
from comcl.io import read_table, write_json
from comcl.levels import LESION_LEVELS
from comcl.patches.stage import kept_boxes, scale_boxes

log = logging.getLogger(__name__)

MATCH_IOU = 0.3
BOX = ["x1", "y1", "x2", "y2"]


def boxes_in_index_frame(boxes: pd.DataFrame, original: pd.DataFrame, preprocessed: bool) -> pd.DataFrame:
    """``boxes`` (of the images as stored) in the frame of the indexed images; boxes of images the index lacks are left
    out (a chest image boxed for the detector leaves the index). ``original``: the index of the original version,
    whose images carry the square preprocessing cut."""
    paths = original.set_index("image_id")
    boxes = boxes[boxes["image_id"].isin(paths.index)].copy()
    if not preprocessed or boxes.empty:
        return boxes
    frames = {}
    for image_id in boxes["image_id"].unique():
        path, width = paths.at[image_id, "path"], paths.at[image_id, "width"]
        fov = recorded_fov(path)
        if fov is None:
            raise DataError(
                "a preprocessed image without the field of view it was cut around",
                path=path,
                hint="run the preprocess stage again (snakemake -R preprocess)",
            )
        x0, y0, side = fov_square(fov)
        frames[image_id] = (x0, y0, width / side)
    x0, y0, scale = (boxes["image_id"].map({k: v[i] for k, v in frames.items()}) for i in range(3))
    return boxes.assign(
        x1=(boxes["x1"] - x0) * scale, x2=(boxes["x2"] - x0) * scale, y1=(boxes["y1"] - y0) * scale, y2=(boxes["y2"] - y0) * scale
    )


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``a`` (N, 4) with every box of ``b`` (M, 4): (N, M)."""
    width = np.clip(np.minimum(a[:, None, 2], b[:, 2]) - np.maximum(a[:, None, 0], b[:, 0]), 0, None)
    height = np.clip(np.minimum(a[:, None, 3], b[:, 3]) - np.maximum(a[:, None, 1], b[:, 1]), 0, None)
    inter = width * height
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match(found: pd.DataFrame, truth: pd.DataFrame, threshold: float = MATCH_IOU) -> np.ndarray:
    """Which detections of one image are true: greedily by score, each to the unmatched lesion it overlaps most."""
    true = np.zeros(len(found), dtype=bool)
    if found.empty or truth.empty:
        return true
    overlap = iou(found[BOX].to_numpy(float), truth[BOX].to_numpy(float))
    free = np.ones(len(truth), dtype=bool)
    for i in np.argsort(-found["score"].to_numpy(), kind="stable"):
        candidates = np.where(free, overlap[i], -1.0)
        best = int(np.argmax(candidates))
        if candidates[best] >= threshold:
            true[i], free[best] = True, False
    return true


def holds_lesion(windows: pd.DataFrame, truth: pd.DataFrame) -> np.ndarray:
    """Which windows ``x0, y0, x1, y1`` of one image hold the centre of at least one lesion of ``truth``."""
    if windows.empty or truth.empty:
        return np.zeros(len(windows), dtype=bool)
    cx = ((truth["x1"] + truth["x2"]) / 2).to_numpy()
    cy = ((truth["y1"] + truth["y2"]) / 2).to_numpy()
    x0, y0, x1, y1 = (windows[c].to_numpy()[:, None] for c in ("x0", "y0", "x1", "y1"))
    return ((cx >= x0) & (cx < x1) & (cy >= y0) & (cy < y1)).any(axis=1)


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _cell(counts: Mapping[str, int]) -> dict[str, Any]:
    return {
        **counts,
        "precision": _ratio(counts["true_detections"], counts["detections"]),
        "recall": _ratio(counts["true_detections"], counts["lesions"]),  # one lesion per true detection
        "purity": _ratio(counts["patches_with_lesion"], counts["patches"]),
    }


def measure_image(
    record: Mapping[str, Any],
    found: pd.DataFrame,
    truth: pd.DataFrame,
    windows: pd.DataFrame,
    params: Mapping[str, Any],
    input_size: int,
    channels: int,
) -> dict[str, int]:
    """One lesion image's counts: its lesions, detections above ``conf`` (true or not), what the rim guard dropped,
    and its windows with a lesion. ``found`` and ``truth`` in the indexed image's frame, ``windows`` in the store's."""
    above = found[found["score"] > params["conf"]]
    true = match(above, truth)
    image = read_image(record["path"], channels)
    if image is None:
        raise DataError(f"cannot decode image {record['image_id']!r}", path=record["path"], hint="replace the file")
    height, width = image.shape[:2]
    square = resize_square(image, input_size)
    kept, _ = kept_boxes(square, scale_boxes(above, width, height, input_size), params)
    dropped = ~above.index.isin(kept.index)
    return {
        "images": 1,
        "lesions": len(truth),
        "detections": len(above),
        "true_detections": int(true.sum()),
        "rim_dropped": int(dropped.sum()),
        "rim_dropped_true": int((dropped & true).sum()),
        "patches": len(windows),
        "patches_with_lesion": int(holds_lesion(windows, scale_boxes(truth, width, height, input_size)).sum()),
    }


def run_lesion_truth(
    index: str | Path,
    original: str | Path,
    detections: str | Path,
    store: str | Path,
    boxes: str | Path,
    preprocessed: bool,
    params: Mapping[str, Any],
    input_size: int,
    output: str | Path,
) -> dict[str, Any]:
    """Write the detector's precision and recall and the lesion patches' purity of one dataset version."""
    frame, meta = read_table(index)
    first, _ = read_table(original)
    truth = boxes_in_index_frame(read_lesion_boxes(boxes), first, preprocessed)
    found, _ = read_table(detections)
    windows = pd.read_parquet(store, columns=["image_id", "split", "level", "x0", "y0", "x1", "y1"])
    by_image = {name: group for name, group in truth.groupby("image_id")}
    found_of, windows_of = found.groupby("image_id").indices, windows.groupby("image_id").indices
    empty = truth.iloc[:0]
    cells: dict[tuple[str, str], dict[str, int]] = {}
    lesion = frame[frame["level"].isin(LESION_LEVELS)]
    for record in lesion.to_dict("records"):
        counts = measure_image(
            record,
            found.iloc[found_of.get(record["image_id"], [])],
            by_image.get(record["image_id"], empty),
            windows.iloc[windows_of.get(record["image_id"], [])],
            params,
            input_size,
            CHANNELS[meta["modality"]],
        )
        for key in ((record["split"], record["level"]), ("all", record["level"])):
            total = cells.setdefault(key, dict.fromkeys(counts, 0))
            for name, value in counts.items():
                total[name] += value
    per_split: dict[str, dict[str, Any]] = {}
    for (split, level), counts in sorted(cells.items()):
        per_split.setdefault(split, {})[level] = _cell(counts)
    result = {
        "dataset": meta.get("dataset"),
        "proportion": meta.get("proportion"),
        "boxes": str(boxes),
        "conf": params["conf"],
        "match_iou": MATCH_IOU,
        "per_split_level": per_split,
    }
    for level, cell in per_split.get("train", {}).items():
        log.info(
            "train %s: precision %s, recall %s, purity %s (%d patches)",
            level,
            cell["precision"],
            cell["recall"],
            cell["purity"],
            cell["patches"],
        )
    write_json(output, result)
    return result
