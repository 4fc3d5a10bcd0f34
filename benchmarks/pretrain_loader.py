"""Pretraining's loader (comcl.pretrain.data.StepBatches) before and after it made only the views a step reads,
handed them over as uint8 and read the store with row-group locality, and how many workers keep a GPU fed.

Measures, in one run, and prints as plain-text tables:

1. One worker's work per step (``StepBatches[step]`` in this process, one torch thread, as a DataLoader
   worker runs it) at the paper's sizes: ``pretrain``'s defaults from ``workflow/schemas/config.schema.yaml``
   with ``config/paper.yaml``'s ``pretrain`` keys over them (ResNet-50, views of ``view_size`` 128 px,
   ``batch_size`` 400 patches per level group), the variant of ``config/pretrain/comcl.yaml`` (groups L, L~,
   H, H~; anchors L and L~, the others only feed queues) and its fundus augmentation preset
   (``pretrain.augment``), read from a temporary patch store of random patches that
   ``benchmarks/gpu_check.py`` writes with ``PatchStoreWriter`` (1 MiB row groups, ``patches.row_group_bytes``;
   ``--store-per-level`` patches per level, by default larger than a reader's 64 MiB cache, as a real store
   is). Three loaders, timed in turns step after step:

   * before: this module's ``OldStepBatches``, the loader as it was: every group's two views, float32
     (normalised in the worker), each epoch a plain permutation of a group's patches;
   * after, views made by the workers (training on a CPU): uint8 views, the key view alone for a group that
     only feeds a queue, each epoch a grouped shuffle of the row groups;
   * after, views made on the GPU (training on a GPU): the patches and each view's parameters, the same order.

   Steps ``--stride`` apart (a worker's steps when ``--stride`` workers share them; the paper's 16 by default),
   so that no step finds the row groups of the one before in the reader's cache, after one untimed step each.
   Printed per loader: seconds per step (median), patches and views per second of one worker, bytes per batch
   (every tensor of the item), and the row groups a step's patches lie in (a lower bound of its reads: a
   plain permutation reads one for nearly every patch once the store outgrows the cache). Ratios after /
   before: bytes per batch (target <= 0.3) and time per step at the same batch (target <= 0.8).
2. What a CoMCL step consumes on one GPU: ``--step-ms``, the ms/step that ``benchmarks/gpu_check.sh`` prints
   (part 1) on that GPU, or else an estimate from the step's FLOPs: torchvision's forward GFLOPs of the
   architecture at its 224 px evaluation crop, scaled by (size / 224)^2, three times that (forward and
   backward) for each image through the query encoder (view 0 of the anchor groups) and once (forward) for
   each through the momentum key encoder (view 1 of every group), at ``--mfu`` (40 %) of an H100's dense
   bf16 rate (989 TFLOP/s); the arithmetic is printed. Then the workers each loader needs to keep up, the
   bytes per second the training process receives at that rate, and what waits in /dev/shm (two batches per
   worker, the DataLoader's prefetch). Target: at most 16 workers for the loader that a GPU run uses.

The estimate leaves out the GPU's own time to make the views (a few elementwise passes over each view): it
lengthens the step and so lowers the workers needed; ``gpu_check.sh`` measures a real step. Timings are of
this machine's cores; a worker on a server core is faster. Linux only (``os.sched_getaffinity``).

Run from the repository root::

    .venv/bin/python benchmarks/pretrain_loader.py
    .venv/bin/python benchmarks/pretrain_loader.py --step-ms 31.5    # a GPU's step from gpu_check.sh
    .venv/bin/python benchmarks/pretrain_loader.py --quick           # tiny sizes, seconds (a smoke test)
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# DataLoader workers run one thread each: so does this process, which times one worker's work.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import numpy as np
import torch
import torchvision
import yaml
from cli import REPO, item_bytes, judged, positive_int, print_footer, read_variant, schema_defaults
from gpu_check import write_random_store

from comcl.augment import build_augmentation
from comcl.parallel import derived_seed
from comcl.pretrain.data import PatchSource, StepBatches, group_members

_PAPER = REPO / "config" / "paper.yaml"
_H100_BF16 = 989e12  # dense bf16 FLOP/s of an H100 SXM (NVIDIA's data sheet, without sparsity)
_QUERY_PASSES = 3  # forward and backward of the query encoder, in forward passes
_PREFETCH = 2  # the DataLoader's default prefetch_factor: batches in flight per worker
_MAX_WORKERS = 16
BEFORE = "before: two float32 views of every group, plain order"
BY_WORKERS = "after, views by the workers (CPU run)"
ON_GPU = "after, views made on the GPU (GPU run)"


def paper(section: str) -> dict[str, Any]:
    """The paper configuration's section: the schema's defaults with ``config/paper.yaml``'s keys over them."""
    return schema_defaults(section) | (yaml.safe_load(_PAPER.read_text()).get(section) or {})


class OldStepBatches(StepBatches):
    """The loader as it was, the baseline: each epoch a plain permutation of a group's patches, and every
    group's two views as float32 (3, S, S), normalised in the worker (``Augmentation.__call__``)."""

    def order(self, group: str, epoch: int) -> np.ndarray:
        members = self.members[group]
        return members[np.random.default_rng([self.seed, zlib.crc32(group.encode()), epoch]).permutation(len(members))]

    def __getitem__(self, step: int) -> dict[str, dict[str, torch.Tensor]]:
        positions = {group: self.positions(group, step * self.batch_size, self.batch_size) for group in self.members}
        views = {}
        for group, rows in positions.items():
            images, key = self.source.load(rows), zlib.crc32(group.encode())
            made = [
                [self.augment(image, derived_seed(self.seed, step, key, i, view)) for i, image in enumerate(images)]
                for view in (0, 1)
            ]
            views[group] = torch.from_numpy(np.stack([np.stack(view) for view in made]))  # (2, B, 3, S, S)
        return {"views": views, "images": {group: torch.from_numpy(self.codes[rows]) for group, rows in positions.items()}}


def forward_gflops(arch: str) -> tuple[float, int]:
    """torchvision's forward GFLOPs of ``arch`` and the side (px) they are counted at."""
    weights = torchvision.models.get_model_weights(arch).DEFAULT
    return float(weights.meta["_ops"]), int(weights.transforms().crop_size[0])


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    pretrain = paper("pretrain")
    parser = argparse.ArgumentParser(
        description="Pretraining's loader before and after (views made, uint8, row-group locality) and the workers a GPU needs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the script, seconds")
    parser.add_argument("--arch", default=pretrain["arch"], help="architecture the step's FLOPs are of")
    parser.add_argument("--size", type=positive_int, default=pretrain["view_size"], help="side of the patches and views")
    parser.add_argument("--per-level", type=positive_int, default=pretrain["batch_size"], help="patches per group and step")
    parser.add_argument("--store-per-level", type=positive_int, default=2048, help="patches per level in the store")
    parser.add_argument("--steps", type=positive_int, default=3, help="timed steps of each loader (the median is reported)")
    parser.add_argument("--stride", type=positive_int, default=_MAX_WORKERS, help="steps between two timed ones")
    parser.add_argument("--step-ms", type=float, default=None, help="a CoMCL step's ms on the GPU (gpu_check.sh); else estimated")
    parser.add_argument("--mfu", type=float, default=0.4, help="share of the H100's dense bf16 rate the estimate assumes")
    parser.add_argument("--seed", type=int, default=0, help="seed of the store and the loaders")
    args = parser.parse_args(argv)
    if args.quick:
        args.arch, args.size, args.per_level, args.store_per_level, args.steps = "resnet18", 32, 8, 64, 2
    return args


def time_loaders(loaders: Mapping[str, StepBatches], steps: Sequence[int]) -> dict[str, list[float]]:
    """Seconds of each loader's item per step, the loaders in turns step after step, after an untimed step each."""
    for loader in loaders.values():
        loader[steps[-1] + 1]
    seconds: dict[str, list[float]] = {name: [] for name in loaders}
    for step in steps:
        for name, loader in loaders.items():
            start = time.perf_counter()
            loader[step]
            seconds[name].append(time.perf_counter() - start)
    return seconds


def row_groups_touched(loader: StepBatches, steps: Sequence[int]) -> float:
    """The median over ``steps`` of the row groups a step's patches lie in, summed over the groups."""
    per_step = [
        sum(
            len(np.unique(loader.source.units(loader.positions(group, step * loader.batch_size, loader.batch_size))))
            for group in loader.members
        )
        for step in steps
    ]
    return statistics.median(per_step)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse(argv)
    wall_start = time.perf_counter()
    load_before = os.getloadavg()[0]
    torch.set_num_threads(1)
    pretrain, patches = paper("pretrain"), paper("patches")
    variant = read_variant()
    groups = variant["groups"]
    anchors = sorted({anchor for anchor, _ in variant["pairs"]})
    used = sorted(set(anchors) | {negative for _, negative in variant["pairs"]})
    preset = pretrain["augment"]["fundus"]
    steps = [args.stride * number for number in range(args.steps)]

    with tempfile.TemporaryDirectory(prefix="pretrain_loader.") as folder:
        store = Path(folder) / "patches.parquet"
        store_bytes = write_random_store(
            store, list(groups), args.store_per_level, args.size, patches["row_group_bytes"], args.seed
        )
        source = PatchSource(store)
        members = {name: rows for name, rows in group_members(source, groups, "train").items() if name in used}
        augment = build_augmentation(preset, args.size)
        common = (source, members, args.per_level, augment, args.seed)
        loaders = {
            BEFORE: OldStepBatches(*common),
            BY_WORKERS: StepBatches(*common, anchors=anchors),
            ON_GPU: StepBatches(*common, anchors=anchors, on_device=True),
        }
        seconds = time_loaders(loaders, steps)
        sizes = {name: item_bytes(loader[steps[0]]) for name, loader in loaders.items()}
        touched = {name: row_groups_touched(loader, steps) for name, loader in loaders.items()}
        row_groups, cache = len(source.store.row_group_starts) - 1, source.store.cache_bytes

    per_step = len(used) * args.per_level
    views = {BEFORE: 2 * per_step, BY_WORKERS: sum(map(len, loaders[BY_WORKERS].made.values())) * args.per_level, ON_GPU: 0}
    times = {name: statistics.median(values) for name, values in seconds.items()}
    total = len(groups) * args.store_per_level
    print(
        f"comcl pretraining loader benchmark: {args.arch} at {args.size} px, {len(used)} groups ({', '.join(used)}) x {args.per_level} "
        f"patches per step, anchors {', '.join(anchors)}; {preset['preset']} augmentation; torch {torch.__version__}, "
        f"{len(os.sched_getaffinity(0))} CPUs, one thread (one worker's work), seed {args.seed}"
    )
    print(
        f"store: {total} random RGB patches ({len(groups)} levels x {args.store_per_level}), {store_bytes / 2**20:.1f} MiB in "
        f"{row_groups} row groups of {patches['row_group_bytes'] / 2**20:g} MiB; reader cache {cache / 2**20:.0f} MiB"
    )
    print(
        f"timed steps {', '.join(map(str, steps))} (a worker's every {args.stride}th), each loader in turn, after one untimed step each"
    )
    print()
    print("1. One worker's work per step")
    print(f"  {'loader':<56} {'s/step':>7} {'patches/s':>9} {'views/s':>8} {'MB/batch':>9} {'row groups':>10}")
    rates = {name: per_step / times[name] for name in loaders}
    for name in loaders:
        print(
            f"  {name:<56} {times[name]:>7.3f} {rates[name]:>9.0f} {views[name] / times[name]:>8.0f} "
            f"{sizes[name] / 1e6:>9.1f} {touched[name]:>10.0f}"
        )
    print(
        f"  views per step: before {views[BEFORE]} (two of every patch), after {views[BY_WORKERS]} by the workers "
        f"(the key view alone for {', '.join(sorted(set(used) - set(anchors)))}), or none (the GPU makes them from the patches)"
    )
    for name, where in ((BY_WORKERS, "views by the workers"), (ON_GPU, "views made on the GPU")):
        for label, target, values in (("bytes per batch", 0.3, sizes), ("loader time per step", 0.8, times)):
            ratio = values[name] / values[BEFORE]
            print(
                f"  {label}, after / before: {ratio:.2f} (target <= {target:g}: {judged(ratio, target, at_most=True)}) [{where}]"
            )
    print()

    query_images = len(anchors) * args.per_level
    if args.step_ms is None:
        gflops, side = forward_gflops(args.arch)
        scaled = gflops * (args.size / side) ** 2
        passes = _QUERY_PASSES * query_images + per_step
        flops = passes * scaled * 1e9
        rate = args.mfu * _H100_BF16
        step_seconds = flops / rate
        print("2. What a CoMCL step consumes on one H100 (no GPU figure given: estimated from FLOPs)")
        print(
            f"  {args.arch} forward {gflops:g} GFLOP at {side} px (torchvision) x ({args.size}/{side})^2 = {scaled:.3f} GFLOP per image"
        )
        print(
            f"  query encoder {query_images} images ({', '.join(anchors)} view 0) x {_QUERY_PASSES} (forward + backward) + key encoder "
            f"{per_step} images (every group's view 1) x 1 = {passes} forward passes = {flops / 1e12:.2f} TFLOP per step"
        )
        print(
            f"  at {args.mfu:.0%} of {_H100_BF16 / 1e12:g} TFLOP/s dense bf16 = {rate / 1e12:.1f} TFLOP/s: {1000 * step_seconds:.1f} ms per step "
            "(torchvision counts a multiply-add as one FLOP, the data sheet as two: at two per multiply-add the step takes twice as long)"
        )
    else:
        step_seconds = args.step_ms / 1000
        print(f"2. What a CoMCL step consumes on the GPU of gpu_check.sh: {args.step_ms:g} ms per step (given)")
    consumed = per_step / step_seconds
    print(f"  consumption: {per_step} patches / {1000 * step_seconds:.1f} ms = {consumed:,.0f} patches/s")
    print(f"  {'loader':<56} {'workers':>7} {'GB/s to the trainer':>19} {'GB in /dev/shm':>14}")
    needed = {}
    for name in loaders:
        needed[name] = math.ceil(consumed / rates[name])
        print(
            f"  {name:<56} {needed[name]:>7} {sizes[name] / step_seconds / 1e9:>19.1f} {_PREFETCH * needed[name] * sizes[name] / 1e9:>14.1f}"
        )
    print(
        f"  workers to feed one H100: before {needed[BEFORE]}, after {needed[ON_GPU]} (views made on the GPU; "
        f"{needed[BY_WORKERS]} with views by the workers), target <= {_MAX_WORKERS}: "
        f"{judged(needed[ON_GPU], _MAX_WORKERS, at_most=True)}"
    )
    print()
    print_footer(wall_start, "the store's writing", load_before, 1)


if __name__ == "__main__":
    main()
