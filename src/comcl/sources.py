"""What a data source must hold before the workflow can read it, and the step that provides each piece.

A source is a diagnosis dataset (EyeQ or ChestX-ray14 format, or a label table of your own) or a
detector's lesion source (an IDRiD tree, or a labelling tool's COCO export). Some pieces the fetch rule
provides itself (downloads from configured URLs, the Kaggle client, an archive to extract); the others
need a person (an account, a registration, a file only they can write). The check runs twice: when the
workflow loads, on file existence only, so that ``snakemake -n`` names every missing piece of every
source at once; and in the fetch rule, which provides what it can and stops on the rest with the same
list. Standard library only: the workflow imports this module while it parses.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EYEQ_REPOSITORY = "https://github.com/HzFu/EyeQ/tree/master/data"
EYEPACS_RULES = "https://www.kaggle.com/competitions/diabetic-retinopathy-detection/rules"
NIH_PAGE = "https://nihcc.app.box.com/v/ChestXray-NIHCC"
IDRID_PAGE = "https://ieee-dataport.org/open-access/indian-diabetic-retinopathy-image-dataset-idrid"
IDRID_ARCHIVE = "A. Segmentation.zip"
SEGMENTATION_DIR = "A. Segmentation"
COCO_EXPORT = (
    "export COCO JSON from your labelling tool (CVAT: Actions > Export dataset > COCO 1.0; Label Studio: "
    "Export > COCO; Roboflow: Export > COCO JSON)"
)


@dataclass(frozen=True)
class Need:
    """A missing piece of a source: ``step`` says how it gets there; ``automatic`` if the fetch rule takes it."""

    what: str
    path: Path
    step: str
    automatic: bool


def resolve(root: str | Path, name: str | Path) -> Path:
    """A file or folder named in a source's configuration: relative to its root, absolute as it is."""
    return Path(name) if Path(name).is_absolute() else Path(root) / name


def has_files(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    with os.scandir(folder) as entries:
        return any(True for _ in entries)


def kaggle_credentials() -> bool:
    """Whether the Kaggle client can sign in: its environment variables, or its kaggle.json."""
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return True
    folder = Path(os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")
    return (folder / "kaggle.json").is_file()


def needs(source: Mapping[str, Any]) -> list[Need]:
    """The pieces of ``source`` (a dataset section or a lesion source, as configured) that are not there."""
    check = {"eyeq": _eyeq, "chestxray14": _chestxray14, "table": _table, "idrid": _idrid, "coco": _coco}.get(source["format"])
    if check is None:
        raise ValueError(f"unknown source format {source['format']!r}")
    return check(source)


def _eyeq(source: Mapping[str, Any]) -> list[Need]:
    root, download = Path(source["root"]), source.get("download") or {}
    found = []
    for split, name in source["labels"].items():
        path = resolve(root, name)
        if path.is_file():
            continue
        spec = (download.get("labels") or {}).get(split)
        if spec:
            found.append(Need(f"EyeQ {split} labels", path, f"downloaded from {spec['urls'][0]}", True))
        else:
            found.append(Need(f"EyeQ {split} labels", path, f"download {path.name} from {EYEQ_REPOSITORY} to {path}", False))
    kaggle = download.get("kaggle")
    for split, name in source["images"].items():
        path = resolve(root, name)
        if has_files(path):
            continue
        what = f"EyePACS {split} images"
        if kaggle and kaggle_credentials():
            found.append(Need(what, path, f"downloaded from Kaggle ({kaggle['competition']}) with your credentials", True))
        else:
            found.append(Need(what, path, _eyepacs_steps(path, split, kaggle), False))
    return found


def _eyepacs_steps(path: Path, split: str, kaggle: Mapping[str, Any] | None) -> str:
    steps = [f"sign in to Kaggle and accept the competition's rules at {EYEPACS_RULES}"]
    if kaggle:
        steps.append(
            "create an API token (kaggle.com > Settings > API > Create New Token), save it as ~/.kaggle/kaggle.json "
            "(chmod 600) or set KAGGLE_USERNAME and KAGGLE_KEY, and run again: the images are then downloaded and "
            "extracted here"
        )
    parts = ", ".join(kaggle["files"][split]) if kaggle and split in kaggle.get("files", {}) else f"{split}.zip.001, ..."
    steps.append(
        f"{'or ' if kaggle else ''}download {parts} from the competition's Data page, extract them (7z x {split}.zip.001) and put the JPEGs in {path}"
    )
    return "; ".join(f"({number}) {step}" for number, step in enumerate(steps, start=1))


def _chestxray14(source: Mapping[str, Any]) -> list[Need]:
    root, download = Path(source["root"]), source.get("download") or {}
    files = download.get("files") or {}
    named = {"Data_Entry": source["data_entry"], "box list": source["bbox_list"]}
    named |= {f"{split} split list": name for split, name in source["split_lists"].items()}
    found = []
    for what, name in named.items():
        path = resolve(root, name)
        if path.is_file():
            continue
        urls = files.get(path.name)
        step = f"downloaded from {urls[0]}" if urls else f"download {path.name} from {NIH_PAGE} to {path}"
        found.append(Need(f"ChestX-ray14 {what}", path, step, bool(urls)))
    if source.get("quality_csv") and not resolve(root, source["quality_csv"]).is_file():
        path = resolve(root, source["quality_csv"])
        found.append(
            Need(
                "quality labels",
                path,
                "the quality CSV that datasets.<name>.quality_csv names: put it there, or set it to null to use the no-reference score",
                False,
            )
        )
    images = resolve(root, source["images"])
    if not has_files(images):
        archives = download.get("archives") or []
        if archives:
            found.append(
                Need(
                    "ChestX-ray14 images", images, f"the {len(archives)} configured archives, downloaded and extracted here", True
                )
            )
        else:
            found.append(
                Need(
                    "ChestX-ray14 images",
                    images,
                    f"download images_001.tar.gz ... images_012.tar.gz from {NIH_PAGE} and extract them into {images}",
                    False,
                )
            )
    return found


def _idrid(source: Mapping[str, Any]) -> list[Need]:
    root = Path(source["root"])
    tree = root / SEGMENTATION_DIR
    if tree.is_dir():
        return []
    archive = resolve(root, source.get("archive") or IDRID_ARCHIVE)
    if archive.is_file():
        return [Need("IDRiD segmentation tree", tree, f"extracted from {archive}", True)]
    step = (
        f"register and download '{IDRID_ARCHIVE}' (part A, Segmentation) from {IDRID_PAGE}; put it at {archive} "
        f"(it is extracted here) or extract it into {root}"
    )
    return [Need("IDRiD segmentation tree", tree, step, False)]


def _table(source: Mapping[str, Any]) -> list[Need]:
    """Data of your own: only its label file is checked here; the index checks every image it names."""
    labels = resolve(source["root"], source["labels"])
    if labels.is_file():
        return []
    findings = ", ".join(source.get("findings") or []) or "one 0/1 column per finding"
    columns = "grade (0, 1, ...)" if source.get("task") == "grading" else findings
    step = (
        f"write {labels.name} with the columns image (its path, relative to {source['root']}), split (train or test) "
        f"and {columns}, at {labels}"
    )
    return [Need("label table", labels, step, False)]


def _coco(source: Mapping[str, Any]) -> list[Need]:
    """Boxes drawn by people: nothing to download, only the labelling tool's export to put in place."""
    found = []
    for split in ("train", "test"):
        path = resolve(source["root"], source[split])
        if not path.is_file():
            found.append(Need(f"COCO {split} boxes", path, f"{COCO_EXPORT} for the {split} images and put it at {path}", False))
    return found


def describe(missing: Mapping[str, Sequence[Need]]) -> str:
    """The "what to provide" list of several sources (name -> its needs), for people."""
    lines = []
    for name, found in missing.items():
        for need in found:
            lines.append(f"  - {name}: {need.what} ({need.path}): {need.step}")
    return "\n".join(lines)
