"""Shared fixtures: tiny synthetic datasets (generated once per test session) and the real label files."""

from __future__ import annotations

import http.server
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from comcl.datasets.chestxray14 import TASK_FINDINGS
from comcl.download import sha256sum
from comcl.io import save_image, write_table
from comcl.patches.store import PatchRow, PatchStoreWriter
from comcl.synth import chestxray14, eyeq, idrid
from tests.tiny_workflow import TINY, snakemake

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("COMCL_SHARED", REPO.parent / "shared"))

TINY_EYEQ = eyeq.EyeQSpec(
    n_train=12,
    n_test=8,
    height=96,
    width=120,
    grade_distribution=[0.3, 0.2, 0.2, 0.15, 0.15],
    low_quality_share={"train": 0.334, "test": 0.5},
    reject_share=0.5,
)
TINY_IDRID = idrid.IDRiDSpec(n_train=3, n_test=2, height=96, width=144)
TINY_CHEST = chestxray14.ChestSpec(
    n_patients=14,
    max_follow_ups=2,
    size=96,
    no_finding_share=0.3,
    max_findings=3,
    finding_weights=dict.fromkeys(TASK_FINDINGS, 1.0),
    test_patient_share=0.3,
    low_quality_share=0.432,
    bbox_share=0.5,
)
# The suite's peak use of the temporary folder, measured (checkpoints of tiny ResNets are tens of MB each).
DISK_NEEDED_GB = 1


def pytest_report_header(config: pytest.Config) -> str:
    """The free space where the tests write: a full disk otherwise shows up as torch.save's 'unexpected pos'."""
    folder = Path(config.option.basetemp or tempfile.gettempdir()).resolve()
    free = shutil.disk_usage(next(p for p in (folder, *folder.parents) if p.exists())).free / 2**30
    line = f"temporary files: {folder}, {free:.1f} GB free"
    if free < 3 * DISK_NEEDED_GB:
        line += f" (WARNING: the suite needs about {DISK_NEEDED_GB} GB; free some space or point --basetemp elsewhere)"
    return line


@pytest.fixture(scope="session")
def shared_data() -> Path:
    data = SHARED / "data"
    if not data.is_dir():
        raise FileNotFoundError(f"{data} not found: clone the project with shared/ beside it, or set COMCL_SHARED")
    return data


@pytest.fixture(scope="session")
def synthetic_eyeq(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("eyeq")
    return root, eyeq.generate(root, TINY_EYEQ, seed=7, workers=1)


@pytest.fixture(scope="session")
def synthetic_idrid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("idrid")
    return root, idrid.generate(root, TINY_IDRID, seed=7, workers=1)


@pytest.fixture(scope="session")
def synthetic_chest(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("chestxray14")
    return root, chestxray14.generate(root, TINY_CHEST, seed=7, workers=1)


@pytest.fixture(scope="session")
def pretrain_data(tmp_path_factory) -> tuple[Path, Path]:
    """Pretraining data: a store of 20 random 32 px patches per level (train) plus a few test ones, and an index of whole images."""
    root = tmp_path_factory.mktemp("pretrain")
    rng = np.random.default_rng(0)
    rows, images = [], []
    for level in ("L", "L~", "H", "H~"):
        for i in range(24):
            split = "train" if i < 20 else "test"
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            rows.append(PatchRow(f"{level}{i}", split, level, (0, 0, 32, 32), None, None, None, False, pixels))
            path = root / "images" / f"{level}{i}.png"
            save_image(path, rng.integers(0, 256, (48, 56, 3), dtype=np.uint8))
            images.append({"image_id": f"{level}{i}", "path": str(path), "split": split, "level": level})
    store = root / "eyeq" / "original" / "patches.parquet"
    meta = {"dataset": "eyeq", "proportion": "original", "format": "eyeq", "modality": "fundus", "task": "grading"}
    with PatchStoreWriter(store, 32, 3, meta, row_group_bytes=8192) as writer:
        writer.add(rows)
    index = root / "eyeq" / "original" / "index.parquet"
    write_table(index, pd.DataFrame(images), meta)
    return store, index


@dataclass(frozen=True)
class TinyRun:
    workdir: Path
    # Relative path -> SHA-256 of every file the run wrote, taken before any test changes the configuration.
    digests: dict[str, str]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """The whole workflow on the tiny configuration, run once: the workflow tests go on from it, the SLURM test compares with it."""
    workdir = tmp_path_factory.mktemp("workflow")
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    snakemake(workdir)
    results = workdir / TINY["results"]
    digests = {str(path.relative_to(workdir)): sha256sum(path) for path in sorted(results.rglob("*")) if path.is_file()}
    return TinyRun(workdir, digests)


@dataclass
class Served:
    """What the server holds and how it misbehaves, per path; ``requests`` records (path, Range header)."""

    files: dict[str, bytes] = field(default_factory=dict)
    cut_after: dict[str, int] = field(default_factory=dict)  # first request: send only this many bytes, then hang up
    fail_once: set[str] = field(default_factory=set)  # first request: 500
    ignore_range: set[str] = field(default_factory=set)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    url: str = ""


def _handler(served: Served) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path, header = self.path, self.headers.get("Range")
            first = path not in {seen for seen, _ in served.requests}
            served.requests.append((path, header))
            if path not in served.files:
                self.send_error(404)
                return
            if path in served.fail_once and first:
                self.send_error(500)
                return
            data = served.files[path]
            match = re.fullmatch(r"bytes=(\d+)-", header or "")
            start = int(match.group(1)) if match and path not in served.ignore_range else 0
            if start >= len(data) > 0:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            body = data[start:]
            if first and path in served.cut_after:
                body = body[: served.cut_after[path]]
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def http_server() -> Iterator[Served]:
    """A server on 127.0.0.1 for download tests (no internet here): put files in ``files``, fetch ``url + path``."""
    served = Served()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(served))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    served.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield served
    httpd.shutdown()
    httpd.server_close()


# A fixture of every test file (NIH files have no checksum, so they come over https); tests.tls builds on this module.
from tests.tls import https_server  # noqa: F401
