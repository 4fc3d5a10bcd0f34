"""A job keeps to its threads: the BLAS and PyTorch to its count and OpenCV to one in the job's process, one thread
of each in each of its worker processes, whatever the machine's core count; and workers forked after those
libraries ran in threads start (a worker that resized OpenCV's inherited pool would hang)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import cv2
import threadpoolctl
import torch

REPO = Path(__file__).resolve().parents[1]
# Makes OpenCV, the BLAS and PyTorch start their pools' threads, whose locks a forked worker inherits without them.
POOLS_IN_THREADS = (
    "import cv2, numpy\n"
    "cv2.GaussianBlur(numpy.zeros((2000, 2000), numpy.uint8), (31, 31), 5)\n"
    "numpy.ones((800, 800)) @ numpy.ones((800, 800))\n"
    "torch.ones(800, 800) @ torch.ones(800, 800)\n"
)


def threads_here(_item: object = None) -> tuple[int, int, int]:
    """OpenCV's, the BLAS libraries' (the most of any) and PyTorch's threads in this process."""
    blas = max((pool["num_threads"] for pool in threadpoolctl.threadpool_info()), default=1)
    return cv2.getNumThreads(), blas, torch.get_num_threads()


class Threads(torch.utils.data.Dataset):
    """Each item: :func:`threads_here` in the process that loads it."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor(threads_here())


def run_python(script: str) -> object:
    """What ``script`` prints as JSON, run in a fresh process (as a job starts); a hang fails after a minute."""
    header = "import json, torch\nfrom tests.test_threads import Threads, threads_here\n"
    run = subprocess.run(
        [sys.executable, "-c", header + POOLS_IN_THREADS + script], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_a_job_s_process_keeps_to_its_thread_count():
    before, *after = run_python(
        "from comcl.threads import limit_threads\n"
        "before = cv2.getNumThreads()\n"
        "limit_threads(1)\n"
        "print(json.dumps([before, *threads_here()]))\n"
    )
    assert before > 1, "OpenCV started with one thread, so this test could not tell a limit from the default"
    assert after == [1, 1, 1]


def test_pool_workers_start_after_the_pools_ran_in_threads_and_work_in_one_thread_each():
    found = run_python(
        "from comcl.parallel import parallel_map, parallel_stream\n"
        "before = cv2.getNumThreads()\n"
        "mapped = parallel_map(threads_here, list(range(6)), workers=2, desc='threads')\n"
        "streamed = list(parallel_stream(threads_here, iter(range(6)), 6, workers=2, desc='threads'))\n"
        "print(json.dumps([sorted(set(mapped) | set(streamed)), before == cv2.getNumThreads()]))\n"
    )
    assert found == [[[1, 1, 1]], True], "the workers' threads, and whether the caller's OpenCV threads came back"


def test_loader_workers_of_a_job_start_after_the_pools_ran_in_threads_and_work_in_one_thread_each():
    found = run_python(
        "from comcl.threads import limit_threads, one_thread_per_worker\n"
        "limit_threads(2)\n"
        "loader = torch.utils.data.DataLoader(Threads(), batch_size=None, num_workers=2, worker_init_fn=one_thread_per_worker)\n"
        "print(json.dumps(sorted({tuple(item.tolist()) for item in loader})))\n"
    )
    assert found == [[1, 1, 1]]


def test_every_loader_with_workers_starts_them_in_one_thread():
    loaders = []
    for module in sorted((REPO / "src/comcl").rglob("*.py")):
        for call in ast.walk(ast.parse(module.read_text())):
            if isinstance(call, ast.Call) and ast.unparse(call.func).endswith("DataLoader"):
                keywords = {keyword.arg: ast.unparse(keyword.value) for keyword in call.keywords}
                if "num_workers" in keywords:
                    loaders.append((module.relative_to(REPO).as_posix(), keywords.get("worker_init_fn")))
    assert len(loaders) >= 4, loaders
    assert {init for _, init in loaders} == {"one_thread_per_worker"}, loaders
