"""Map a function over items on worker processes, in order, with a progress bar."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

import numpy as np
from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def parallel_map(function: Callable[[T], R], items: Sequence[T], workers: int, desc: str) -> list[R]:
    """Results in the order of ``items``; ``workers <= 1`` runs in this process.

    ``function`` must be picklable (a module-level function or a ``functools.partial`` of one).
    """
    workers = max(1, min(workers, len(items), os.cpu_count() or 1))
    bar = dict(total=len(items), desc=desc, unit="img", mininterval=1.0, disable=None)
    if workers == 1:
        return list(tqdm(map(function, items), **bar))
    chunksize = max(1, len(items) // (workers * 8))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(tqdm(pool.map(function, items, chunksize=chunksize), **bar))


def item_seeds(seed: int, stream: str, count: int) -> list[np.random.SeedSequence]:
    """One independent seed per item, so results do not depend on how items are spread over workers."""
    return np.random.SeedSequence([seed, *stream.encode()]).spawn(count)

