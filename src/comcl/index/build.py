"""Build the index of a diagnosis dataset from its public on-disk format.

Every index has the same core columns, whatever the dataset:

``image_id, path, split, patient_id, <label columns>, quality, lesion, level, degraded, degradation,
width, height``

``split`` is ``train``, ``val`` or ``test``: the dataset's official train and test splits, and a
validation split carved patient-wise from the train split here, before any later stage reads the data,
so that the detector, the patch levels and pretraining (which use ``train``) never see the images on
which fine-tuning selects its model. ``quality`` is ``high`` or ``low``; ``lesion`` says whether the
image shows disease; ``level`` is one of ``L`` (high-quality lesion), ``L~`` (low-quality lesion),
``H`` (high-quality healthy) and ``H~`` (low-quality healthy); ``degraded``/``degradation`` are set
by the degradation stage (here: never). The Parquet metadata says how to read the labels: ``task``
(``grading`` or ``multilabel``), ``label_columns`` and ``num_classes``; how the validation split
was drawn (``val_share``, ``val_seed``); and what decided each image's quality (``quality_source``: the
dataset's ``labels``, or the chest radiograph score of :mod:`comcl.index.quality`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comcl.datasets import chestxray14 as nih
from comcl.datasets import eyeq, table_format
from comcl.datasets.csv_checks import check_columns, read_csv_checked
from comcl.errors import DataError
from comcl.images import check_images, refuse_unusable
from comcl.index import quality
from comcl.io import write_json, write_table
from comcl.levels import LEVELS
from comcl.parallel import image_seed, parallel_map
from comcl.splits import MIN_VALIDATION_VALUES, validation_count, validation_problem

log = logging.getLogger(__name__)

# The splits a dataset publishes, and the splits of the index (validation carved from train).
OFFICIAL_SPLITS = ("train", "test")
SPLITS = ("train", "val", "test")
CORE_COLUMNS = ("image_id", "path", "split", "patient_id")
STATE_COLUMNS = ("quality", "lesion", "level", "degraded", "degradation", "width", "height")
# The index's quality_source when the dataset's own labels decide quality (else quality.SOURCE, the score).
LABELLED = "labels"
_QUALITY_HINT = (
    "the quality score decodes every image: re-download the broken ones or remove their rows from the label file "
    "(index: check_images: decode finds every such image, before the score)"
)


def assign_levels(lesion: pd.Series, low_quality: pd.Series) -> pd.Series:
    levels = np.select(
        [lesion & ~low_quality, lesion & low_quality, ~lesion & ~low_quality],
        ["L", "L~", "H"],
        default="H~",
    )
    return pd.Series(levels, index=lesion.index)


def _finish(frame: pd.DataFrame, label_columns: list[str], low_quality: pd.Series, lesion: pd.Series) -> pd.DataFrame:
    frame = frame.copy()
    frame["quality"] = np.where(low_quality, "low", "high")
    frame["lesion"] = lesion.to_numpy(dtype=bool)
    frame["level"] = assign_levels(frame["lesion"], pd.Series(low_quality.to_numpy(dtype=bool), index=frame.index))
    frame["degraded"] = False
    frame["degradation"] = pd.Series([None] * len(frame), dtype="string")
    extras = [c for c in frame.columns if c not in (*CORE_COLUMNS, *label_columns, *STATE_COLUMNS, "line")]
    return frame[[*CORE_COLUMNS, *label_columns, *STATE_COLUMNS, *extras]].reset_index(drop=True)


def _check_splits(frame: pd.DataFrame, sources: Mapping[str, Path]) -> None:
    for split in OFFICIAL_SPLITS:
        if not (frame["split"] == split).any():
            raise DataError(
                f"the {split} split is empty", path=sources[split], hint=f"the {split} split needs at least one image"
            )
    both = frame[frame["image_id"].duplicated(keep=False)]
    if not both.empty:
        image = both["image_id"].iloc[0]
        raise DataError(
            f"image {image!r} is in both the train and the test split ({both['image_id'].nunique()} such images)",
            path=sources["test"],
            line=int(both["line"].iloc[-1]),
            hint="an image (and its patient) must belong to one split only",
        )


def carve_validation(
    frame: pd.DataFrame, share: float, seed: int, source: Path, labels: Sequence[str], name: str
) -> pd.DataFrame:
    """``frame`` with about ``share`` of its train split's patients moved, whole, to the ``val`` split.

    Whole patients: the images of one patient (EyeQ: both eyes, ``<id>_left`` and ``<id>_right``) are
    alike, and a patient on both sides would make validation scores optimistic. Patients are drawn in
    an order that depends only on ``seed`` and each patient's id, so the split does not depend on the
    row order. ``source`` is the train split's file, named (with the dataset's ``name``) when ``share``
    would leave the train or val split empty, or a val split on which no model can be selected
    (:func:`check_selectable`; ``labels`` are the label columns).
    """
    train = frame["split"] == "train"
    patients = set(frame.loc[train, "patient_id"])
    problem = validation_problem(len(patients), share)
    if problem:
        message, hint = problem
        raise DataError(f"dataset {name}: {message}", path=source, hint=hint)
    order = sorted(patients, key=lambda patient: (image_seed(seed, patient).generate_state(1)[0], patient))
    chosen = order[: validation_count(len(patients), share)]
    frame = frame.copy()
    frame.loc[train & frame["patient_id"].isin(chosen), "split"] = "val"
    check_selectable(frame, labels, order, share, source, name)
    return frame


def check_selectable(
    frame: pd.DataFrame, labels: Sequence[str], order: Sequence[str], share: float, source: Path, name: str
) -> None:
    """Refuse a validation split on which fine-tuning cannot select a model: one where no label column takes
    :data:`~comcl.splits.MIN_VALIDATION_VALUES` values (a single grade; each finding on all its images or
    on none), one image included. Fine-tuning keeps the epoch with the best validation kappa, and on one grade the
    quadratic kappa is 0 or undefined whatever the model predicts (its disagreement is the chance one): every
    epoch ties and the first, barely trained, is kept. ``labels`` are a grade column or boolean finding columns;
    ``order`` is the order in which the training patients go to validation, from which the hint works out the
    smallest ``index.val_share`` that would do."""
    val = frame[frame["split"] == "val"]
    if any(val[column].nunique() >= MIN_VALIDATION_VALUES for column in labels):
        return
    needed = _patients_needed(frame[frame["split"] != "test"], labels, order)
    if needed is not None and needed < len(order):
        advice = (
            f"raise index.val_share from {share} to at least {math.ceil(1000 * needed / len(order)) / 1000:g} ({needed} of "
            f"the {len(order)} training patients), or add training images"
        )
    else:
        advice = "add training images: the training split's labels do not vary enough to leave a validation split that does"
    images = _count(len(val), "image")
    if pd.api.types.is_bool_dtype(frame[labels[0]]):
        held, needs = f"{images}, each finding on all or none", "a finding present on some of its images and absent on others"
    else:
        held, needs = f"{images} of grade {val[labels[0]].iloc[0]} only", f"at least {MIN_VALIDATION_VALUES} grades"
    raise DataError(
        f"dataset {name}: the validation split cannot select a model: it holds {held}, on which the validation kappa is 0 "
        f"or undefined whatever a model predicts, so fine-tuning would keep its first epoch (splits: {_split_counts(frame)})",
        path=source,
        hint=f"{advice}: the validation split needs {needs}",
    )


def _patients_needed(rows: pd.DataFrame, labels: Sequence[str], order: Sequence[str]) -> int | None:
    """The fewest patients, taken in ``order``, whose images (``rows``: the train and val splits) differ in a label
    column; None when no number does. A row at position p in the order that differs from the first patient's
    value needs the first p + 1 patients, and every row before it has that value."""
    position = rows["patient_id"].map({patient: number for number, patient in enumerate(order)})
    first = position.idxmin()
    found = [position[rows[column] != rows.at[first, column]].min() for column in labels]
    counts = [int(value) + 1 for value in found if pd.notna(value)]
    return min(counts) if counts else None


def _split_counts(frame: pd.DataFrame) -> str:
    """Images and patients per split, for a message."""
    parts = []
    for split in SPLITS:
        part = frame[frame["split"] == split]
        parts.append(f"{split} {_count(len(part), 'image')} of {_count(part['patient_id'].nunique(), 'patient')}")
    return ", ".join(parts)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def index_eyeq(
    root: Path,
    labels: Mapping[str, str],
    images: Mapping[str, str],
    check: str,
    workers: int,
    val_share: float,
    seed: int,
    name: str,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """EyeQ: quality Good is high quality, Usable and Reject low; lesion = DR grade > 0. The patient is
    the number in ``<id>_<left|right>``."""
    parts = []
    sources = {split: root / labels[split] for split in OFFICIAL_SPLITS}
    for split in OFFICIAL_SPLITS:
        table = eyeq.read_labels(sources[split])
        # A folder outside the root (the preprocessed images) comes as a relative path from it.
        folder = Path(os.path.normpath(root / images[split]))
        part = pd.DataFrame(
            {
                "image_id": table["image"].str.replace(r"\.jpe?g$", "", regex=True),
                "path": [str(folder / name) for name in table["image"]],
                "split": split,
                "patient_id": table["patient_id"],
                "dr_grade": table["DR_grade"],
                "eyeq_quality": table["quality"],
                "eye": table["eye"],
                "line": table["line"],
            }
        )
        parts.append(check_images(part, check, sources[split], workers))
    frame = pd.concat(parts, ignore_index=True)
    _check_splits(frame, sources)
    frame = carve_validation(frame, val_share, seed, sources["train"], ["dr_grade"], name)
    frame = _finish(frame, ["dr_grade"], frame["eyeq_quality"] > 0, frame["dr_grade"] > 0)
    meta = {"format": "eyeq", "task": "grading", "label_columns": ["dr_grade"], "num_classes": 5}
    return frame, {**meta, "quality_source": LABELLED}


def index_chestxray14(
    root: Path,
    data_entry: str,
    bbox_list: str,
    split_lists: Mapping[str, str],
    images: str,
    quality_csv: str | None,
    low_quality_share: float,
    other_findings: str,
    check: str,
    workers: int,
    val_share: float,
    seed: int,
    name: str,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """ChestX-ray14 on the 8 ChestX-ray8 findings, official patient-wise split.

    ``other_findings``: ``negative`` keeps images whose findings are all outside the 8 (as negatives
    for all 8); ``exclude`` drops them. Quality comes from ``quality_csv`` when given, else from the
    no-reference score of :mod:`comcl.index.quality`. The box list is checked against Data_Entry
    here, so that a mismatched release fails now rather than in the detector stage; its images leave
    the test split (:func:`drop_boxed_test_images`).
    """
    entry_path = root / data_entry
    folder = root / images
    if not quality_csv:
        _require_images_to_score(folder, "datasets.<name>.quality_csv: a file of quality labels (Image Index,quality)")
    table = nih.read_data_entry(entry_path)
    boxes = nih.read_bbox_list(root / bbox_list)
    stray = boxes[~boxes["image"].isin(table["Image Index"])]
    if not stray.empty:
        raise DataError(
            f"box for image {stray['image'].iloc[0]!r}, which has no row in {entry_path.name} ({len(stray)} such boxes)",
            path=root / bbox_list,
            line=int(stray["line"].iloc[0]),
            hint="use the box list and Data_Entry file of the same release",
        )
    sources = {split: root / listing for split, listing in split_lists.items()}
    split_of: dict[str, str] = {}
    for split in OFFICIAL_SPLITS:
        for image in nih.read_split_list(sources[split]):
            if split_of.setdefault(image, split) != split:
                raise DataError(
                    f"image {image!r} is in both split lists", path=sources[split], hint="an image belongs to one split only"
                )
    unknown = sorted(set(split_of) - set(table["Image Index"]))
    if unknown:
        raise DataError(
            f"{len(unknown)} images in the split lists have no row in {entry_path.name}, e.g. {unknown[:3]}",
            path=sources[split_of[unknown[0]]],
            hint="use the split lists and Data_Entry file of the same release",
        )
    unlisted = table[~table["Image Index"].isin(split_of)]
    if not unlisted.empty:
        raise DataError(
            f"{len(unlisted)} images are in no split list, e.g. {unlisted['Image Index'].head(3).tolist()}",
            path=entry_path,
            line=int(unlisted["line"].iloc[0]),
            hint="use the split lists and Data_Entry file of the same release",
        )
    task = table["findings"].map(lambda names: {name for name in names if name in nih.TASK_FINDINGS})
    if other_findings == "exclude":
        keep = (task.map(len) > 0) | (table["findings"].map(len) == 0)
        table, task = table[keep], task[keep]
    elif other_findings != "negative":
        raise ValueError(f"other_findings must be 'negative' or 'exclude', got {other_findings!r}")
    frame = pd.DataFrame(
        {
            "image_id": table["Image Index"].str.replace(r"\.png$", "", regex=True),
            "path": [str(folder / name) for name in table["Image Index"]],
            "split": table["Image Index"].map(split_of),
            "patient_id": table["Patient ID"].astype(str),
            **{name: task.map(lambda found, n=name: n in found).astype(bool) for name in nih.TASK_FINDINGS},
            "finding_labels": table["Finding Labels"],
            "view_position": table["View Position"],
            "line": table["line"],
        }
    )
    frame = check_images(frame, check, entry_path, workers)
    _check_splits(frame, sources)
    frame, removed = drop_boxed_test_images(frame, boxes, sources["test"])
    frame = carve_validation(frame, val_share, seed, sources["train"], nih.TASK_FINDINGS, name)
    if quality_csv:
        low = _quality_from_csv(root / quality_csv, frame)
    else:
        frame, low = _scored_quality(frame, low_quality_share, entry_path, workers)
    lesion = frame[list(nih.TASK_FINDINGS)].any(axis=1)
    frame = _finish(frame, list(nih.TASK_FINDINGS), low, lesion)
    meta = {
        "format": "chestxray14",
        "task": "multilabel",
        "label_columns": list(nih.TASK_FINDINGS),
        "num_classes": 8,
        "boxes": len(boxes),
        "boxed_test_images_removed": removed,
        "quality_source": LABELLED if quality_csv else quality.SOURCE,
    }
    return frame, meta


def _require_images_to_score(folder: Path, labels: str) -> None:
    """Without quality labels the no-reference score decides quality, and it needs every image: a labels-only
    copy of a dataset stops here, before any image is opened, with the two ways out."""
    if not folder.is_dir():
        raise DataError(
            f"no quality labels were given, so the quality score must read every image, and the images folder {folder} "
            "does not exist",
            hint=f"either give {labels}, or put the images in {folder} to be scored",
        )


def _scored_quality(frame: pd.DataFrame, share: float, source: Path, workers: int) -> tuple[pd.DataFrame, pd.Series]:
    """``frame`` with its no-reference ``quality_score``, and which images are low quality: the lowest-scoring ``share``."""
    measured = parallel_map(quality.measure_or_reason, frame["path"].tolist(), workers, desc="quality score")
    refuse_unusable(frame, measured, source, _QUALITY_HINT)
    frame = frame.copy()
    frame["quality_score"] = quality.score(pd.DataFrame(measured, columns=quality.FEATURES, index=frame.index))
    return frame, quality.low_quality(frame["quality_score"], share)


def index_table(
    root: Path,
    labels: str,
    task: str,
    modality: str,
    check: str,
    workers: int,
    val_share: float,
    seed: int,
    name: str,
    findings: list[str] | None = None,
    num_classes: int | None = None,
    low_quality_share: float = 0.432,
    images: str = ".",
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A dataset of one's own (:mod:`comcl.datasets.table_format`): lesion = grade > 0, or any finding. Quality from its
    ``quality`` column, else, for a chest table, the no-reference score as for ChestX-ray14; a fundus table without
    one is refused (:func:`require_fundus_quality`). ``images``: the folder, relative to ``root``, that the image
    paths are relative to (the preprocessed one for a preprocessed fundus table)."""
    source = root / labels
    table, classes = table_format.read_labels(source, task, findings, num_classes)
    label_columns = [table_format.GRADE] if task == "grading" else list(findings or ())
    folder = Path(os.path.normpath(root / images))
    if "quality" not in table.columns:
        require_fundus_quality(modality, source, name)
        _require_images_to_score(folder, f"a quality column (high or low) in {source.name}")
    frame = pd.DataFrame(
        {
            "image_id": table["image_id"],
            "path": [str(folder / name) for name in table["image"]],
            "split": table["split"],
            "patient_id": table["patient"],
            **{column: table[column] for column in label_columns},
            "line": table["line"],
        }
    )
    frame = check_images(frame, check, source, workers)
    frame = carve_validation(frame, val_share, seed, source, label_columns, name)
    if "quality" in table.columns:
        low = pd.Series((table["quality"] == "low").to_numpy(), index=frame.index)
    else:
        frame, low = _scored_quality(frame, low_quality_share, source, workers)
    lesion = frame[table_format.GRADE] > 0 if task == "grading" else frame[label_columns].any(axis=1)
    frame = _finish(frame, label_columns, low, lesion)
    meta = {"format": "table", "task": task, "label_columns": label_columns, "num_classes": classes}
    return frame, {**meta, "quality_source": LABELLED if "quality" in table.columns else quality.SOURCE}


def require_fundus_quality(modality: str, source: Path, name: str) -> None:
    """A fundus table must label its images' quality: the no-reference score is a chest radiograph score
    (:mod:`comcl.index.quality`), which measures noise, blur and exposure of a film, not whether a photograph
    shows the retina well enough to grade (tried on 8 EyePACS photographs, it agreed with EyeQ's labels on 3)."""
    if modality == "fundus":
        raise DataError(
            f"dataset {name}: the label file has no quality column, and a fundus table needs one: the quality score "
            "that stands in for missing labels is a chest radiograph score, which does not measure fundus photographs",
            path=source,
            line=1,
            hint=f"add a column quality to {source.name} with each photograph's quality: EyeQ's Good, Usable or Reject "
            "(or 0, 1, 2; Good is high quality, Usable and Reject low), or high / low",
        )


def drop_boxed_test_images(frame: pd.DataFrame, boxes: pd.DataFrame, source: Path) -> tuple[pd.DataFrame, int]:
    """The index without the test images that NIH's box list covers, and how many those were.

    The box list lies almost wholly in the official test list, and its boxes train the chest lesion
    detector: those images leave the classification task, so that the detector, and through it the
    patch levels and pretraining, learn nothing from the labels of a test image. ``source`` is the
    test list, named when no test image would be left.
    """
    boxed = (frame["split"] == "test") & frame["image_id"].isin(boxes["image"].str.replace(r"\.png$", "", regex=True))
    if boxed.sum() == (frame["split"] == "test").sum():
        raise DataError(
            f"all {int(boxed.sum())} test images are in the box list, which trains the detector: no test image is left",
            path=source,
            hint="the test split needs images without lesion boxes: use the official split lists and box list of one release",
        )
    log.info("%d test images are in the box list: they train the lesion detector and leave the test split", int(boxed.sum()))
    return frame[~boxed].reset_index(drop=True), int(boxed.sum())


def _quality_from_csv(path: Path, frame: pd.DataFrame) -> pd.Series:
    """A user's quality labels: columns ``Image Index`` and ``quality`` (``high``/``low``, or EyeQ's
    0 Good / 1 Usable / 2 Reject)."""
    table = read_csv_checked(path, dtype=str, keep_default_na=False)
    check_columns(table, ("Image Index", "quality"), path, expected_header="Image Index,quality")
    table["line"] = table.index + 2
    names = {"high": False, "low": True, "0": False, "1": True, "2": True}
    bad = ~table["quality"].str.strip().str.lower().isin(names)
    if bad.any():
        row = table[bad].iloc[0]
        raise DataError(f"unknown quality {row['quality']!r}", path=path, line=int(row["line"]), hint="use high/low or 0/1/2")
    low = dict(
        zip(
            table["Image Index"].str.replace(r"\.png$", "", regex=True),
            table["quality"].str.strip().str.lower().map(names),
            strict=True,
        )
    )
    missing = frame.loc[~frame["image_id"].isin(low), "image_id"]
    if not missing.empty:
        raise DataError(
            f"{len(missing)} images have no quality label, e.g. {missing.head(3).tolist()}",
            path=path,
            hint="add a row for every image of Data_Entry, or leave quality_csv empty to use the quality score",
        )
    return frame["image_id"].map(low).astype(bool)


def summarize(frame: pd.DataFrame, meta: Mapping[str, Any]) -> dict[str, Any]:
    """Counts per split and level, and the low-quality share, for people and for later checks."""
    summary: dict[str, Any] = {**meta, "images": len(frame), "splits": {}}
    for split in SPLITS:
        part = frame[frame["split"] == split]
        if part.empty:
            continue
        counts = part["level"].value_counts()
        summary["splits"][split] = {
            "images": len(part),
            "patients": int(part["patient_id"].nunique()),
            "levels": {level: int(counts.get(level, 0)) for level in LEVELS},
            "low_quality_share": round(float((part["quality"] == "low").mean()), 4),
            "lesion_share": round(float(part["lesion"].mean()), 4),
            "labels": _label_counts(part, meta),
        }
    return summary


def _label_counts(part: pd.DataFrame, meta: Mapping[str, Any]) -> dict[str, int]:
    if meta["task"] == "grading":
        column = meta["label_columns"][0]
        counts = part[column].value_counts()
        return {str(k): int(counts.get(k, 0)) for k in range(meta["num_classes"])}
    return {name: int(part[name].sum()) for name in meta["label_columns"]}


# Each takes the root, its format's keys of the dataset's section, and the keyword arguments that build_index passes.
INDEXERS: dict[str, Callable[..., tuple[pd.DataFrame, dict[str, Any]]]] = {
    "eyeq": index_eyeq,
    "chestxray14": index_chestxray14,
    "table": index_table,
}


def build_index(
    dataset: Mapping[str, Any], check: str, workers: int, val_share: float, seed: int, name: str | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Index one configured dataset (its config section: ``format``, ``root`` and the format's keys),
    ``val_share`` of its training patients in the validation split (drawn with ``seed``). ``name``, the
    dataset's name in the configuration (default: its root folder's), is what its refusals call it."""
    options = dict(dataset)
    form = options.pop("format")
    if form not in INDEXERS:
        raise ValueError(f"unknown dataset format {form!r}; known: {sorted(INDEXERS)}")
    root = Path(options.pop("root"))
    modality = options["modality"] if form == "table" else options.pop("modality")  # a table's decides its quality
    name = name or root.name
    frame, meta = INDEXERS[form](root, check=check, workers=workers, val_share=val_share, seed=seed, name=name, **options)
    return frame, {**meta, "modality": modality, "val_share": val_share, "val_seed": seed}


def run_index(
    name: str,
    dataset: Mapping[str, Any],
    check: str,
    workers: int,
    val_share: float,
    seed: int,
    table: str | Path,
    summary: str | Path,
) -> None:
    """The ``index`` rule: the Parquet index and its JSON summary."""
    frame, meta = build_index(dataset, check, workers, val_share, seed, name)
    meta = {"dataset": name, "proportion": "original", **meta}
    write_table(table, frame, meta)
    write_json(summary, summarize(frame, meta))
    splits = {split: int(count) for split, count in frame["split"].value_counts().items()}
    log.info("indexed %d %s images: %s, levels %s", len(frame), name, splits, dict(frame["level"].value_counts()))
