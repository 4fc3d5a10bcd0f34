"""The patch stage: lesion windows around detections (Omega), random windows in healthy images (RandC).

Patches are cut at the scale that fine-tuning sees: from each image resized as fine-tuning resizes
it (:func:`resize_square`, to ``input_size`` = ``finetune.input_size`` squares), the detector's boxes
scaled into that frame. A lesion is then as many pixels wide in its patch as in the images the
classifier is fine-tuned on (the paper: 128 px patches of 512 px images). Windows and boxes in the
store are in that frame too. A box larger than a patch gets a window that holds it, resized to the
patch size, so the patch shows the whole lesion.

Every image of a dataset version (every split) is read once, on worker processes, and its patches
stream into the store, so memory does not grow with the number of images. Healthy windows depend
only on the seed and the image id: an image left undegraded gives the same patches in every version.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comcl.errors import DataError
from comcl.fov import boxes_inside, estimate_fov_mask, inner_fov
from comcl.images import CHANNELS, read_image, resize_square
from comcl.io import read_table, write_json
from comcl.levels import LESION_LEVELS, LEVELS
from comcl.parallel import image_seed, parallel_stream
from comcl.patches.store import PatchRow, PatchStoreWriter
from comcl.patches.windows import expand_box, fov_windows, merge_windows

log = logging.getLogger(__name__)


def scale_boxes(boxes: pd.DataFrame, width: int, height: int, size: int) -> pd.DataFrame:
    """Boxes ``x1, y1, x2, y2`` of a ``width`` x ``height`` image, in the frame of the image resized to ``size`` squares."""
    x, y = size / width, size / height
    return boxes.assign(x1=boxes["x1"] * x, x2=boxes["x2"] * x, y1=boxes["y1"] * y, y2=boxes["y2"] * y)


def _window(values: np.ndarray) -> tuple[int, int, int, int]:
    """One row ``x0, y0, x1, y1`` of an array of windows, as ints."""
    x0, y0, x1, y1 = (int(v) for v in values)
    return x0, y0, x1, y1


def cut(image: np.ndarray, window: tuple[int, int, int, int], size: int) -> np.ndarray:
    """The ``size`` x ``size`` patch of ``window``: the window's pixels, resized when the window is larger."""
    x0, y0, x1, y1 = window
    pixels = image[y0:y1, x0:x1]
    return pixels if x1 - x0 == size else resize_square(pixels, size)


def kept_boxes(image: np.ndarray, boxes: pd.DataFrame, params: Mapping[str, Any]) -> tuple[pd.DataFrame, int]:
    """The detections above ``conf`` that lie inside the field of view (centre off its rim, at least half inside),
    and how many above ``conf`` lay on the rim (``boxes`` in the frame of ``image``)."""
    boxes = boxes[boxes["score"] > params["conf"]]
    fov = estimate_fov_mask(image, params["fov_threshold"])
    inside = boxes_inside(boxes[["x1", "y1", "x2", "y2"]].to_numpy(), fov, inner_fov(fov, params["fov_margin"]))
    return boxes[inside], int((~inside).sum())


def lesion_rows(record: Mapping[str, Any], image: np.ndarray, boxes: pd.DataFrame, params: Mapping[str, Any]) -> list[PatchRow]:
    """Omega: one window per kept detection (:func:`kept_boxes`), overlapping duplicates merged."""
    height, width = image.shape[:2]
    expanded = [expand_box((b.x1, b.y1, b.x2, b.y2), width, height, params["size"]) for b in boxes.itertuples()]
    if not expanded:
        return []
    windows = np.array([window for window, _ in expanded])
    keep = merge_windows(windows, boxes["score"].to_numpy(), params["merge_iou"])
    rows = []
    for i in keep:
        box = boxes.iloc[i]
        rows.append(
            PatchRow(
                image_id=record["image_id"],
                split=record["split"],
                level=record["level"],
                window=_window(windows[i]),
                box=(box.x1, box.y1, box.x2, box.y2),
                score=float(box.score),
                label=box.label,
                box_exceeds_patch=expanded[i][1],
                pixels=cut(image, windows[i], params["size"]),
            )
        )
    return rows


def healthy_rows(record: Mapping[str, Any], image: np.ndarray, params: Mapping[str, Any]) -> list[PatchRow]:
    """RandC: ``k`` random windows inside the field of view, overlapping duplicates merged."""
    rng = np.random.default_rng(image_seed(params["seed"], record["image_id"]))
    fov = estimate_fov_mask(image, params["fov_threshold"])
    windows = np.array(fov_windows(fov, params["k"], params["size"], rng, params["min_fov_coverage"]), dtype=np.int64).reshape(
        -1, 4
    )
    keep = merge_windows(windows, np.zeros(len(windows)), params["merge_iou"])
    return [
        PatchRow(
            image_id=record["image_id"],
            split=record["split"],
            level=record["level"],
            window=_window(windows[i]),
            box=None,
            score=None,
            label=None,
            box_exceeds_patch=False,
            pixels=cut(image, windows[i], params["size"]),
        )
        for i in sorted(keep)
    ]


def image_rows(
    job: tuple[dict[str, Any], pd.DataFrame], params: Mapping[str, Any], input_size: int, channels: int
) -> tuple[dict[str, Any], list[PatchRow] | str, int]:
    """The image's record, its patches cut from the image resized to ``input_size`` (or why the image cannot be
    used), and how many of its detections lay on the field of view's rim."""
    record, boxes = job
    image = read_image(record["path"], channels)
    if image is None:
        return record, "missing or undecodable", 0
    height, width = image.shape[:2]
    image = resize_square(image, input_size)
    try:
        if record["level"] in LESION_LEVELS:
            kept, on_rim = kept_boxes(image, scale_boxes(boxes, width, height, input_size), params)
            return record, lesion_rows(record, image, kept, params), on_rim
        return record, healthy_rows(record, image, params), 0
    except ValueError as error:
        return record, str(error), 0


def summarize_patches(
    store: pd.DataFrame,
    frame: pd.DataFrame,
    without: dict[str, list[str]],
    input_size: int,
    on_rim: Mapping[tuple[str, str], int],
) -> dict[str, Any]:
    """Patches per split and level, the detections dropped on the rim, and the images that gave no patch (listed,
    never dropped silently)."""
    counts = store.groupby(["split", "level"]).size()
    images = frame.groupby(["split", "level"]).size()
    return {
        "patches": len(store),
        "input_size": input_size,
        "per_split_level": {
            split: {
                level: {
                    "images": int(images.get((split, level), 0)),
                    "patches": int(counts.get((split, level), 0)),
                    "rim_detections_dropped": int(on_rim.get((split, level), 0)),
                }
                for level in LEVELS
            }
            for split in sorted(frame["split"].unique())
        },
        "rim_detections_dropped": int(sum(on_rim.values())),
        "lesion_images_without_detection": {"count": len(without["lesion"]), "images": without["lesion"]},
        "healthy_images_without_window": {"count": len(without["healthy"]), "images": without["healthy"]},
        "patches_per_label": {str(k): int(v) for k, v in store["label"].value_counts().items()},
        "box_exceeds_patch": int(store["box_exceeds_patch"].sum()),
    }


def run_patches(
    index: str | Path,
    detections: str | Path,
    params: Mapping[str, Any],
    input_size: int,
    store: str | Path,
    summary: str | Path,
    workers: int,
) -> dict[str, Any]:
    """Write the patch store of one dataset version and its summary; patches cut from the images resized to ``input_size``."""
    if params["size"] > input_size:
        raise ValueError(
            f"patches of {params['size']} px cannot be cut from images resized to {input_size} px: use a smaller patch size"
        )
    frame, meta = read_table(index)
    found, _ = read_table(detections)
    channels = CHANNELS[meta["modality"]]
    rows_of = found.groupby("image_id").indices
    columns = ["image_id", "path", "split", "level"]
    # Built as the workers ask for them: one small frame per image in flight, not one per image.
    records = (dict(zip(columns, values, strict=True)) for values in frame[columns].itertuples(index=False, name=None))
    jobs = ((record, found.iloc[rows_of.get(record["image_id"], [])]) for record in records)
    work = functools.partial(image_rows, params=params, input_size=input_size, channels=channels)
    without: dict[str, list[str]] = {"lesion": [], "healthy": []}
    on_rim: Counter[tuple[str, str]] = Counter()
    store_meta = {key: meta.get(key) for key in ("dataset", "proportion", "format", "modality", "task")}
    store_meta |= {"params": dict(params), "input_size": input_size}
    with PatchStoreWriter(store, params["size"], channels, store_meta, params["row_group_bytes"]) as writer:
        for record, rows, dropped in parallel_stream(work, jobs, len(frame), workers, desc="patches"):
            if isinstance(rows, str):
                raise DataError(
                    f"image {record['image_id']!r}: {rows}",
                    path=record["path"],
                    hint="replace the file, or remove the image from the dataset and run the index stage again",
                )
            if not rows:
                without["lesion" if record["level"] in LESION_LEVELS else "healthy"].append(record["image_id"])
            on_rim[record["split"], record["level"]] += dropped
            writer.add(rows)
    written = pd.read_parquet(store, columns=["split", "level", "label", "box_exceeds_patch"])
    result = summarize_patches(written, frame, without, input_size, on_rim)
    for kind, names in without.items():
        if names:
            log.warning("%d %s images gave no patch (listed in %s)", len(names), kind, summary)
    log.info(
        "%d detections above %s lay on the field of view's rim and gave no window",
        result["rim_detections_dropped"],
        params["conf"],
    )
    write_json(summary, result)
    return result
