"""How long Snakemake takes to plan the paper configuration, by the number of images in the datasets.

The workflow has no per-image jobs: a dataset of any size is the same jobs (per dataset 13
pretrainings, 66 fine-tunings, ...), so the time of ``snakemake -n`` must not grow with the data.
This writes an EyeQ-format and a ChestX-ray14-format dataset of ``--images`` label rows each (the
image files are empty: planning reads no pixels), and an IDRiD tree, points config/paper.yaml at
them, and times dry runs; then the same at ``--baseline`` images, in the same run, for the ratio.

Run from the repository root::

    .venv/bin/python benchmarks/dag_planning.py
    .venv/bin/python benchmarks/dag_planning.py --images 100000 --repeats 5
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml
from cli import positive_int

from comcl.datasets import chestxray14 as nih
from comcl.datasets import eyeq, idrid

REPO = Path(__file__).resolve().parent.parent


def write_eyeq(root: Path, images: int) -> None:
    for split, count in (("train", images // 2), ("test", images - images // 2)):
        names = [f"{number}_{eye}.jpeg" for number in range(count // 2 + 1) for eye in ("left", "right")][:count]
        eyeq.write_labels(
            root / eyeq.LABEL_FILES[split],
            names,
            [number % 3 for number in range(count)],
            [number % 5 for number in range(count)],
        )
        (root / split).mkdir(parents=True)
        for name in names:
            (root / split / name).touch()


def write_chest(root: Path, images: int) -> None:
    names = [f"{number // 3:08d}_{number % 3:03d}.png" for number in range(images)]
    frame = pd.DataFrame(
        {
            "Image Index": names,
            "Finding Labels": "No Finding",
            "Follow-up #": [n % 3 for n in range(images)],
            "Patient ID": [n // 3 for n in range(images)],
            "Patient Age": 50,
            "Patient Gender": "F",
            "View Position": "PA",
            "OriginalImage Width": 1024,
            "OriginalImage Height": 1024,
            "OriginalImagePixelSpacing x": 0.14,
            "OriginalImagePixelSpacing y": 0.14,
        }
    )
    root.mkdir(parents=True)
    nih.write_data_entry(root / "Data_Entry_2017_v2020.csv", frame)
    nih.write_bbox_list(root / "BBox_List_2017.csv", [(names[0], "Mass", 1.0, 1.0, 10.0, 10.0)])
    cut = images * 3 // 4 // 3 * 3  # patient-wise: whole patients on each side
    nih.write_split_list(root / "train_val_list.txt", names[:cut])
    nih.write_split_list(root / "test_list.txt", names[cut:])
    (root / "images").mkdir()
    for name in names:
        (root / "images" / name).touch()


def plan(folder: Path, images: int, repeats: int) -> tuple[list[float], int]:
    """Seconds of each dry run, and the number of jobs planned."""
    write_eyeq(folder / "eyeq", images)
    write_chest(folder / "chestxray14", images)
    (folder / "idrid" / idrid.SEGMENTATION_DIR).mkdir(parents=True)
    roots = {
        "datasets": {"eyeq": {"root": str(folder / "eyeq")}, "chestxray14": {"root": str(folder / "chestxray14")}},
        "detector": {"annotations": {"eyeq": {"format": "idrid", "root": str(folder / "idrid")}}},
    }
    (folder / "roots.yaml").write_text(yaml.safe_dump(roots))
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(folder),
        "-n",
        "--quiet",
        "rules",
        "--configfile",
        str(REPO / "config/paper.yaml"),
        str(folder / "roots.yaml"),
    ]
    times, jobs = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - start)
        jobs = sum(int(count) for count in re.findall(r"^\w+\s+(\d+)$", result.stdout.split("total")[0], flags=re.MULTILINE))
    return times, jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=positive_int, default=30_000, help="label rows per dataset (default 30,000)")
    parser.add_argument("--baseline", type=positive_int, default=100, help="label rows per dataset of the baseline (default 100)")
    parser.add_argument("--repeats", type=positive_int, default=3, help="dry runs per size; the median is reported (default 3)")
    args = parser.parse_args()
    rows = {}
    for images in (args.baseline, args.images):
        with tempfile.TemporaryDirectory(prefix="dag-planning-") as folder:
            rows[images] = plan(Path(folder), images, args.repeats)
    print(f"{'images per dataset':>20} {'jobs':>6} {'median s':>9} {'runs (s)':>24}")
    for images, (times, jobs) in rows.items():
        print(f"{images:>20,} {jobs:>6} {statistics.median(times):>9.2f} {' '.join(f'{t:.2f}' for t in times):>24}")
    ratio = statistics.median(rows[args.images][0]) / statistics.median(rows[args.baseline][0])
    print(
        f"\n{args.images:,} images take {ratio:.2f} x the planning time of {args.baseline:,}; "
        f"jobs: {rows[args.images][1]} vs {rows[args.baseline][1]} (no per-image jobs)"
    )


if __name__ == "__main__":
    main()
