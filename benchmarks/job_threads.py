"""An image stage's worker pool with and without its workers held to one thread each (comcl.threads).

An image stage (synthesize, preprocess, index, degrade, patches) runs a pool of one worker process per core of its
job. Before ``one_thread_per_worker``, each worker kept OpenCV's default pool, one thread per core, so a job of
``n`` cores ran ``n * n`` OpenCV threads. This maps the same work, a synthetic fundus photograph rendered and
degraded per item as the synthesize and degrade stages do, over a pool of ``--workers`` processes (default: every
core) started either way, the two alternating ``--repeats`` times in one run, and prints the median images per
second of each, the ratio, and the threads each worker saw.

Run from the repository root::

    .venv/bin/python benchmarks/job_threads.py
    .venv/bin/python benchmarks/job_threads.py --images 96 --size 768 --repeats 5
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor

import cv2
import numpy as np
from cli import positive_int, print_footer

from comcl.degrade.fundus import FUNDUS_DEGRADATION_TYPES, degrade_fundus
from comcl.synth.fundus import EYES, LESION_KINDS, render_fundus
from comcl.threads import forking_workers, one_thread_per_worker


def photograph(index: int, size: int, seed: int) -> int:
    """One photograph rendered and degraded (a type drawn per image); returns the OpenCV threads of the worker."""
    rng = np.random.default_rng([seed, index])
    counts = {kind: (index + offset) % 4 * 2 for offset, kind in enumerate(LESION_KINDS)}
    rendering = render_fundus(size, size, counts, EYES[index % 2], rng)
    kinds = FUNDUS_DEGRADATION_TYPES[int(rng.integers(len(FUNDUS_DEGRADATION_TYPES)))]
    degrade_fundus(rendering.image, rendering.fov_mask, kinds, rng)
    return cv2.getNumThreads()


def timed_pool(work: Callable[[int], int], images: int, workers: int, limited: bool) -> tuple[float, set[int]]:
    """Seconds to map ``work`` over ``images`` items on a fresh pool (its start included, as a job's), its workers
    held to one thread as ``comcl.parallel`` starts them or, not ``limited``, as they were before; and the OpenCV
    thread counts its workers saw."""
    start = time.perf_counter()
    with (
        forking_workers() if limited else contextlib.nullcontext(),
        ProcessPoolExecutor(max_workers=workers, initializer=one_thread_per_worker if limited else None) as pool,
    ):
        threads = set(pool.map(work, range(images), chunksize=max(1, images // (workers * 8))))
    return time.perf_counter() - start, threads


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=positive_int, default=48, help="photographs per pool run")
    parser.add_argument("--size", type=positive_int, default=512, help="side of each photograph in px")
    parser.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1, help="processes of the pool")
    parser.add_argument("--repeats", type=positive_int, default=3, help="runs of each kind, alternating")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    wall_start, load_before = time.perf_counter(), os.getloadavg()[0]
    work = functools.partial(photograph, size=args.size, seed=args.seed)
    pools = {"OpenCV's default threads per worker (before)": False, "one thread per worker (comcl.threads)": True}
    seconds: dict[str, list[float]] = {label: [] for label in pools}
    seen: dict[str, set[int]] = {label: set() for label in pools}
    timed_pool(work, args.workers, args.workers, False)  # warm the page cache and the imports of the workers
    for _ in range(args.repeats):
        for label, limited in pools.items():
            took, threads = timed_pool(work, args.images, args.workers, limited)
            seconds[label].append(took)
            seen[label] |= threads

    print(f"{args.images} fundus photographs of {args.size} px rendered and degraded on a pool of {args.workers} workers")
    print(f"({os.cpu_count()} cores here), median of {args.repeats} runs of each:")
    rates = {label: args.images / statistics.median(times) for label, times in seconds.items()}
    for label, rate in rates.items():
        print(f"  {label:48s} {rate:7.1f} img/s   OpenCV threads in each worker: {sorted(seen[label])}")
    before, after = rates.values()
    print(f"one thread per worker / default: {after / before:.2f} times the images per second")
    print_footer(wall_start, "the warm-up run", load_before, args.workers)


if __name__ == "__main__":
    main()
