"""A job's thread count, for every library in it that keeps its own thread pool.

Snakemake gives each job its rule's ``threads:`` and sets ``OMP_NUM_THREADS`` and the BLAS variables to it,
but OpenCV starts a thread per core whatever they say, PyTorch reads them only at import, and each worker
process (a process pool's, a DataLoader's) would use the job's whole count again: two jobs side by side, or
one job's workers, then run more threads than the job was given and slow each other down.

OpenCV runs in one thread in every process of comcl, and its stages get their parallelism from worker
processes instead. Its pool cannot be reconfigured in a forked worker: the worker inherits the pool's
locks and condition variables but not its threads, and ``cv2.setNumThreads`` there waits forever for them.
So OpenCV is set to one thread in the process that forks (:func:`limit_threads` in a job's process,
:func:`forking_workers` around a pool), and the forks inherit it; :func:`one_thread_per_worker` sets the
rest (BLAS, PyTorch) in each worker.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import cv2
import threadpoolctl


def _limit_blas_and_torch(count: int) -> None:
    threadpoolctl.threadpool_limits(count)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(count)


def limit_threads(count: int) -> None:
    """A job's process: ``count`` threads (at least 1) for the BLAS libraries NumPy loaded and, when this process
    has imported it, PyTorch's intra-op pool; one for OpenCV."""
    cv2.setNumThreads(1)
    _limit_blas_and_torch(max(1, count))


@contextmanager
def forking_workers() -> Iterator[None]:
    """OpenCV in one thread in this process while it forks and runs worker processes, so that they inherit one."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def one_thread_per_worker(_worker: int = 0) -> None:
    """The initialiser of a worker process (a ``worker_init_fn`` or a pool's ``initializer``): the job's threads are
    its processes, so each works in one. OpenCV's one comes from the process that forked it."""
    _limit_blas_and_torch(1)
