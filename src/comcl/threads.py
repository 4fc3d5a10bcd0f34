"""A job's thread count, for every library in it that keeps its own thread pool.

Snakemake gives each job its rule's ``threads:`` and sets ``OMP_NUM_THREADS`` and the BLAS variables to it,
but OpenCV starts a thread per core whatever they say, PyTorch reads them only at import, and each worker
process (a process pool's, a DataLoader's) would use the job's whole count again: two jobs side by side, or
one job's workers, then run more threads than the job was given and slow each other down. The stages call
:func:`limit_threads` with the job's count, and their worker processes with one thread each.
"""

from __future__ import annotations

import sys

import cv2
import threadpoolctl


def limit_threads(count: int) -> None:
    """At most ``count`` threads (at least 1) for OpenCV, the BLAS libraries NumPy loaded and, when this
    process has imported it, PyTorch's intra-op pool."""
    count = max(1, count)
    cv2.setNumThreads(count)
    threadpoolctl.threadpool_limits(count)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(count)


def one_thread_per_worker(_worker: int = 0) -> None:
    """The initialiser of a worker process (a ``worker_init_fn`` or a pool's ``initializer``): the job's
    threads are its processes, so each works in one."""
    limit_threads(1)
