"""Read throughput of the patch store (comcl.patches.store) through a torch DataLoader, the memory
of its writer, and the peak memory of the whole patch stage (comcl.patches.stage).

Measures, and prints as plain-text tables:

1. Patches per second read through ``torch.utils.data.DataLoader`` (batch size 64, 0, 1 and 2
   worker processes; every patch turned into a uint8 tensor by the same transform) of:

   * the store, ``PatchDataset`` with ``GroupedShuffleSampler`` (the intended use);
   * the store with a plain random permutation. A real store (GB) is far larger than the reader's
     cache (64 MiB by default), so there nearly every patch reads its row group; the benchmark's store
     is small enough to fit in that cache, so for this variant the cache holds one row group only;
   * (a) the same encoded bytes already in memory: a Dataset over a Python list of them, decoded by
     the same ``decode_patch``: what the store would cost with free I/O;
   * (b) the same patches as PNG files in one folder per level, read by
     ``torchvision.datasets.ImageFolder`` with its default PIL loader, turned into uint8 arrays.

   The store's ratios to (a) and (b) are checked against the targets (default >= 0.8 and >= 3,
   PASS or FAIL) for 1 and 2 workers; 0 workers is a reference. Every order is shuffled.
2. Current resident memory (``/proc/self/statm``) and peak (``ru_maxrss``) after 10 %, 50 % and
   100 % of a stream of patches written through ``PatchStoreWriter``, to show that the writer's
   memory does not grow with the number of patches.
3. Peak memory of the whole patch stage, ``comcl.patches.stage.run_patches`` with ``workers=1``, on
   an index of ``--stage-images`` images and on one four times as large, each run in a fresh process
   (multiprocessing, spawn) so that each has its own peak: the peak resident memory of that process
   (``VmHWM`` in ``/proc/self/status``; ``ru_maxrss`` cannot serve here, as Linux carries the
   parent's RSS at the fork over into the child's), its resident memory before the stage (imports
   done, torch most of it) and the difference, the patches written, images per second and the
   images that gave no patch. The peak must not grow with the number of images (they stream
   through one by one and the store's row groups are written as they fill): growth below 10 % of
   the smaller run's peak or 30 MiB, whichever is larger, is a PASS. The indexes cycle through a
   few synthetic fundus photographs (512 x 640, each as rendered and degraded; whatever ``--grey``
   says) written once as JPEG files: half of the rows lesion levels (L, L~) with up to four
   detections each (the rendered lesions' boxes, all but one above ``conf``), half healthy (H, H~).
   Stage parameters: the ``patches`` defaults of ``workflow/schemas/config.schema.yaml``, the images
   resized to its ``finetune.input_size``, with row groups of ``--row-group-mib`` (by default the schema's)
   and ``--seed``.

Patches are realistic: 128 x 128 windows cut, by comcl.patches.windows, from synthetic images
(comcl.synth): around the lesions' boxes (``expand_box``) and at random inside the field of view
(``fov_windows``), half of the images degraded (comcl.degrade) into the low-quality levels. Fundus
photographs are RGB and pass through JPEG (as EyePACS files do); ``--grey`` uses chest radiographs.
Every file (the store and all PNG files) is read once before any timing, so every variant reads
from a warm OS page cache. Each timing is the best of ``--repeats`` epochs, each with fresh worker
processes, counted from the first batch on, so that worker start-up is not timed. Thread pools are
limited to one thread per process. Linux only (``/proc/self/statm``, ``/proc/self/status``,
``ru_maxrss`` in KiB).

Run from the repository root::

    .venv/bin/python benchmarks/patch_store_read.py
    .venv/bin/python benchmarks/patch_store_read.py --grey --patches 8000
    .venv/bin/python benchmarks/patch_store_read.py --stage-images 500
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The BLAS and OpenMP thread pools read these when numpy and torch are first imported.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import cv2
import numpy as np
import pandas as pd
import torch
import torch.utils.data
from cli import judged, positive_int, schema_defaults, verdict
from torchvision.datasets import ImageFolder

from comcl.degrade.chest import degrade_chest, random_chest_kinds
from comcl.degrade.fundus import FUNDUS_DEGRADATION_TYPES, degrade_fundus
from comcl.detector.detect import DETECTION_COLUMNS
from comcl.io import save_image, write_table
from comcl.levels import LESION_LEVELS
from comcl.patches.stage import run_patches
from comcl.patches.store import GroupedShuffleSampler, PatchDataset, PatchRow, PatchStoreWriter, decode_patch, encode_patch
from comcl.patches.windows import expand_box, fov_windows
from comcl.synth.chest import CHEST_FINDINGS, render_chest
from comcl.synth.fundus import EYES, LESION_KINDS, Lesion, render_fundus

PATCHES = schema_defaults("patches")
_MIB = 1024 * 1024
_CHECKPOINTS = (0.1, 0.5, 1.0)
_SIZE = PATCHES["size"]
_INPUT_SIZE = schema_defaults("finetune")["input_size"]  # patches are cut from the images at finetune.input_size
# The synthetic photographs are the benchmark's own, smaller than real ones (EyePACS photographs are preprocessed to
# 800 px, NIH films are 1024 px) so that rendering them takes little of the run; section 3 resizes them to
# _INPUT_SIZE as the stage resizes any image.
_FUNDUS_SHAPE = (512, 640)  # height, width
_CHEST_SIDE = 640
_STAGE_FACTOR = 4  # the larger index of section 3 has this many times the images of the smaller
_STAGE_RENDERINGS = 4  # distinct photographs behind section 3's images, each as rendered and degraded
_STAGE_LEVELS = ("L", "H", "L~", "H~")  # cycled: half lesion, half healthy
_STAGE_SCORES = (0.9, 0.8, 0.7, 0.3)  # of a lesion image's detections (its first lesions): three above conf, one below
_STAGE_META = {"dataset": "bench", "proportion": "original", "format": "eyeq", "modality": "fundus", "task": "grading"}
_STAGE_GROWTH = (0.1, 30.0)  # most peak growth: this share of the smaller run's peak, or MiB if larger


@dataclass(frozen=True)
class Timing:
    label: str
    workers: int
    patches: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.patches / self.seconds


@dataclass(frozen=True)
class StageRun:
    images: int
    patches: int
    seconds: float
    store_mib: float
    before_mib: float
    peak_mib: float
    without_patch: int

    @property
    def per_second(self) -> float:
        return self.images / self.seconds


class BytesDataset(torch.utils.data.Dataset):
    """(a): the store's encoded bytes held in a Python list, decoded as the store decodes them."""

    def __init__(self, blobs: list[bytes], channels: int, transform: Callable[[np.ndarray], Any]) -> None:
        self.blobs = blobs
        self.channels = channels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.blobs)

    def __getitem__(self, i: int) -> Any:
        return self.transform(decode_patch(self.blobs[i], _SIZE, self.channels))


class ToArray:
    """ImageFolder's PIL image as the store gives it, ``(size, size, channels)`` uint8, as a tensor. Its
    default loader converts every file to RGB, so grey patches keep the first channel."""

    def __init__(self, channels: int) -> None:
        self.channels = channels

    def __call__(self, image: Any) -> torch.Tensor:
        return torch.from_numpy(np.asarray(image)[..., : self.channels].copy())


def to_tensor(patch: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(patch)


def _jpeg(image: np.ndarray) -> np.ndarray:
    """``image`` after a JPEG round trip at quality 92, as a stored EyePACS photograph."""
    _, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _cut(
    image: np.ndarray,
    mask: np.ndarray,
    boxes: Sequence[Sequence[float]],
    extra: int,
    degraded: bool,
    image_id: str,
    rng: np.random.Generator,
) -> list[PatchRow]:
    """Windows around ``boxes`` (x, y, w, h) and ``extra`` random ones inside ``mask``, as patch rows."""
    height, width = image.shape[:2]
    image = image[..., None] if image.ndim == 2 else image
    low = "~" if degraded else ""
    rows = []
    for x, y, w, h in boxes:
        box = (float(x), float(y), float(x + w), float(y + h))
        (x0, y0, x1, y1), exceeds = expand_box(box, width, height, _SIZE)
        rows.append(PatchRow(image_id, "train", "L" + low, (x0, y0, x1, y1), box, 0.9, "lesion", exceeds, image[y0:y1, x0:x1]))
    for x0, y0, x1, y1 in fov_windows(mask, extra, _SIZE, rng, 0.5):
        rows.append(PatchRow(image_id, "train", "H" + low, (x0, y0, x1, y1), None, None, None, False, image[y0:y1, x0:x1]))
    return rows


def render_patches(count: int, images: int, grey: bool, seed: int) -> list[PatchRow]:
    """``count`` patches cut from ``images`` synthetic images (fundus 512 x 640 RGB, or chest 640 x 640 grey)."""
    rng = np.random.default_rng([seed, 0])
    per_image = -(-count // images)
    rows: list[PatchRow] = []
    for number in range(images):
        degraded = number % 2 == 1
        if grey:
            findings = [CHEST_FINDINGS[number % len(CHEST_FINDINGS)]] if number % 3 else []
            rendering = render_chest(_CHEST_SIDE, findings, rng)
            image = degrade_chest(rendering.image, random_chest_kinds(rng), rng)[0] if degraded else rendering.image
            boxes, mask = [finding.box for finding in rendering.findings], rendering.body_mask
        else:
            counts = {kind: int(rng.integers(0, 4)) for kind in LESION_KINDS}
            rendering = render_fundus(*_FUNDUS_SHAPE, counts, EYES[number % 2], rng)
            image = rendering.image
            if degraded:
                kinds = FUNDUS_DEGRADATION_TYPES[int(rng.integers(len(FUNDUS_DEGRADATION_TYPES)))]
                image = degrade_fundus(image, rendering.fov_mask, kinds, rng)[0]
            image, boxes, mask = _jpeg(image), [lesion.box for lesion in rendering.lesions], rendering.fov_mask
        boxes = boxes[:per_image]
        rows += _cut(image, mask, boxes, per_image - len(boxes), degraded, f"image{number:04d}", rng)
    return [rows[i % len(rows)] for i in range(count)]


def write_png_folders(rows: Sequence[PatchRow], root: Path) -> None:
    """One PNG file (zlib level 1) per patch, in one folder per level (ImageFolder's classes)."""
    for number, row in enumerate(rows):
        folder = root / row.level
        folder.mkdir(parents=True, exist_ok=True)
        pixels = row.pixels if row.pixels.shape[2] == 1 else cv2.cvtColor(row.pixels, cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(folder / f"{number:07d}.png"), pixels, [cv2.IMWRITE_PNG_COMPRESSION, 1])


def warm_page_cache(paths: Sequence[Path]) -> int:
    """Read every file once, so that no variant pays for the first read from disk; bytes read."""
    total = 0
    for path in paths:
        total += len(path.read_bytes())
    return total


def time_loader(
    label: str,
    dataset: torch.utils.data.Dataset,
    sampler: Callable[[int], torch.utils.data.Sampler | None],
    workers: int,
    batch: int,
    repeats: int,
    seed: int,
) -> Timing:
    """Best of ``repeats`` epochs, timed from the first batch on. ``sampler(epoch)`` orders each; None
    shuffles with the DataLoader's own random permutation, seeded by ``seed`` and the epoch."""
    timings = []
    for epoch in range(repeats):
        order = sampler(epoch)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=batch,
            sampler=order,
            shuffle=order is None,
            num_workers=workers,
            generator=torch.Generator().manual_seed(1000 * seed + epoch),
        )
        batches = iter(loader)
        next(batches)  # by now the workers have started
        start = time.perf_counter()
        patches = 0
        for item in batches:
            patches += len(item[0] if isinstance(item, list) else item)  # ImageFolder gives [images, classes]
        timings.append(Timing(label, workers, patches, time.perf_counter() - start))
        del batches  # stops the workers before the next epoch starts its own
    return max(timings, key=lambda timing: timing.per_second)


def _memory() -> tuple[float, float]:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / _MIB
    with open("/proc/self/statm") as statm:
        current = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / _MIB
    return peak, current


def memory_stream(
    rows: Sequence[PatchRow], stream: int, path: Path, channels: int, row_group_bytes: int
) -> list[tuple[str, int, float, float]]:
    """Write ``stream`` patches (cycling through ``rows``, 64 per ``add`` call) and note the memory."""
    points = [("before", 0, *_memory())]
    checkpoints = {max(1, round(fraction * stream)): f"{round(100 * fraction)} %" for fraction in _CHECKPOINTS}
    with PatchStoreWriter(path, _SIZE, channels, {"benchmark": "memory stream"}, row_group_bytes) as writer:
        for start in range(0, stream, 64):
            end = min(start + 64, stream)
            writer.add([rows[i % len(rows)] for i in range(start, end)])
            for done in (done for done in checkpoints if start < done <= end):
                points.append((checkpoints[done], done, *_memory()))
    return points


def write_stage_images(folder: Path, renderings: int, seed: int) -> list[tuple[Path, Path, list[Lesion]]]:
    """``renderings`` synthetic fundus photographs (512 x 640) as JPEG files, each as rendered and degraded:
    (rendered file, degraded file, the rendered lesions)."""
    rng = np.random.default_rng([seed, 1])
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for number in range(renderings):
        counts = {kind: int(rng.integers(1, 3)) for kind in LESION_KINDS}
        rendering = render_fundus(*_FUNDUS_SHAPE, counts, EYES[number % 2], rng)
        kinds = FUNDUS_DEGRADATION_TYPES[int(rng.integers(len(FUNDUS_DEGRADATION_TYPES)))]
        degraded = degrade_fundus(rendering.image, rendering.fov_mask, kinds, rng)[0]
        paths = folder / f"fundus{number:02d}.jpg", folder / f"fundus{number:02d}_degraded.jpg"
        save_image(paths[0], rendering.image)
        save_image(paths[1], degraded)
        images.append((*paths, rendering.lesions))
    return images


def write_stage_inputs(folder: Path, images: Sequence[tuple[Path, Path, list[Lesion]]], count: int) -> tuple[Path, Path]:
    """An index of ``count`` images cycling through ``images`` (distinct ids; levels L, H, L~, H~ in turn;
    one in five in the test split) and its detections (the rendered lesions' boxes); their paths."""
    records, found = [], []
    for number in range(count):
        level = _STAGE_LEVELS[number % len(_STAGE_LEVELS)]
        rendered, degraded, lesions = images[(number // len(_STAGE_LEVELS)) % len(images)]
        image_id, split = f"bench{number:07d}", "test" if number % 5 == 4 else "train"
        records.append((image_id, str(degraded if level.endswith("~") else rendered), split, level))
        if level in LESION_LEVELS:
            for lesion, score in zip(lesions, _STAGE_SCORES):
                x, y, w, h = lesion.box
                found.append((image_id, split, level, float(x), float(y), float(x + w), float(y + h), score, lesion.kind))
    index, detections = folder / f"index_{count}.parquet", folder / f"detections_{count}.parquet"
    write_table(index, pd.DataFrame(records, columns=["image_id", "path", "split", "level"]), _STAGE_META)
    lesion_images = sum(level in LESION_LEVELS for _, _, _, level in records)
    frame = pd.DataFrame(found, columns=DETECTION_COLUMNS).astype(dict.fromkeys(("x1", "y1", "x2", "y2", "score"), np.float64))
    write_table(detections, frame, _STAGE_META | {"classes": list(LESION_KINDS), "images": lesion_images})
    return index, detections


def _status_mib() -> dict[str, float]:
    """``VmHWM`` (peak) and ``VmRSS`` (current) of this process image, MiB."""
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmHWM", "VmRSS")}


def _stage_process(index: Path, detections: Path, params: Mapping[str, Any], store: Path, summary: Path, images: int) -> StageRun:
    """Section 3 in a fresh process: the whole patch stage, and the memory of this process."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    before = _status_mib()["VmRSS"]
    start = time.perf_counter()
    result = run_patches(index, detections, params, _INPUT_SIZE, store, summary, 1)
    seconds = time.perf_counter() - start
    without = result["lesion_images_without_detection"]["count"] + result["healthy_images_without_window"]["count"]
    store_mib = store.stat().st_size / _MIB
    return StageRun(images, result["patches"], seconds, store_mib, before, _status_mib()["VmHWM"], without)


def stage_memory(folder: Path, counts: Sequence[int], params: Mapping[str, Any], seed: int) -> list[StageRun]:
    """The patch stage on an index of each of ``counts`` images, each run in a fresh spawned process."""
    images = write_stage_images(folder / "images", _STAGE_RENDERINGS, seed)
    runs = []
    for count in counts:
        index, detections = write_stage_inputs(folder, images, count)
        outputs = folder / f"patches_{count}.parquet", folder / f"summary_{count}.json"
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            runs.append(pool.submit(_stage_process, index, detections, dict(params), *outputs, count).result())
        outputs[0].unlink()
    return runs


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Read throughput of the patch store through a torch DataLoader against the same encoded bytes in memory "
            "and against PNG files read by torchvision's ImageFolder, the patch writer's memory over a long stream, "
            "and the peak memory of the whole patch stage on a small and a four times larger dataset."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--patches", type=positive_int, default=4000, help="patches in the store and in the PNG folders")
    parser.add_argument("--images", type=positive_int, default=96, help="synthetic images the patches are cut from")
    parser.add_argument("--grey", action="store_true", help="chest radiographs (grey) instead of fundus photographs (RGB)")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="DataLoader batch size")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader worker counts timed")
    parser.add_argument("--repeats", type=positive_int, default=3, help="epochs timed per variant (the best is kept)")
    parser.add_argument(
        "--row-group-mib",
        type=float,
        default=PATCHES["row_group_bytes"] / _MIB,
        help="row group size of the store, MiB of encoded pixels (patches.row_group_bytes)",
    )
    parser.add_argument("--stream", type=positive_int, default=20000, help="patches written in the memory stream")
    parser.add_argument(
        "--stage-images",
        type=positive_int,
        default=150,
        help=f"images in the smaller patch stage run (the larger has {_STAGE_FACTOR} times as many)",
    )
    parser.add_argument("--target-bytes", type=float, default=0.8, help="least store / (a) ratio")
    parser.add_argument("--target-folder", type=float, default=3.0, help="least store / (b) ratio")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random generator")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse(argv)
    wall_start = time.perf_counter()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    channels = 1 if args.grey else 3
    row_group_bytes = round(args.row_group_mib * _MIB)
    rows = render_patches(args.patches, args.images, args.grey, args.seed)

    with tempfile.TemporaryDirectory(prefix="patch_store_read.") as folder:
        root = Path(folder)
        memory = memory_stream(rows, args.stream, root / "stream.parquet", channels, row_group_bytes)
        (root / "stream.parquet").unlink()

        store_path = root / "patches.parquet"
        with PatchStoreWriter(store_path, _SIZE, channels, {"benchmark": "read"}, row_group_bytes) as writer:
            writer.add(rows)
        png_root = root / "png"
        write_png_folders(rows, png_root)
        files = [store_path, *sorted(png_root.rglob("*.png"))]
        png_bytes = warm_page_cache(files) - store_path.stat().st_size

        store = PatchDataset(store_path, transform=to_tensor)
        one_group = PatchDataset(store_path, transform=to_tensor, cache_bytes=0)
        blobs = BytesDataset([encode_patch(row.pixels) for row in rows], channels, to_tensor)
        folders = ImageFolder(str(png_root), transform=ToArray(channels))

        def grouped(epoch: int) -> torch.utils.data.Sampler:
            sampler = GroupedShuffleSampler(store, args.seed)
            sampler.set_epoch(epoch)
            return sampler

        timings: dict[tuple[str, int], Timing] = {}
        variants: list[tuple[str, torch.utils.data.Dataset, Callable[[int], Any]]] = [
            ("store, GroupedShuffleSampler", store, grouped),
            ("store, random permutation", one_group, lambda epoch: None),
            ("(a) encoded bytes in memory", blobs, lambda epoch: None),
            ("(b) ImageFolder, PNG files, PIL", folders, lambda epoch: None),
        ]
        for workers in args.workers:
            for label, dataset, sampler in variants:
                timings[label, workers] = time_loader(label, dataset, sampler, workers, args.batch_size, args.repeats, args.seed)
        store_mib = store_path.stat().st_size / _MIB
        groups = len(store.row_group_starts) - 1

        stage_params = PATCHES | {"row_group_bytes": row_group_bytes, "seed": args.seed}
        stage = stage_memory(root / "stage", [args.stage_images, _STAGE_FACTOR * args.stage_images], stage_params, args.seed)

    kind = "chest radiographs, grey" if args.grey else "fundus photographs, RGB"
    print(
        f"comcl patch store read benchmark: {args.patches} patches of {_SIZE} x {_SIZE} cut from {args.images} synthetic {kind}"
    )
    print(
        f"store {store_mib:.1f} MiB ({store_mib * _MIB / args.patches / 1000:.1f} kB/patch, {groups} row groups of "
        f"~{args.row_group_mib:g} MiB; reader cache {store.cache_bytes / _MIB:.0f} MiB per process, one row group for "
        f"the random permutation); PNG files {png_bytes / _MIB:.1f} MiB; seed {args.seed}"
    )
    print(
        f"DataLoader batch size {args.batch_size}, best of {args.repeats} epochs, timed from the first batch; "
        f"OS page cache warmed by reading every file once before timing; {os.cpu_count()} CPUs"
    )
    print()
    print("1. Read throughput, patches/s")
    print(f"  {'variant':<38} {'workers':>7} {'patches/s':>10} {'store/(a)':>22} {'store/(b)':>22}")
    for workers in args.workers:
        bytes_rate = timings["(a) encoded bytes in memory", workers].per_second
        folder_rate = timings["(b) ImageFolder, PNG files, PIL", workers].per_second
        for label, _, _ in variants:
            timing = timings[label, workers]
            ratios = ""
            if label.startswith("store"):
                pairs = (
                    (timing.per_second / bytes_rate, args.target_bytes),
                    (timing.per_second / folder_rate, args.target_folder),
                )
                ratios = "".join(f" {verdict(ratio, target) if workers else f'{ratio:5.2f}':>22}" for ratio, target in pairs)
            print(f"  {label:<38} {workers:>7} {timing.per_second:>10.0f}{ratios}")
    print()
    print(
        f"2. Writer memory over a stream of {args.stream} patches "
        f"(PatchStoreWriter, 64 patches per add, {args.row_group_mib:g} MiB row groups)"
    )
    print(f"  {'after':<8} {'patches':>8} {'peak RSS MiB':>13} {'current RSS MiB':>16}")
    for label, done, peak, current in memory:
        print(f"  {label:<8} {done:>8} {peak:>13.1f} {current:>16.1f}")
    first, last = memory[1], memory[-1]
    print(
        f"  growth from {first[0]} to {last[0]}: "
        f"peak RSS {last[2] - first[2]:+.1f} MiB, current RSS {last[3] - first[3]:+.1f} MiB"
    )
    print()
    print(
        f"3. Peak memory of the patch stage (run_patches, workers=1, a fresh process per run; images cycling through "
        f"{2 * _STAGE_RENDERINGS} JPEG fundus photographs, half lesion, half healthy; {args.row_group_mib:g} MiB row groups)"
    )
    print(
        f"  {'images':>7} {'patches':>8} {'images/s':>9} {'store MiB':>10} {'RSS before MiB':>15} {'peak RSS MiB':>13} {'peak - before':>14} {'no patch':>9}"
    )
    for run in stage:
        print(
            f"  {run.images:>7} {run.patches:>8} {run.per_second:>9.0f} {run.store_mib:>10.1f} "
            f"{run.before_mib:>15.1f} {run.peak_mib:>13.1f} {run.peak_mib - run.before_mib:>+14.1f} {run.without_patch:>9}"
        )
    small, large = stage[0], stage[-1]
    limit = max(_STAGE_GROWTH[0] * small.peak_mib, _STAGE_GROWTH[1])
    growth = large.peak_mib - small.peak_mib
    print(
        f"  peak RSS growth from {small.images} to {large.images} images: {growth:+.1f} MiB "
        f"(< {limit:.1f} MiB: {judged(growth, limit, at_most=True)})"
    )
    print()
    print(f"wall time {time.perf_counter() - wall_start:.1f} s (rendering included)")


if __name__ == "__main__":
    main()
