"""Map a function over items on worker processes, in order, with a progress bar."""

from __future__ import annotations

import os
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

import numpy as np
from tqdm import tqdm

from comcl.threads import forking_workers, one_thread_per_worker

T = TypeVar("T")
R = TypeVar("R")


def parallel_map(function: Callable[[T], R], items: Sequence[T], workers: int, desc: str) -> list[R]:
    """Results in the order of ``items``; ``workers <= 1`` runs in this process.

    ``function`` must be picklable (a module-level function or a ``functools.partial`` of one).
    """
    workers = max(1, min(workers, len(items), os.cpu_count() or 1))

    def bar(results: Iterable[R]) -> tqdm[R]:
        return tqdm(results, total=len(items), desc=desc, unit="img", mininterval=1.0, disable=None)

    if workers == 1:
        return list(bar(map(function, items)))
    chunksize = max(1, len(items) // (workers * 8))
    with forking_workers(), ProcessPoolExecutor(max_workers=workers, initializer=one_thread_per_worker) as pool:
        return list(bar(pool.map(function, items, chunksize=chunksize)))


def parallel_stream(
    function: Callable[[T], R], items: Iterable[T], total: int, workers: int, desc: str, window: int = 64
) -> Iterator[R]:
    """Like :func:`parallel_map`, but yields results one by one, taking items from the iterable only as
    workers need them (at most ``window`` in flight), so that memory stays bounded however many
    items there are; ``total`` is for the progress bar."""
    workers = max(1, min(workers, total, os.cpu_count() or 1))
    with tqdm(total=total, desc=desc, unit="img", mininterval=1.0, disable=None) as bar:
        if workers == 1:
            for item in items:
                yield function(item)
                bar.update()
            return
        with forking_workers(), ProcessPoolExecutor(max_workers=workers, initializer=one_thread_per_worker) as pool:
            pending: deque = deque()
            for item in items:
                pending.append(pool.submit(function, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
                    bar.update()
            while pending:
                yield pending.popleft().result()
                bar.update()


def image_seed(seed: int, image_id: str) -> np.random.SeedSequence:
    """A seed that depends only on ``seed`` and the image: the same image draws the same numbers in every
    dataset version and whatever else is in the dataset."""
    return np.random.SeedSequence([seed, zlib.crc32(image_id.encode())])


def derived_seed(*parts: int) -> int:
    """A 32-bit seed drawn from non-negative integers (base seed, step, position, ...): one per augmented view."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def item_seeds(seed: int, stream: str, count: int) -> list[np.random.SeedSequence]:
    """One independent seed per item, so results do not depend on how items are spread over workers."""
    return np.random.SeedSequence([seed, *stream.encode()]).spawn(count)
