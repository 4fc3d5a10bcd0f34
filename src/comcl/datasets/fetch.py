"""The fetch stage: a data source completed (downloads, archives) and checked before anything reads it.

Downloads go through :func:`comcl.download.download` (resumed, retried, tried on mirrors, verified:
EyeQ's published MD5s, and for NIH files, which have none, a SHA-256 manifest ``checksums.json`` in
the source's root). A file's SHA-256 is recorded there once it proved good: a label file when it is
downloaded, an archive only once it extracted completely, so that a broken download is never made
the truth that the right file is then refused against. Archives are extracted into the configured
image folders and, unless ``keep_archives``, deleted afterwards; a ``<archive>.extracted`` marker
beside them records that an archive is done, so a rerun neither downloads nor extracts it again.

Then the source is checked as a whole: every labelled image present (the error lists the label
rows that lack one), images without labels counted (EyeQ labels only a subset of EyePACS), the IDRiD
tree's images and masks counted per class. The summary is what the index and the detector read after.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from comcl.archives import extract
from comcl.datasets import chestxray14 as nih
from comcl.datasets import idrid, table_format
from comcl.datasets.eyeq import read_labels
from comcl.download import download, record_checksum
from comcl.errors import DataError
from comcl.io import write_json
from comcl.sources import EYEPACS_RULES, IDRID_ARCHIVE, NIH_PAGE, describe, has_files, needs, resolve

log = logging.getLogger(__name__)
MANIFEST = "checksums.json"
ARCHIVES = "archives"
IDRID_LESIONS = ("MA", "HE", "EX", "SE")
_SHOWN = 10


class KaggleClient(Protocol):
    """What the fetch stage uses of the official client (``kaggle.api.kaggle_api_extended.KaggleApi``)."""

    def competition_download_file(
        self,
        competition: str,
        file_name: str,
        path: str | None = None,
        force: bool = False,
        quiet: bool = False,
        unzip: bool = False,
    ) -> None: ...


def kaggle_client() -> KaggleClient:
    """The official Kaggle client, signed in with the user's token (kaggle.json or KAGGLE_USERNAME/KAGGLE_KEY)."""
    from kaggle.api.kaggle_api_extended import KaggleApi

    api = KaggleApi()
    api.authenticate()
    return api


def fetch_source(
    name: str, source: Mapping[str, Any], summary: str | Path, kaggle: Callable[[], KaggleClient] = kaggle_client
) -> dict[str, Any]:
    """Provide what ``source`` lacks and can be fetched, check it, and write its summary.

    Pieces that need a person (an account, a registration) are all listed before any download starts,
    so that one run says everything there is to do.
    """
    manual = [need for need in needs(source) if not need.automatic]
    if manual:
        raise DataError(
            f"the data of {name} are incomplete; provide:\n{describe({name: manual})}",
            path=source["root"],
            hint="do the steps above and run again (the README's 'Real data' section has the details)",
        )
    fetchers = {"eyeq": _eyeq, "chestxray14": _chestxray14, "table": _table, "idrid": _idrid, "coco": _coco}
    result = {"name": name, "format": source["format"], "root": str(source["root"]), **fetchers[source["format"]](source, kaggle)}
    write_json(summary, result)
    return result


def _extracted(archive: Path) -> Path:
    return archive.with_name(archive.name + ".extracted")


def _unpack(parts: Sequence[Path], destination: Path, keep: bool, manifest: Path | None = None) -> None:
    """Extract one archive (all its parts) into ``destination``, dropping its top folder; then record it and mark it done."""
    files = extract(parts, destination, strip_components=1)
    if manifest is not None:
        for part in parts:
            record_checksum(manifest, part)
    write_json(_extracted(parts[0]), {"files": len(files), "destination": str(destination)})
    if not keep:
        for part in parts:
            part.unlink()


def _listing(missing: pd.DataFrame, name_column: str) -> str:
    shown = "\n".join(
        f"    line {line}: {image}" for line, image in zip(missing["line"][:_SHOWN], missing[name_column][:_SHOWN], strict=True)
    )
    return shown + (f"\n    ... and {len(missing) - _SHOWN} more" if len(missing) > _SHOWN else "")


def _match(labels: pd.DataFrame, name_column: str, folder: Path, label_file: Path, provide: str) -> dict[str, Any]:
    """Labelled images against the folder's files: rows without an image stop the stage; images without a row are counted."""
    present = {entry.name for entry in os.scandir(folder) if entry.is_file()} if folder.is_dir() else set()
    missing = labels[~labels[name_column].isin(present)]
    if len(missing):
        raise DataError(
            f"{len(missing)} of {len(labels)} labelled images are not in {folder}:\n{_listing(missing, name_column)}",
            path=label_file,
            line=int(missing["line"].iloc[0]),
            hint=provide,
        )
    unlabelled = sorted(present - set(labels[name_column]))
    if unlabelled:
        log.info("%d images in %s have no label row (e.g. %s): they are not used", len(unlabelled), folder, unlabelled[0])
    return {
        "folder": str(folder),
        "labelled": len(labels),
        "unlabelled": len(unlabelled),
        "unlabelled_examples": unlabelled[:_SHOWN],
    }


def _eyeq(source: Mapping[str, Any], kaggle: Callable[[], KaggleClient]) -> dict[str, Any]:
    """Label files first (small, and an MD5 mismatch should stop the stage before 88 GB of images), then images."""
    root, spec = Path(source["root"]), source.get("download") or {}
    label_files = {split: resolve(root, name) for split, name in source["labels"].items()}
    for split, path in label_files.items():
        label_spec = (spec.get("labels") or {}).get(split)
        if label_spec:
            download(label_spec["urls"], path, md5=label_spec.get("md5"), manifest=root / MANIFEST)
            record_checksum(root / MANIFEST, path)
    folders = {split: resolve(root, name) for split, name in source["images"].items()}
    client = None
    for split, folder in folders.items():
        if not has_files(folder):
            client = client or kaggle()
            parts = _kaggle_download(client, spec["kaggle"]["competition"], spec["kaggle"]["files"][split], root / ARCHIVES)
            if parts:
                _unpack(parts, folder, spec["keep_archives"])
    result: dict[str, Any] = {"labels": {}, "images": {}}
    for split, path in label_files.items():
        labels = read_labels(path)
        provide = f"put the EyePACS {split} JPEGs there (all of them), or remove the rows of images you do not have"
        result["labels"][split] = {"file": str(path), "rows": len(labels)}
        result["images"][split] = _match(labels, "image", folders[split], path, provide)
    return result


def _kaggle_download(client: KaggleClient, competition: str, files: Sequence[str], folder: Path) -> list[Path]:
    """The competition's archive parts, each fetched into a scratch folder and moved into place when complete."""
    folder.mkdir(parents=True, exist_ok=True)
    if _extracted(folder / files[0]).exists():
        return []
    parts = []
    for file_name in files:
        target = folder / file_name
        if not target.exists():
            log.info("downloading %s from Kaggle (%s)", file_name, competition)
            with tempfile.TemporaryDirectory(dir=folder, prefix=".kaggle-") as scratch:
                try:
                    client.competition_download_file(competition, file_name, path=scratch, quiet=False, unzip=True)
                except Exception as error:  # the client's own exceptions (HTTP, auth) have no common base
                    raise DataError(
                        f"the Kaggle client could not download {file_name} of {competition}: {error}",
                        path=folder,
                        hint=f"accept the competition's rules at {EYEPACS_RULES} with the account of your token, check the "
                        "token (~/.kaggle/kaggle.json or KAGGLE_USERNAME/KAGGLE_KEY), and run again",
                    ) from error
                got = Path(scratch) / file_name
                if not got.is_file():
                    raise DataError(
                        f"the Kaggle client gave no file {file_name} for {competition}",
                        path=folder,
                        hint=f"check that you accepted the competition's rules on kaggle.com and that {file_name} is one of its files",
                    )
                os.replace(got, target)
        parts.append(target)
    return parts


def _chestxray14(source: Mapping[str, Any], kaggle: Callable[[], KaggleClient]) -> dict[str, Any]:
    root, spec = Path(source["root"]), source.get("download") or {}
    manifest = root / MANIFEST
    urls = spec.get("files") or {}
    for file_name in [source["data_entry"], source["bbox_list"], *source["split_lists"].values()]:
        path = resolve(root, file_name)
        if path.name in urls:
            download(urls[path.name], path, manifest=manifest)
            record_checksum(manifest, path)
    entry_file = resolve(root, source["data_entry"])
    entry = nih.read_data_entry(entry_file)
    images = resolve(root, source["images"])
    archives = spec.get("archives") or []
    present = set(os.listdir(images)) if images.is_dir() else set()
    if archives and not entry["Image Index"].isin(present).all():
        for archive in archives:
            target = root / ARCHIVES / archive["name"]
            if _extracted(target).exists():
                continue
            download(archive["urls"], target, manifest=manifest)
            _unpack([target], images, spec["keep_archives"], manifest)
    provide = f"extract all 12 image archives of {NIH_PAGE} into {images}, or remove the rows of images you do not have"
    return {
        "data_entry": {"file": str(entry_file), "rows": len(entry)},
        "images": _match(entry, "Image Index", images, entry_file, provide),
    }


def _table(source: Mapping[str, Any], kaggle: Callable[[], KaggleClient]) -> dict[str, Any]:
    """A dataset of one's own has nothing to download: its label file is read and every image it names must be there."""
    root = Path(source["root"])
    label_file = resolve(root, source["labels"])
    labels, classes = table_format.read_labels(label_file, source["task"], source.get("findings"), source.get("num_classes"))
    missing = labels[[not (root / name).is_file() for name in labels["image"]]]
    if len(missing):
        raise DataError(
            f"{len(missing)} of {len(labels)} labelled images are not under {root}:\n{_listing(missing, 'image')}",
            path=label_file,
            line=int(missing["line"].iloc[0]),
            hint="the image column holds paths relative to the dataset's root: put the images there, or remove their rows",
        )
    inside = root.resolve()
    escaping = labels[[not (root / name).resolve().is_relative_to(inside) for name in labels["image"]]]
    if len(escaping) and not source["links_outside_root"]:
        raise DataError(
            f"{len(escaping)} of {len(labels)} labelled images are links to files outside {root}:\n{_listing(escaping, 'image')}",
            path=label_file,
            line=int(escaping["line"].iloc[0]),
            hint="copy the files under the root (or link the root folder itself), or set links_outside_root: true in the dataset",
        )
    splits = {split: int(count) for split, count in labels["split"].value_counts().items()}
    return {"labels": {"file": str(label_file), "rows": len(labels), "classes": classes, "splits": splits}}


def _coco(source: Mapping[str, Any], kaggle: Callable[[], KaggleClient]) -> dict[str, Any]:
    """COCO files come from one's own labelling tool: nothing to download (:func:`needs` has checked they are there);
    the detector's annotation stage reads and checks them."""
    return {split: str(resolve(source["root"], source[split])) for split in ("train", "test")}


def _idrid(source: Mapping[str, Any], kaggle: Callable[[], KaggleClient]) -> dict[str, Any]:
    root = Path(source["root"])
    if not (root / idrid.SEGMENTATION_DIR).is_dir():
        archive = resolve(root, source.get("archive") or IDRID_ARCHIVE)
        log.info("extracting %s", archive)
        extract([archive], root)
    return check_idrid(root, source.get("expected_images") or {})


_IDRID_IMAGE = re.compile(r"^IDRiD_(\d+)\.jpg$")
_IDRID_MASK = re.compile(r"^IDRiD_(\d+)_([A-Z]+)\.tif$")


def check_idrid(root: str | Path, expected: Mapping[str, int]) -> dict[str, Any]:
    """Images and lesion masks per split of an IDRiD ``A. Segmentation`` tree; every problem is listed at once.

    A lesion kind may have no mask for some images, or none in a split (the release has soft-exudate
    masks for about half of its images), but every kind needs masks somewhere for the detector to
    learn it, and every mask must belong to an image.
    """
    root = Path(root)
    problems: list[str] = []
    result: dict[str, Any] = {}
    for split in idrid.SPLIT_DIRS:
        folder = idrid.image_path(root, split, 1).parent
        numbers = sorted(int(m.group(1)) for m in map(_IDRID_IMAGE.match, os.listdir(folder) if folder.is_dir() else []) if m)
        if not numbers:
            problems.append(f"{folder}: no IDRiD_NN.jpg images")
        elif split in expected and len(numbers) != expected[split]:
            problems.append(f"{folder}: {len(numbers)} images, the release has {expected[split]}")
        masks: dict[str, int] = {}
        with_lesions: set[int] = set()
        for kind in idrid.MASK_DIRS:
            mask_folder = idrid.mask_path(root, split, kind, 1).parent
            names = os.listdir(mask_folder) if mask_folder.is_dir() else []
            found = {int(m.group(1)) for m in map(_IDRID_MASK.match, names) if m and m.group(2) == kind}
            orphans = sorted(found - set(numbers))
            if orphans:
                problems.append(f"{mask_folder}: masks of images that are not there: {', '.join(map(idrid.image_id, orphans))}")
            masks[kind] = len(found)
            if kind in IDRID_LESIONS:
                with_lesions |= found
        result[split] = {
            "images": len(numbers),
            "masks": masks,
            "images_without_lesion_masks": [idrid.image_id(n) for n in numbers if n not in with_lesions],
        }
    for kind in IDRID_LESIONS:
        if not any(result[split]["masks"][kind] for split in result):
            folders = " and ".join(str(idrid.mask_path(root, split, kind, 1).parent) for split in idrid.SPLIT_DIRS)
            problems.append(f"no {kind} masks in {folders}")
    if problems:
        raise DataError(
            "the IDRiD tree is incomplete:\n" + "\n".join(f"    {problem}" for problem in problems),
            path=root / idrid.SEGMENTATION_DIR,
            hint=f"extract '{IDRID_ARCHIVE}' completely into {root} (delete the partial folder first)",
        )
    return result
