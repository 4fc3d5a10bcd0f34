"""A job keeps to its threads: OpenCV, BLAS and PyTorch in the job's process, and one thread in each of its
worker processes, whatever the machine's core count."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import cv2
import threadpoolctl
import torch

from comcl.parallel import parallel_map, parallel_stream
from comcl.threads import one_thread_per_worker

REPO = Path(__file__).resolve().parents[1]


def threads_here(_item: object = None) -> tuple[int, int, int]:
    """OpenCV's, the BLAS libraries' (the most of any) and PyTorch's threads in this process."""
    blas = max((pool["num_threads"] for pool in threadpoolctl.threadpool_info()), default=1)
    return cv2.getNumThreads(), blas, torch.get_num_threads()


def test_a_job_s_process_keeps_to_its_thread_count():
    # In a fresh process, as a job starts: OpenCV would otherwise start one thread per core.
    script = (
        "import json, cv2, torch\n"
        "from comcl.threads import limit_threads\n"
        "from tests.test_threads import threads_here\n"
        "before = cv2.getNumThreads()\n"
        "limit_threads(1)\n"
        "print(json.dumps([before, *threads_here()]))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO)
    before, *after = json.loads(run.stdout)
    assert before > 1, "OpenCV started with one thread, so this test could not tell a limit from the default"
    assert after == [1, 1, 1]


def test_pool_workers_work_in_one_thread_each():
    items = list(range(6))
    assert set(parallel_map(threads_here, items, workers=2, desc="threads")) == {(1, 1, 1)}
    assert set(parallel_stream(threads_here, iter(items), len(items), workers=2, desc="threads")) == {(1, 1, 1)}


class _Threads(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor(threads_here())


def test_loader_workers_work_in_one_thread_each():
    loader = torch.utils.data.DataLoader(_Threads(), batch_size=None, num_workers=2, worker_init_fn=one_thread_per_worker)
    assert {tuple(item.tolist()) for item in loader} == {(1, 1, 1)}


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
