"""Speed and memory of the quality degradations (comcl.degrade), on one CPU core.

Measures, and prints as a plain-text table:

1. Fundus: images per second of ``degrade_fundus`` for each of the 7 degradation types and for a
   type drawn at random per image, against the target of at least 25 images/s per core (PASS or
   FAIL beside the random-type figure), and of ``estimate_fov_mask`` on its own. Beside each type,
   what its images keep: the median over the row's images of ``structure_kept`` (the fine
   structure, vessels and small lesions, left by the degradation; measured outside the timing).
2. Chest: the same for ``degrade_chest``, each kind alone and a random combination of one or two
   kinds (``random_chest_kinds``). Beside each, the share of its degraded radiographs that the
   index's no-reference quality score (``comcl.index.quality``) puts below their original, scored
   together with the originals (measured outside the timing).
3. The blur degradations against a plain full-resolution ``cv2.GaussianBlur`` of the same uint8
   images with the same arguments (those drawn in step 1 and 2: for the fundus blur, the released
   code's call, its small kernel and sigma), measured in the same run: how many times the time the
   degradation takes.
4. Peak resident memory (``ru_maxrss``) and current resident memory after 10 %, 50 % and 100 % of
   a stream of small images degraded one after the other and written nowhere, to show that memory
   does not grow with the number of images. It runs first, so that the larger images of steps 1-3
   have not yet raised the peak.

The base images come from the synthetic renderers (comcl.synth) and are rendered before any timing
starts: a handful of distinct ones, cycled through. Only the degradation calls are timed. Thread
pools are limited to one thread (OpenMP, OpenBLAS and MKL through the environment, before numpy is
imported; OpenCV with ``cv2.setNumThreads(1)``) and the process is pinned to one CPU where the
system allows it. Every random draw comes from generators seeded from ``--seed``. Linux only
(``ru_maxrss`` in KiB, ``/proc/self/statm``).

Run from the repository root::

    .venv/bin/python benchmarks/degrade_speed.py
    .venv/bin/python benchmarks/degrade_speed.py --size 1024 --images 100 --stream 5000
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# The BLAS and OpenMP thread pools read these when numpy is first imported.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import cv2
import numpy as np
from cli import judged, positive_int

from comcl.degrade.chest import CHEST_DEGRADATIONS, degrade_chest, random_chest_kinds
from comcl.degrade.fundus import FUNDUS_DEGRADATION_TYPES, degrade_fundus
from comcl.degrade.structure import structure_kept
from comcl.fov import estimate_fov_mask
from comcl.index.quality import shares_scored_lower
from comcl.synth.chest import CHEST_FINDINGS, render_chest
from comcl.synth.fundus import EYES, LESION_KINDS, FundusRendering, render_fundus

_MIB = 1024 * 1024
_CHECKPOINTS = (0.1, 0.5, 1.0)


@dataclass(frozen=True)
class Row:
    """One timed line of the table: ``images`` calls took ``seconds`` in all; ``kept`` is what the
    degraded images keep of their original (see "What the degraded images keep" below)."""

    label: str
    images: int
    seconds: float
    kept: str = ""

    @property
    def per_second(self) -> float:
        return self.images / self.seconds

    @property
    def milliseconds(self) -> float:
        return 1000.0 * self.seconds / self.images


@dataclass(frozen=True)
class MemoryPoint:
    label: str
    images: int
    peak_mib: float
    current_mib: float


def _pin_to_one_cpu() -> str:
    """Pin the process to the first CPU it may run on; says which, or why not."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity)"
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return f"pinned to CPU {cpu}"


def _render_fundus_bases(size: int, count: int, rng: np.random.Generator) -> list[FundusRendering]:
    """``count`` distinct photographs: both eyes, from healthy to a few of every lesion."""
    return [
        render_fundus(
            size, size, {kind: (index + offset) % 4 * 2 for offset, kind in enumerate(LESION_KINDS)}, EYES[index % 2], rng
        )
        for index in range(count)
    ]


def _render_chest_bases(size: int, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` distinct radiographs: a normal chest, then one finding each, in turn."""
    findings: list[list[str]] = [[], *([name] for name in CHEST_FINDINGS)]
    return [render_chest(size, findings[index % len(findings)], rng).image for index in range(count)]


def _time_fundus(
    bases: Sequence[FundusRendering], kinds: tuple[str, ...] | None, images: int, rng: np.random.Generator
) -> tuple[float, list[dict[str, Any]], list[float]]:
    """Seconds spent in ``degrade_fundus`` over ``images`` calls, the drawn parameters and the
    structure each degraded image keeps. ``kinds`` None draws one of the 7 types per image (the
    draw and the structure measure are not timed)."""
    seconds, params, kept = 0.0, [], []
    for index in range(images):
        base = bases[index % len(bases)]
        chosen = kinds or FUNDUS_DEGRADATION_TYPES[int(rng.integers(len(FUNDUS_DEGRADATION_TYPES)))]
        start = time.perf_counter()
        degraded, drawn = degrade_fundus(base.image, base.fov_mask, chosen, rng)
        seconds += time.perf_counter() - start
        params.append(drawn)
        kept.append(structure_kept(base.image, degraded, base.fov_mask))
    return seconds, params, kept


def _time_chest(
    bases: Sequence[np.ndarray], kinds: tuple[str, ...] | None, images: int, rng: np.random.Generator
) -> tuple[float, list[dict[str, Any]], float]:
    """Seconds spent in ``degrade_chest`` over ``images`` calls, the drawn parameters, and the share
    of the degraded images that score below their original. ``kinds`` None draws one or two kinds
    per image (the draw and the score are not timed)."""
    seconds, params, degraded = 0.0, [], []
    for index in range(images):
        chosen = kinds or random_chest_kinds(rng)
        start = time.perf_counter()
        image, drawn = degrade_chest(bases[index % len(bases)], chosen, rng)
        seconds += time.perf_counter() - start
        params.append(drawn)
        degraded.append(image)
    originals = [bases[index % len(bases)] for index in range(images)]
    return seconds, params, shares_scored_lower(originals, {"degraded": degraded})["degraded"]


def _time_fov(bases: Sequence[FundusRendering], images: int) -> float:
    seconds = 0.0
    for index in range(images):
        image = bases[index % len(bases)].image
        start = time.perf_counter()
        estimate_fov_mask(image)
        seconds += time.perf_counter() - start
    return seconds


def _time_plain_blur(images: Sequence[np.ndarray], calls: Sequence[tuple[tuple[int, int], float]]) -> float:
    """Seconds for a plain cv2.GaussianBlur of image ``i % len(images)`` with the kernel size and
    sigma ``calls[i]``: the same images and arguments as the degradation it is compared with."""
    seconds = 0.0
    for index, (size, sigma) in enumerate(calls):
        image = images[index % len(images)]
        start = time.perf_counter()
        cv2.GaussianBlur(image, size, sigma)
        seconds += time.perf_counter() - start
    return seconds


def _fundus_kept(kept: Sequence[float]) -> str:
    """The median share of fine structure the images keep (1: all of it, 0: none)."""
    return f"structure {np.median(kept):.2f}"


def _chest_kept(share: float) -> str:
    """The share of the degraded radiographs that the quality score puts below their original."""
    return f"scored lower {share:.0%}"


def _memory_point(label: str, images: int) -> MemoryPoint:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / _MIB  # KiB on Linux
    with open("/proc/self/statm") as statm:
        current = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / _MIB
    return MemoryPoint(label, images, peak, current)


def _memory_stream(size: int, stream: int, bases: int, seed: int) -> list[MemoryPoint]:
    """Degrade ``stream`` fundus and ``stream`` chest images (random types), keeping nothing."""
    render_rng = np.random.default_rng([seed, 40])
    fundus = _render_fundus_bases(size, bases, render_rng)
    chest = _render_chest_bases(size, bases, render_rng)
    points = [_memory_point("bases only", 0)]
    checkpoints = {max(1, round(fraction * stream)): f"{round(100 * fraction)} %" for fraction in _CHECKPOINTS}
    rng = np.random.default_rng([seed, 41])
    for index in range(stream):
        base = fundus[index % bases]
        kinds = FUNDUS_DEGRADATION_TYPES[int(rng.integers(len(FUNDUS_DEGRADATION_TYPES)))]
        degrade_fundus(base.image, base.fov_mask, kinds, rng)
        degrade_chest(chest[index % bases], random_chest_kinds(rng), rng)
        if index + 1 in checkpoints:
            points.append(_memory_point(checkpoints[index + 1], index + 1))
    return points


def _print_rows(rows: Sequence[Row], target: float, kept: str) -> None:
    """The table; ``kept`` heads the column of what the degraded images keep (median)."""
    print(f"  {'degradation':<30} {'images':>6} {'ms/image':>9} {'images/s':>9}  {kept:<16}".rstrip())
    for row in rows:
        verdict = f"target >= {target:g}/s: {judged(row.per_second, target)}" if row.label.startswith("random") else ""
        timing = f"{row.label:<30} {row.images:>6} {row.milliseconds:>9.2f} {row.per_second:>9.1f}"
        print(f"  {timing}  {row.kept:<16}  {verdict}".rstrip())


def _side(text: str) -> int:
    value = int(text)
    if value < 32:
        raise argparse.ArgumentTypeError(f"the renderers need at least 32 pixels, got {value}")
    return value


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Single-core throughput of the fundus and chest degradations (images/s per degradation type, "
            "against a target), their blur against a plain cv2.GaussianBlur at the same sigma, and peak "
            "memory over a long stream of images. Base images are synthetic and rendered before timing."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--size", type=_side, default=512, help="side of the square images timed in sections 1-3, px")
    parser.add_argument("--images", type=positive_int, default=200, help="images timed per table row")
    parser.add_argument("--bases", type=positive_int, default=8, help="distinct base images rendered and cycled through")
    parser.add_argument("--stream", type=positive_int, default=2000, help="images (of each modality) in the memory stream")
    parser.add_argument("--stream-size", type=_side, default=256, help="side of the memory stream's images, px")
    parser.add_argument("--stream-bases", type=positive_int, default=4, help="distinct base images cycled in the memory stream")
    parser.add_argument("--target", type=float, default=25.0, help="images/s per core the random fundus type must reach")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random generator")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse(argv)
    wall_start = time.perf_counter()
    cv2.setNumThreads(1)
    pinned = _pin_to_one_cpu()

    memory = _memory_stream(args.stream_size, args.stream, args.stream_bases, args.seed)

    render_rng = np.random.default_rng([args.seed, 0])
    fundus = _render_fundus_bases(args.size, args.bases, render_rng)
    chest = _render_chest_bases(args.size, args.bases, render_rng)
    # One untimed call each, so that no row pays for first-call set-up.
    degrade_fundus(fundus[0].image, fundus[0].fov_mask, FUNDUS_DEGRADATION_TYPES[-1], np.random.default_rng(args.seed))
    degrade_chest(chest[0], CHEST_DEGRADATIONS, np.random.default_rng(args.seed))

    fundus_rows: list[Row] = []
    fundus_calls: list[tuple[tuple[int, int], float]] = []
    for number, kinds in enumerate((*FUNDUS_DEGRADATION_TYPES, None)):
        seconds, params, kept = _time_fundus(fundus, kinds, args.images, np.random.default_rng([args.seed, 1, number]))
        fundus_rows.append(Row("+".join(kinds) if kinds else "random type (1 of 7)", args.images, seconds, _fundus_kept(kept)))
        if kinds == ("blur",):
            fundus_calls = [(tuple(drawn["blur"]["kernel_512"]), drawn["blur"]["sigma_512"]) for drawn in params]
    fov_row = Row("estimate_fov_mask", args.images, _time_fov(fundus, args.images))

    chest_rows: list[Row] = []
    chest_sigmas: list[float] = []
    for number, kind in enumerate((*CHEST_DEGRADATIONS, None)):
        kinds = (kind,) if kind else None
        seconds, params, lower = _time_chest(chest, kinds, args.images, np.random.default_rng([args.seed, 2, number]))
        chest_rows.append(Row(kind or "random 1-2 kinds", args.images, seconds, _chest_kept(lower)))
        if kind == "blur":
            chest_sigmas = [drawn["blur"]["sigma"] for drawn in params]

    fundus_blur = next(row for row in fundus_rows if row.label == "blur")
    chest_blur = next(row for row in chest_rows if row.label == "blur")
    fundus_plain = _time_plain_blur([base.image for base in fundus], fundus_calls)
    chest_plain = _time_plain_blur(chest, [((0, 0), sigma) for sigma in chest_sigmas])

    print(f"comcl degradation benchmark: 1 core (cv2, OpenMP, OpenBLAS, MKL threads = 1; {pinned}), seed {args.seed}")
    print()
    print(f"1. Fundus, degrade_fundus on {args.size} x {args.size} RGB ({args.bases} rendered bases, cycled)")
    _print_rows([*fundus_rows, fov_row], args.target, "kept (median)")
    print()
    print(f"2. Chest, degrade_chest on {args.size} x {args.size} grey ({args.bases} rendered bases, cycled)")
    _print_rows(chest_rows, args.target, "quality score")
    print()
    print(
        "3. Blur against a plain full-resolution cv2.GaussianBlur of the uint8 image, "
        f"same images and arguments ({args.images} each)"
    )
    sizes = [side for size, _ in fundus_calls for side in size]
    print(
        f"  fundus blur type (kernels of {min(sizes)}-{max(sizes)} px, "
        f"sigma {min(s for _, s in fundus_calls):.1f}-{max(s for _, s in fundus_calls):.1f}) vs the released code's "
        f"cv2.GaussianBlur call: {fundus_blur.seconds / fundus_plain:.2f} times the time "
        f"({fundus_blur.milliseconds:.2f} vs {1000 * fundus_plain / args.images:.2f} ms/image)"
    )
    print(
        f"  chest blur (sigma {min(chest_sigmas):.1f}-{max(chest_sigmas):.1f} px) vs plain cv2.GaussianBlur "
        f"at the same sigma: {chest_blur.seconds / chest_plain:.2f} times the time "
        f"({chest_blur.milliseconds:.2f} vs {1000 * chest_plain / args.images:.2f} ms/image)"
    )
    print()
    print(
        f"4. Memory over a stream of {args.stream} fundus + {args.stream} chest images "
        f"({args.stream_size} x {args.stream_size}, random types, {args.stream_bases} bases each, written nowhere)"
    )
    print(f"  {'after':<16} {'images':>6} {'peak RSS MiB':>13} {'current RSS MiB':>16}")
    for point in memory:
        print(f"  {point.label:<16} {point.images:>6} {point.peak_mib:>13.1f} {point.current_mib:>16.1f}")
    first, last = memory[1], memory[-1]
    print(
        f"  growth from {first.label} to {last.label}: peak RSS {last.peak_mib - first.peak_mib:+.1f} MiB, "
        f"current RSS {last.current_mib - first.current_mib:+.1f} MiB"
    )
    print()
    print(f"wall time {time.perf_counter() - wall_start:.1f} s (rendering included)")


if __name__ == "__main__":
    main()
