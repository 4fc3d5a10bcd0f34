"""The degradation stage: raise a dataset's low-quality share to a target proportion.

Per split (train and val, and test with ``degrade_test``), high-quality images are taken in one
seeded random order and degraded until exactly ``round(target * n)`` images of the split are low
quality: the validation split is degraded as the training split is, so that the model is selected
on data like those it trains on. The order and each image's degradation depend only on the seed
and the image id, not on the target: the images degraded for 70 % are also degraded, in the same
way, for 100 %, so proportions differ only by the images they add. Degraded images become low
quality (their level moves from L to L~ or from H to H~) and keep their disease labels; images left
as they are keep pointing at their original files.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from comcl.degrade.chest import degrade_chest, random_chest_kinds
from comcl.degrade.fundus import FUNDUS_DEGRADATION_TYPES, degrade_fundus
from comcl.errors import DataError
from comcl.fov import estimate_fov_mask
from comcl.index.build import assign_levels, summarize
from comcl.io import atomic_directory, read_table, save_image, write_json, write_table
from comcl.parallel import image_seed, parallel_map

log = logging.getLogger(__name__)


def proportion_name(target: float) -> str:
    """The ``{proportion}`` wildcard of a target share: 0.7 -> ``lq70``."""
    return f"lq{round(target * 100)}"


def select(frame: pd.DataFrame, target: float, splits: Iterable[str], seed: int) -> pd.Index:
    """The rows to degrade so that each of ``splits`` is ``target`` low quality, to one image.

    Any target in (0, 1] can be reached: every high-quality image can be degraded.
    """
    if not 0 < target <= 1:
        raise ValueError(f"a target low-quality share must lie in (0, 1], got {target}")
    chosen: list[Any] = []
    for split in splits:
        part = frame[frame["split"] == split]
        wanted = round(target * len(part)) - int((part["quality"] == "low").sum())
        if wanted <= 0:
            share = (part["quality"] == "low").mean()
            log.info(
                "%s split is already %.1f %% low quality (target %.1f %%): nothing to degrade", split, 100 * share, 100 * target
            )
            continue
        high = part[part["quality"] == "high"]
        order = sorted(high.index, key=lambda row: image_seed(seed, high.at[row, "image_id"]).generate_state(1)[0])
        chosen.extend(order[:wanted])
    return pd.Index(chosen)


def _degrade_one(job: tuple[str, str, str], modality: str, seed: int) -> dict[str, Any] | str:
    """Degrade one image file into ``target``; returns the parameters, or why it failed."""
    image_id, source, target = job
    rng = np.random.default_rng(image_seed(seed, image_id))
    try:
        with Image.open(source) as opened:
            image = np.asarray(opened.convert("RGB" if modality == "fundus" else "L"))
    except (FileNotFoundError, UnidentifiedImageError, OSError) as error:
        return f"{source}: {error}"
    if modality == "fundus":
        kinds = FUNDUS_DEGRADATION_TYPES[rng.integers(len(FUNDUS_DEGRADATION_TYPES))]
        degraded, params = degrade_fundus(image, estimate_fov_mask(image), kinds, rng)
    else:
        degraded, params = degrade_chest(image, random_chest_kinds(rng), rng)
    save_image(target, degraded)
    return params


def degrade_index(
    frame: pd.DataFrame,
    meta: dict[str, Any],
    target: float,
    degrade_test: bool,
    seed: int,
    images: Path,
    source: Path,
    workers: int,
) -> pd.DataFrame:
    """The index at ``target``, degraded images written under ``images``."""
    if meta["modality"] not in ("fundus", "chest"):
        raise ValueError(f"no degradation model for modality {meta['modality']!r}")
    splits = ["train", "val", "test"] if degrade_test else ["train", "val"]
    rows = select(frame, target, splits, seed)
    frame = frame.copy()
    jobs = [
        (
            frame.at[row, "image_id"],
            frame.at[row, "path"],
            str(images / (frame.at[row, "image_id"] + Path(frame.at[row, "path"]).suffix)),
        )
        for row in rows
    ]
    results = parallel_map(
        functools.partial(_degrade_one, modality=meta["modality"], seed=seed), jobs, workers, desc=f"degrading to {target:.0%}"
    )
    failed = [result for result in results if isinstance(result, str)]
    if failed:
        raise DataError(
            f"{len(failed)} images cannot be read, e.g. {failed[0]}",
            path=source,
            hint="re-run the index stage (it checks the images) after restoring or removing them",
        )
    frame.loc[rows, "path"] = [target_path for _, _, target_path in jobs]
    frame.loc[rows, "quality"] = "low"
    frame.loc[rows, "degraded"] = True
    frame.loc[rows, "degradation"] = [json.dumps(params) for params in results]
    frame["level"] = assign_levels(frame["lesion"], frame["quality"] == "low")
    return frame


def run_degrade(
    index: str | Path,
    target: float,
    degrade_test: bool,
    seed: int,
    table: str | Path,
    images: str | Path,
    summary: str | Path,
    workers: int,
) -> None:
    """The ``degrade`` rule: degraded images, the index at the target proportion and its summary."""
    frame, meta = read_table(index)
    meta = {**meta, "proportion": proportion_name(target), "target_low_quality_share": target, "degrade_test": degrade_test}
    with atomic_directory(images) as tmp:
        degraded = degrade_index(frame, meta, target, degrade_test, seed, Path(tmp), Path(index), workers)
        degraded["path"] = degraded["path"].str.replace(str(tmp), str(images), regex=False)
    write_table(table, degraded, meta)
    write_json(summary, summarize(degraded, meta))
    log.info(
        "degraded %d images of %s to reach %.0f %% low quality",
        int(degraded["degraded"].sum() - frame["degraded"].sum()),
        meta.get("dataset"),
        100 * target,
    )
