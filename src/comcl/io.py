"""Atomic file output: a killed job never leaves a half-written file under its final name."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from PIL import Image

from comcl.errors import DataError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

JPEG_QUALITY = 92


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds.

    The temporary file keeps the final suffix so that writers which pick a format from the
    suffix (Pillow, matplotlib) behave as they would on the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file private (0600); the final file gets the usual mode, as open() would give it.
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield an empty sibling directory; on success it replaces ``path`` whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    try:
        yield tmp
        # mkdtemp makes the folder private (0700); the final one gets the usual mode, as mkdir() would give it.
        os.chmod(tmp, 0o777 & ~_UMASK)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def remove_partial_writes(folder: str | Path) -> list[Path]:
    """Delete what killed writes left under ``folder`` (the ``.*.part*`` files and folders of
    :func:`atomic_path` and :func:`atomic_directory`); returns what was deleted.

    A kill between the write and its rename is the one way these survive, and nothing else ever
    looks at them: the next start of the stage that owns the folder clears them.
    """
    folder = Path(folder)
    stale = sorted(folder.rglob(".*.part*")) if folder.is_dir() else []
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return stale


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_yaml(path: str | Path, obj: Any, header: str = "") -> None:
    """``obj`` as block-style YAML, keys in the order given, after ``header`` (comment lines)."""
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    write_text(path, comment + yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, allow_unicode=True))


def write_image(path: str | Path, image: Image.Image, **options: Any) -> None:
    """Encode ``image`` in memory (the suffix picks the format), then write it atomically in one write whose size is
    checked. Pillow's encoders ignore a short write to a full disk, so encoding into the file could rename a cut
    image into place; here a full disk is one error naming the folder and the bytes needed."""
    path = Path(path)
    buffer = io.BytesIO()
    image.save(buffer, format=Image.registered_extensions()[path.suffix.lower()], **options)
    data = buffer.getvalue()
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                written = handle.write(data)
            if written != len(data) or tmp.stat().st_size != len(data):
                raise OSError(errno.ENOSPC, f"wrote {tmp.stat().st_size} of {len(data)} bytes")
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise DataError(
            f"no space left to write {path.name} ({len(data):,} bytes) in {path.parent}",
            path=path.parent,
            hint="free space on that disk, or set `results` to a folder on a disk with room, then run the workflow again",
        ) from None


def save_image(path: str | Path, image: np.ndarray) -> None:
    """Write a uint8 grayscale or RGB array; the suffix picks the format (JPEG, PNG, TIFF)."""
    options: dict[str, Any] = {}
    if Path(path).suffix.lower() in {".jpg", ".jpeg"}:
        options = {"quality": JPEG_QUALITY}
    elif Path(path).suffix.lower() in {".tif", ".tiff"}:
        options = {"compression": "tiff_lzw"}
    write_image(path, Image.fromarray(image), **options)


def write_table(path: str | Path, frame: pd.DataFrame, metadata: dict[str, Any]) -> None:
    """Write a Parquet table with JSON ``metadata`` in its schema, so the table describes itself."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    schema_meta = dict(table.schema.metadata or {})
    schema_meta[b"comcl"] = json.dumps(metadata).encode()
    with atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata(schema_meta), tmp)


def read_table(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a table written by :func:`write_table`: the frame and its metadata."""
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(b"comcl", b"{}")
    return table.to_pandas(), json.loads(raw)


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> None:
    """A matplotlib figure as PNG, atomically, without the Software tag (the same figure gives the same bytes)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", metadata={"Software": None})
