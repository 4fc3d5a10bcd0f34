"""Lesion boxes for the detector, as COCO files with train and test splits.

Fundus: IDRiD's pixel masks, one box per 8-connected component per lesion class (MA, HE, EX, SE),
components smaller than ``min_area`` pixels dropped (single stray pixels of the annotation tool).
An image without a mask of a class simply has no box of it. Chest: the boxes of NIH's
BBox_List_2017.csv. The official split lists put nearly all of those images in the test list, so
the detector's own train/test split is drawn here, patient-wise, with a seed (the index removes the
boxed images from its test split: they leave the classification task). Boxes of your own: a labelling
tool's COCO export (CVAT, Label Studio, Roboflow), one file per split, its split kept and its category
names the classes; it is checked against the images it names (present, readable, of the size it says,
every box inside its image) so that a stale export or a resized folder fails here, naming the file.

Whatever the source, no image of the diagnosis dataset's evaluation splits (its index's val and test
splits, matched by image id: the file name without its extension) is used: the detector's boxes
decide the patch levels that pretraining learns from, so a box on an evaluation image would carry
its labels upstream. The summary says how many were left out.

COCO ``file_name`` values are the image paths as configured (relative to the workflow's working
directory unless absolute), so the detector reads exactly the files the index points at.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

from comcl.datasets import chestxray14 as nih
from comcl.datasets import idrid
from comcl.errors import DataError
from comcl.images import check_images
from comcl.io import read_table, write_json
from comcl.sources import COCO_EXPORT, resolve

log = logging.getLogger(__name__)

# The classes of the public formats; a COCO export brings its own.
LESION_CLASSES = {"idrid": ("MA", "HE", "EX", "SE"), "chestxray14": nih.TASK_FINDINGS}
COCO_KEYS = ("images", "annotations", "categories")
# Boxes drawn or exported with rounded coordinates may reach this far past the image's edge.
EDGE_TOLERANCE = 0.5
_RELABEL = "correct it in your labelling tool and export again"
SPLITS = ("train", "test")
# The splits of a diagnosis index whose images no detector may learn from.
EVALUATION_SPLITS = ("val", "test")
_EIGHT_CONNECTED = np.ones((3, 3), bool)


def mask_boxes(mask: np.ndarray, min_area: int) -> list[tuple[int, int, int, int, int]]:
    """``(x, y, w, h, area)`` of each 8-connected component of a boolean mask, in raster order."""
    labels, count = ndimage.label(mask, structure=_EIGHT_CONNECTED)
    if count == 0:
        return []
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    boxes = []
    for (rows, cols), area in zip(ndimage.find_objects(labels), areas, strict=True):
        if area >= min_area:
            boxes.append((cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start, int(area)))
    return boxes


def read_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    """A lesion mask as booleans; any non-zero pixel is lesion (IDRiD's red reads as 76 in grey)."""
    try:
        with Image.open(path) as opened:
            mask = np.asarray(opened.convert("L")) > 0
    except (OSError, SyntaxError) as error:
        raise DataError(f"cannot read mask ({error})", path=path, hint="replace the file from the IDRiD download") from error
    if mask.shape[::-1] != size:
        raise DataError(
            f"mask is {mask.shape[1]}x{mask.shape[0]} but its image is {size[0]}x{size[1]}",
            path=path,
            hint="masks and images must come from the same IDRiD release",
        )
    return mask


def _idrid_images(root: Path, split: str) -> pd.DataFrame:
    folder = idrid.image_path(root, split, 1).parent
    if not folder.is_dir():
        raise DataError(
            "IDRiD image folder not found",
            path=folder,
            hint=f"point the detector annotations at the extracted IDRiD folder that contains '{idrid.SEGMENTATION_DIR}'",
        )
    files = sorted(folder.glob("IDRiD_*.jpg"))
    if not files:
        raise DataError("no IDRiD_NN.jpg images in the folder", path=folder, hint="extract the IDRiD archive completely")
    frame = pd.DataFrame({"path": [str(file) for file in files], "line": 0})
    return check_images(frame, "header", folder, workers=1)


def idrid_boxes(root: str | Path, min_area: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """IDRiD's official split: ``(images, boxes)`` frames (see :func:`coco` for the columns)."""
    root = Path(root)
    images, boxes = [], []
    for split in SPLITS:
        found = _idrid_images(root, split)
        found["split"] = split
        images.append(found)
        for path, width, height in found[["path", "width", "height"]].itertuples(index=False):
            number = int(Path(path).stem.split("_")[1])
            for name in LESION_CLASSES["idrid"]:
                mask_file = idrid.mask_path(root, split, name, number)
                if mask_file.is_file():
                    for x, y, w, h, area in mask_boxes(read_mask(mask_file, (width, height)), min_area):
                        boxes.append((path, name, x, y, w, h, area))
    return pd.concat(images, ignore_index=True), pd.DataFrame(boxes, columns=["path", "label", "x", "y", "w", "h", "area"])


def nih_boxes(dataset: Mapping[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The BBox list's images, with their patient (``patient``), and its boxes; :func:`patient_split` splits them."""
    root = Path(dataset["root"])
    listed = nih.read_bbox_list(root / dataset["bbox_list"])
    if listed.empty:
        raise DataError(
            "the box list has no boxes", path=root / dataset["bbox_list"], hint="the detector needs lesion boxes to train"
        )
    entry = nih.read_data_entry(root / dataset["data_entry"]).set_index("Image Index")
    unknown = listed[~listed["image"].isin(entry.index)]
    if not unknown.empty:
        raise DataError(
            f"box for image {unknown['image'].iloc[0]!r}, which has no row in {dataset['data_entry']}",
            path=root / dataset["bbox_list"],
            line=int(unknown["line"].iloc[0]),
            hint="use the box list and Data_Entry file of the same release",
        )
    names = listed["image"].drop_duplicates()
    images = pd.DataFrame(
        {
            "path": [str(root / dataset["images"] / name) for name in names],
            "patient": entry.loc[names, "Patient ID"].astype(str).to_numpy(),
            "line": 0,
        }
    )
    images = check_images(images, "header", root / dataset["data_entry"], workers=1)
    paths = listed["image"].map(lambda name: str(root / dataset["images"] / name))
    boxes = pd.DataFrame({"path": paths, "label": listed["finding"], **{k: listed[k] for k in "xywh"}})
    boxes["area"] = boxes["w"] * boxes["h"]
    return images, boxes


def read_coco(path: Path) -> dict[str, Any]:
    """A COCO file as exported, with the three lists every detection export has."""
    if not path.is_file():
        raise DataError("COCO annotation file not found", path=path, hint=f"{COCO_EXPORT} and put it here")
    try:
        content = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        line = getattr(error, "lineno", None)
        raise DataError(f"not a JSON file ({error})", path=path, line=line, hint=f"{COCO_EXPORT} again") from error
    missing = [key for key in COCO_KEYS if not isinstance(content, dict) or not isinstance(content.get(key), list)]
    if missing:
        raise DataError(
            f"not a COCO detection file: no {', '.join(missing)} list",
            path=path,
            hint=f"{COCO_EXPORT}: a COCO detection file holds images, annotations and categories",
        )
    return content


def _coco_entries(content: Mapping[str, Any], key: str, fields: tuple[str, ...], path: Path) -> list[dict[str, Any]]:
    """One of a COCO file's lists, each entry holding the fields read here."""
    for number, entry in enumerate(content[key], start=1):
        missing = [field for field in fields if not isinstance(entry, dict) or field not in entry]
        if missing:
            named = {field: entry[field] for field in ("id", "file_name") if isinstance(entry, dict) and field in entry}
            raise DataError(
                f"entry {number} of {key} {named or ''} lacks {', '.join(missing)}", path=path, hint=f"{COCO_EXPORT} again"
            )
    return content[key]


def _coco_categories(content: Mapping[str, Any], path: Path) -> dict[Any, str]:
    """Category id -> name, in id order: the names are the detector's classes, so each must be there, once."""
    ids: dict[str, Any] = {}
    for category in sorted(_coco_entries(content, "categories", ("id",), path), key=lambda category: category["id"]):
        name = category.get("name")
        if not isinstance(name, str) or not name.strip():
            raise DataError(f"category {category['id']} has no name", path=path, hint=f"name every lesion type; {_RELABEL}")
        if name in ids:
            raise DataError(
                f"categories {ids[name]} and {category['id']} are both named {name!r}",
                path=path,
                hint=f"one category per lesion type: merge or rename them; {_RELABEL}",
            )
        ids[name] = category["id"]
    return {number: name for name, number in ids.items()}


def _coco_images(content: Mapping[str, Any], root: Path, path: Path) -> pd.DataFrame:
    """The listed images (``id``, ``file_name``, ``path``, ``width``, ``height``, ``line``), each read, of the size
    the file says: boxes drawn on other pixels than the detector reads would be wrong without any error."""
    fields = ("id", "file_name", "width", "height")
    listed = pd.DataFrame(_coco_entries(content, "images", fields, path), columns=list(fields))
    repeated = listed[listed["id"].duplicated(keep=False)]
    if not repeated.empty:
        names = repeated.loc[repeated["id"] == repeated["id"].iloc[0], "file_name"].astype(str)
        raise DataError(
            f"image id {repeated['id'].iloc[0]} is given to {', '.join(names)}", path=path, hint=f"{COCO_EXPORT} again"
        )
    frame = pd.DataFrame({"path": [str(resolve(root, name)) for name in listed["file_name"]], "line": 0})
    frame = check_images(frame, "header", path, workers=1)
    wrong = (frame["width"].astype(int).to_numpy() != listed["width"].to_numpy()) | (
        frame["height"].astype(int).to_numpy() != listed["height"].to_numpy()
    )
    if wrong.any():
        first = int(np.flatnonzero(wrong)[0])
        raise DataError(
            f"image {listed['file_name'].iloc[first]} is {frame['width'].iloc[first]}x{frame['height'].iloc[first]} "
            f"but the COCO file says {listed['width'].iloc[first]}x{listed['height'].iloc[first]}",
            path=path,
            hint="point root at the images that were labelled (not resized or converted copies), or export again from them",
        )
    return frame.assign(id=listed["id"].to_numpy(), file_name=listed["file_name"].to_numpy())


def _coco_box(annotation: Mapping[str, Any], image: pd.Series, path: Path) -> tuple[float, float, float, float, float]:
    """``(x, y, w, h, area)`` of an annotation (its ``area``, else ``w * h``), refused unless it is a box of positive size
    inside its image."""
    where = f"annotation {annotation['id']} on {image['file_name']}"
    bbox = annotation["bbox"]
    numbers = isinstance(bbox, list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox)
    if not numbers or len(bbox) != 4:
        raise DataError(f"{where}: bbox {bbox!r} is not [x, y, width, height]", path=path, hint=f"{COCO_EXPORT} again")
    x, y, w, h = map(float, bbox)
    # JSON readers take NaN and Infinity, and every comparison with NaN is False: the checks below would pass it.
    area = annotation.get("area")
    if not np.isfinite([x, y, w, h]).all() or (area is not None and not np.isfinite(float(area))):
        raise DataError(
            f"{where}: bbox {bbox} (area {area}) has a NaN or infinite number", path=path, hint=f"delete or redraw it; {_RELABEL}"
        )
    if w <= 0 or h <= 0:
        raise DataError(
            f"{where}: box {bbox} has no area (width or height <= 0)", path=path, hint=f"delete or redraw it; {_RELABEL}"
        )
    width, height = int(image["width"]), int(image["height"])
    if x < -EDGE_TOLERANCE or y < -EDGE_TOLERANCE or x + w > width + EDGE_TOLERANCE or y + h > height + EDGE_TOLERANCE:
        raise DataError(
            f"{where}: box {bbox} reaches outside the {width}x{height} image",
            path=path,
            hint=f"redraw it inside the image; {_RELABEL}",
        )
    return x, y, w, h, float(annotation.get("area") or w * h)


def _coco_annotations(
    content: Mapping[str, Any], images: pd.DataFrame, categories: Mapping[Any, str], path: Path
) -> pd.DataFrame:
    """The boxes of one COCO file (``path``, ``label``, ``x``, ``y``, ``w``, ``h``, ``area``), each on a listed image, of a
    listed category."""
    by_id = images.set_index("id")
    boxes = []
    for annotation in _coco_entries(content, "annotations", ("id", "image_id", "category_id", "bbox"), path):
        if annotation["image_id"] not in by_id.index:
            raise DataError(
                f"annotation {annotation['id']}: image_id {annotation['image_id']} names no image of the file's images",
                path=path,
                hint=f"export images and annotations together: {COCO_EXPORT}",
            )
        image = by_id.loc[annotation["image_id"]]
        if annotation["category_id"] not in categories:
            raise DataError(
                f"annotation {annotation['id']} on {image['file_name']}: "
                f"category_id {annotation['category_id']} names no category",
                path=path,
                hint=f"export labels and boxes together: {COCO_EXPORT}",
            )
        boxes.append((image["path"], categories[annotation["category_id"]], *_coco_box(annotation, image, path)))
    return pd.DataFrame(boxes, columns=["path", "label", "x", "y", "w", "h", "area"])


def coco_boxes(source: Mapping[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, tuple[str, ...]]:
    """A COCO export, its own train/test split kept: ``(images, boxes)`` frames (see :func:`coco`) and the classes, the
    train file's category names in id order. Images without boxes stay: they are the detector's negatives."""
    root = Path(source["root"])
    images, boxes, classes = [], [], {}
    for split in SPLITS:
        path = resolve(root, source[split])
        content = read_coco(path)
        categories = _coco_categories(content, path)
        found = _coco_images(content, root, path)
        boxes.append(_coco_annotations(content, found, categories, path))
        images.append(found.drop(columns=["id", "file_name"]).assign(split=split))
        classes[split] = tuple(categories.values())
    if set(classes["test"]) != set(classes["train"]):
        raise DataError(
            f"the test file's categories {sorted(classes['test'])} are not the train file's {sorted(classes['train'])}",
            path=resolve(root, source["test"]),
            hint="the detector learns and is scored on the same classes: export both splits from one project, same labels",
        )
    images = pd.concat(images, ignore_index=True)
    _refuse_repeated_images(images, root, source)
    return images, pd.concat(boxes, ignore_index=True), classes["train"]


def _refuse_repeated_images(images: pd.DataFrame, root: Path, source: Mapping[str, Any]) -> None:
    """An image listed twice (in one file, or in both) would be trained on and scored on, or its boxes doubled."""
    repeated = images[images["path"].duplicated(keep=False)]
    if repeated.empty:
        return
    first = repeated[repeated["path"] == repeated["path"].iloc[0]]
    splits = " and ".join(first["split"])
    raise DataError(
        f"image {first['path'].iloc[0]} is listed {len(first)} times ({splits})",
        path=resolve(root, source[first["split"].iloc[-1]]),
        hint="list each image once, in one split: export the train and test images as separate, disjoint subsets",
    )


def patient_split(patients: pd.Series, test_share: float, seed: int) -> pd.Series:
    """``test`` for the images of about ``test_share`` of the patients (at least one, if there are two), else ``train``."""
    order = np.random.default_rng(seed).permutation(sorted(patients.unique()))
    test_patients = set(order[: max(1, round(test_share * len(order)))]) if len(order) > 1 else set()
    return pd.Series(np.where(patients.isin(test_patients), "test", "train"), index=patients.index)


def lesion_boxes(source: Mapping[str, Any], min_area: int) -> tuple[pd.DataFrame, pd.DataFrame, tuple[str, ...]]:
    """The ``(images, boxes)`` frames of an annotation source and its classes: fixed for the public formats, the
    export's own for COCO."""
    if source["format"] == "coco":
        return coco_boxes(source)
    if source["format"] == "idrid":
        images, boxes = idrid_boxes(source["root"], min_area)
    elif source["format"] == "chestxray14":
        images, boxes = nih_boxes(source)
    else:
        raise ValueError(f"unknown lesion annotation format {source['format']!r}")
    return images, boxes, LESION_CLASSES[source["format"]]


def evaluation_images(index: str | Path) -> dict[str, set[str]]:
    """The image ids of a diagnosis index's evaluation splits (val and test), per split."""
    frame, _ = read_table(index)
    return {split: set(frame.loc[frame["split"] == split, "image_id"]) for split in EVALUATION_SPLITS}


def evaluation_split(paths: pd.Series, held_out: Mapping[str, Collection[str]]) -> pd.Series:
    """Per image path, the evaluation split of ``held_out`` whose image ids hold its file name
    without extension, or None."""
    stems = paths.map(lambda path: Path(path).stem)
    found = pd.Series(None, index=paths.index, dtype=object)
    for split, image_ids in held_out.items():
        found[stems.isin(image_ids)] = split
    return found


def coco(images: pd.DataFrame, boxes: pd.DataFrame, classes: tuple[str, ...]) -> dict[str, Any]:
    """One split as a COCO detection dict (``images``: path, width, height; ``boxes``: path, label, x, y, w, h, area)."""
    image_ids = {path: number for number, path in enumerate(images["path"], start=1)}
    category = {name: number for number, name in enumerate(classes, start=1)}
    inside = boxes[boxes["path"].isin(image_ids)]
    return {
        "images": [
            {"id": image_ids[path], "file_name": path, "width": int(width), "height": int(height)}
            for path, width, height in images[["path", "width", "height"]].itertuples(index=False)
        ],
        "annotations": [
            {
                "id": number,
                "image_id": image_ids[row.path],
                "category_id": category[row.label],
                "bbox": [float(row.x), float(row.y), float(row.w), float(row.h)],
                "area": float(row.area),
                "iscrowd": 0,
            }
            for number, row in enumerate(inside.itertuples(index=False), start=1)
        ],
        "categories": [{"id": number, "name": name} for name, number in category.items()],
    }


def coco_classes(path: str | Path) -> list[str]:
    """The class names of a COCO file, in category order: what the detector's outputs mean."""
    return [category["name"] for category in json.loads(Path(path).read_text())["categories"]]


def lesion_annotations(
    source: Mapping[str, Any], min_area: int, test_share: float, seed: int, held_out: Mapping[str, Collection[str]]
) -> tuple[dict[str, dict], dict[str, Any]]:
    """COCO dicts per split for an annotation ``source`` (``format``: idrid | chestxray14 | coco), and a summary.

    ``held_out``: image ids per evaluation split of the diagnosis dataset (:func:`evaluation_images`);
    those images are left out before the detector's own split is drawn.
    """
    images, boxes, classes = lesion_boxes(source, min_area)
    held = evaluation_split(images["path"], held_out)
    excluded = {split: int((held == split).sum()) for split in held_out}
    images = images[held.isna()].reset_index(drop=True)
    if source["format"] == "chestxray14":
        # NIH's box images have no split of their own: drawn among those the detector may use.
        images["split"] = patient_split(images["patient"], test_share, seed)
    splits = {split: coco(images[images["split"] == split], boxes, classes) for split in SPLITS}
    for split, content in splits.items():
        if not content["annotations"]:
            raise DataError(
                f"no lesion boxes in the {split} split ({len(content['images'])} images; "
                f"{sum(excluded.values())} images of the dataset's evaluation splits left out)",
                path=source["root"],
                hint="the detector needs boxes in both splits: check the masks / box list / COCO files, or lower min_area",
            )
    summary = {
        "format": source["format"],
        "classes": list(classes),
        "excluded_evaluation_images": excluded,
        **{
            split: {
                "images": len(content["images"]),
                "boxes": {name: sum(a["category_id"] == i + 1 for a in content["annotations"]) for i, name in enumerate(classes)},
            }
            for split, content in splits.items()
        },
    }
    return splits, summary


def write_lesion_annotations(
    source: Mapping[str, Any],
    min_area: int,
    test_share: float,
    seed: int,
    index: str | Path,
    train: str | Path,
    test: str | Path,
    summary: str | Path,
) -> dict[str, Any]:
    """:func:`lesion_annotations` without the evaluation images of the diagnosis ``index``, written as COCO files and a
    JSON summary."""
    splits, counts = lesion_annotations(source, min_area, test_share, seed, evaluation_images(index))
    write_json(train, splits["train"])
    write_json(test, splits["test"])
    write_json(summary, counts)
    log.info("lesion boxes: %s", counts)
    return counts
