"""Entry point of the ``synthesize`` rule: one named dataset, written atomically, and its contact sheet."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from comcl.datasets.eyeq import QUALITY_NAMES
from comcl.io import atomic_directory
from comcl.synth import chestxray14, eyeq, idrid
from comcl.synth.contact_sheet import SheetRow, draw_contact_sheet
from comcl.synth.grading import DR_GRADES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Generator:
    spec: type
    generate: Callable[..., pd.DataFrame]
    sheet: Callable[[pd.DataFrame], tuple[list[SheetRow], str]]
    title: str


def _eyeq_sheet(truth: pd.DataFrame) -> tuple[list[SheetRow], str]:
    truth["caption"] = [f"{image}\n{QUALITY_NAMES[q]}" for image, q in zip(truth["image"], truth["quality"], strict=True)]
    return [SheetRow(f"grade {g}", truth["DR_grade"] == g) for g in DR_GRADES if (truth["DR_grade"] == g).any()], "caption"


def _idrid_sheet(truth: pd.DataFrame) -> tuple[list[SheetRow], str]:
    return [SheetRow(split, truth["split"] == split) for split in ("train", "test")], "image"


def _chest_sheet(truth: pd.DataFrame) -> tuple[list[SheetRow], str]:
    findings = truth["lesions"].map(lambda lesions: {lesion[0] for lesion in lesions})
    truth["caption"] = [
        f"{image}\n{degradation['type'] if degradation else 'not degraded'}"
        for image, degradation in zip(truth["image"], truth["degradation"], strict=True)
    ]
    names = sorted({name for found in findings for name in found})
    rows = [SheetRow("No Finding", findings.map(len) == 0)] + [
        SheetRow(name, findings.map(lambda f, n=name: n in f)) for name in names
    ]
    return [row for row in rows if row.members.any()], "caption"


GENERATORS: dict[str, _Generator] = {
    "eyeq": _Generator(eyeq.EyeQSpec, eyeq.generate, _eyeq_sheet, "Synthetic EyeQ: rows by DR grade, captions give quality"),
    "idrid": _Generator(idrid.IDRiDSpec, idrid.generate, _idrid_sheet, "Synthetic IDRiD: lesion boxes from the masks"),
    "chestxray14": _Generator(
        chestxray14.ChestSpec, chestxray14.generate, _chest_sheet, "Synthetic ChestX-ray14: rows by finding"
    ),
}


def synthesize(
    name: str, root: str | Path, contact_sheet: str | Path, params: Mapping[str, Any], seed: int, workers: int
) -> None:
    """Generate dataset ``name`` into ``root`` (replaced whole, only once complete)."""
    if name not in GENERATORS:
        raise ValueError(f"no synthetic generator for {name!r}; choose from {sorted(GENERATORS)}")
    generator = GENERATORS[name]
    spec = generator.spec(**params)
    root = Path(root)
    with atomic_directory(root) as tmp:
        truth = generator.generate(tmp, spec, seed, workers)
    log.info("wrote %d synthetic %s images to %s", len(truth), name, root)
    rows, caption = generator.sheet(truth)
    draw_contact_sheet(contact_sheet, root, truth, rows, caption, generator.title, seed=seed)
