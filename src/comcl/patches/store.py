"""The patch store: one Parquet file per dataset version, one row per patch, pixels included.

One file rather than a folder of images: a store holds up to ~10^6 patches, and a million small
files are slow to list, copy and read. Rows are written in row groups of about ``row_group_bytes``
of encoded pixels as they come, so the writer's memory does not grow with the store; the reader
reads a whole row group at a time and :class:`GroupedShuffleSampler` shuffles row groups and the
patches inside each, so an epoch reads every row group once yet batches are still random.

Pixel encoding (``ENCODING``), chosen by measurement on 128 x 128 patches cut as the patch stage
cuts them (around lesion boxes and at random in the field of view) from synthetic images, half of
them degraded: fundus 512 x 640 RGB after a JPEG round trip (quality 92), chest 640 x 640 grey.
Mean bytes per patch, and encode / decode time per patch on one core:

=====================  =========================  ========================
codec                  RGB (800 patches)          grey (800 patches)
=====================  =========================  ========================
raw uint8              49152 B                    16384 B
PNG, zlib level 1      16617 B, 642 / 310 us      7779 B, 273 / 138 us
PNG, zlib level 6      14135 B, 2229 / 284 us     7345 B, 771 / 126 us
WebP lossless          9172 B, 9185 / 207 us      5530 B, 3717 / 117 us
lz4                    26727 B, 80 / 22 us        13341 B, 30 / 10 us
zstd 3                 20187 B, 157 / 52 us       9989 B, 76 / 30 us
zstd 3, row deltas     14286 B, 141 / 68 us       7607 B, 80 / 37 us
=====================  =========================  ========================

The choice is zstd (level 3) of each row minus the row above (uint8, modulo 256: PNG's "Up"
filter): about as small as PNG at level 6, but it decodes 3.5-4 times faster and encodes 4-15
times faster. Raw pixels decode for free but make a 10^6-patch RGB store 49 GB instead of 14 GB;
lz4 decodes 3 times faster but its store is nearly twice as large; WebP is a third smaller but
takes 9 ms per RGB patch to encode and decodes 3 times slower. Each patch is compressed on its own,
so that one patch decodes without its neighbours.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.utils.data

from comcl.errors import DataError
from comcl.io import atomic_path

ENCODING = "zstd3-row-delta"
METADATA_KEY = b"comcl"
STRING_COLUMNS = ("image_id", "split", "level", "label")
SCHEMA = pa.schema(
    [
        ("patch_id", pa.int64()),
        ("image_id", pa.string()),
        ("split", pa.string()),
        ("level", pa.string()),
        *((name, pa.int32()) for name in ("x0", "y0", "x1", "y1")),
        *((name, pa.float64()) for name in ("box_x1", "box_y1", "box_x2", "box_y2")),
        ("score", pa.float64()),
        ("label", pa.string()),
        ("box_exceeds_patch", pa.bool_()),
        ("pixels", pa.binary()),
    ]
)
INDEX_COLUMNS = SCHEMA.names[:-1]
_RESERVED = ("encoding", "size", "channels")
_CODEC = pa.Codec("zstd", compression_level=3)
_MIB = 1 << 20


def encode_patch(patch: np.ndarray) -> bytes:
    """zstd of the patch's rows, each minus the row above (the first row as it is)."""
    if patch.dtype != np.uint8 or patch.ndim != 3:
        raise ValueError(f"a patch is a (size, size, channels) uint8 array, got {patch.dtype} {patch.shape}")
    delta = np.empty(patch.shape, dtype=np.uint8)
    delta[0] = patch[0]
    np.subtract(patch[1:], patch[:-1], out=delta[1:])
    return _CODEC.compress(delta, asbytes=True)


def decode_patch(data: bytes | memoryview | np.ndarray, size: int, channels: int) -> np.ndarray:
    """The ``(size, size, channels)`` uint8 patch (RGB order for colour) that :func:`encode_patch` encoded.

    The running sum over rows is torch's: on uint8 it takes a third of numpy's time (11 vs 33 us per RGB patch).
    """
    delta = torch.frombuffer(_CODEC.decompress(data, decompressed_size=size * size * channels), dtype=torch.uint8)
    return torch.cumsum(delta.view(size, size, channels), 0, dtype=torch.uint8).numpy()


@dataclass(frozen=True)
class PatchRow:
    """One patch as the patch stage produces it; ``box``, ``score`` and ``label`` are None for random crops.

    ``window`` and ``box`` are in the frame of the image resized to the store's ``input_size``;
    ``box_exceeds_patch``: the box is wider or taller than a patch, so its window is larger and was
    resized to the patch size.
    """

    image_id: str
    split: str
    level: str
    window: tuple[int, int, int, int]
    box: tuple[float, float, float, float] | None
    score: float | None
    label: str | None
    box_exceeds_patch: bool
    pixels: np.ndarray


class PatchStoreWriter:
    """Stream patches into a store: ``with PatchStoreWriter(...) as writer: writer.add(rows)``.

    The file appears under its name only when the block ends without error; before that it is a
    temporary file beside it, removed on error. ``count`` is the number of patches added so far.
    """

    def __init__(self, path: str | Path, size: int, channels: int, metadata: dict[str, Any], row_group_bytes: int = _MIB) -> None:
        clash = [key for key in _RESERVED if key in metadata]
        if clash:
            raise ValueError(f"metadata keys {clash} are set by the store itself")
        self.path = Path(path)
        self.size = size
        self.channels = channels
        self.row_group_bytes = row_group_bytes
        self.count = 0
        self._metadata = {"encoding": ENCODING, "size": size, "channels": channels, **metadata}
        self._columns: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
        self._buffered = 0
        self._writer: pq.ParquetWriter | None = None

    def __enter__(self) -> Self:
        self._context = self._open()
        return self._context.__enter__()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> bool | None:
        return self._context.__exit__(exc_type, exc, traceback)

    @contextmanager
    def _open(self) -> Iterator[Self]:
        schema = SCHEMA.with_metadata({METADATA_KEY: json.dumps(self._metadata).encode()})
        with atomic_path(self.path) as tmp:
            self._writer = pq.ParquetWriter(
                tmp,
                schema,
                compression={name: "none" if name == "pixels" else "zstd" for name in SCHEMA.names},
                use_dictionary=list(STRING_COLUMNS),
                # Statistics of the pixels column would copy two patches per row group into the footer.
                write_statistics=list(INDEX_COLUMNS),
            )
            try:
                yield self
                self._flush()
            finally:
                self._writer.close()
                self._writer = None

    def add(self, rows: Sequence[PatchRow]) -> None:
        """Encode and buffer ``rows``; a row group is written each time ``row_group_bytes`` are buffered."""
        if self._writer is None:
            raise RuntimeError("PatchStoreWriter.add outside its with block")
        expected = (self.size, self.size, self.channels)
        for row in rows:
            if row.pixels.shape != expected:
                raise ValueError(f"patch of image {row.image_id!r} has shape {row.pixels.shape}, the store holds {expected}")
            data = encode_patch(row.pixels)
            box = (np.nan,) * 4 if row.box is None else row.box
            values = (
                self.count,
                row.image_id,
                row.split,
                row.level,
                *row.window,
                *box,
                np.nan if row.score is None else row.score,
                row.label,
                row.box_exceeds_patch,
                data,
            )
            for column, value in zip(self._columns.values(), values, strict=True):
                column.append(value)
            self.count += 1
            self._buffered += len(data)
            if self._buffered >= self.row_group_bytes:
                self._flush()

    def _flush(self) -> None:
        if not self._columns["patch_id"]:
            return
        table = pa.table(
            {name: pa.array(values, field.type) for (name, values), field in zip(self._columns.items(), SCHEMA, strict=True)}
        )
        assert self._writer is not None, "flushed only inside the with block"
        self._writer.write_table(table, row_group_size=table.num_rows)
        for values in self._columns.values():
            values.clear()
        self._buffered = 0


def read_store_metadata(path: str | Path) -> dict[str, Any]:
    """The store's JSON metadata (``encoding``, ``size``, ``channels`` and what the writer was given)."""
    try:
        raw = (pq.read_schema(path).metadata or {}).get(METADATA_KEY)
    except (OSError, pa.ArrowInvalid) as error:
        raise DataError(f"not a readable Parquet file ({error})", path=path, hint="run the patch stage again") from error
    if raw is None:
        raise DataError("not a patch store: no comcl metadata in its schema", path=path, hint="run the patch stage again")
    return json.loads(raw)


class PatchDataset(torch.utils.data.Dataset):
    """The patches of a store, by position (= ``patch_id``): ``transform(patch)`` or the uint8 array.

    ``index`` (one row per patch, every column but the pixels) and ``metadata`` are read at
    construction. The pixels are read a row group at a time, through a per-process file handle
    opened on first use (so DataLoader workers, forked or spawned, each open their own; a pickled
    dataset carries no handle) and an LRU cache of row groups' encoded pixels, at most
    ``cache_bytes`` (or one row group). The DataLoader fetches a whole batch with one call of
    ``__getitems__``, which finds every patch's row group at once.
    """

    def __init__(
        self, path: str | Path, transform: Callable[[np.ndarray], Any] | None = None, cache_bytes: int = 64 * _MIB
    ) -> None:
        self.path = Path(path)
        self.transform = transform
        self.cache_bytes = cache_bytes
        self.metadata = read_store_metadata(path)
        if self.metadata.get("encoding") != ENCODING:
            raise DataError(
                f"pixels encoded as {self.metadata.get('encoding')!r}, this version reads {ENCODING!r}",
                path=path,
                hint="run the patch stage again with this version",
            )
        self.size = int(self.metadata["size"])
        self.channels = int(self.metadata["channels"])
        file = pq.ParquetFile(path)
        sizes = [file.metadata.row_group(group).num_rows for group in range(file.num_row_groups)]
        self.row_group_starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self.index: pd.DataFrame = file.read(columns=INDEX_COLUMNS).to_pandas()
        self._reset()

    def _reset(self) -> None:
        self._pid: int | None = None
        self._file: pq.ParquetFile | None = None
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._cached = 0

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_pid=None, _file=None, _cache=OrderedDict(), _cached=0)
        return state

    def __len__(self) -> int:
        return int(self.row_group_starts[-1])

    def _row_group(self, group: int) -> tuple[np.ndarray, np.ndarray]:
        """Offsets and bytes of the encoded patches of ``group``, from the cache or the file."""
        if self._pid != os.getpid():
            self._reset()
            self._file = pq.ParquetFile(self.path)
            self._pid = os.getpid()
        if group in self._cache:
            self._cache.move_to_end(group)
            return self._cache[group]
        assert self._file is not None, "opened with _pid"
        # Arrow's thread pool would add ~0.9 ms to the ~0.1 ms that reading one column of ~1 MiB takes.
        pixels = self._file.read_row_group(group, columns=["pixels"], use_threads=False).column(0).combine_chunks()
        _, offsets, data = pixels.buffers()
        entry = (
            np.frombuffer(offsets, dtype=np.int32, count=len(pixels) + 1, offset=4 * pixels.offset),
            np.frombuffer(data, dtype=np.uint8),
        )
        self._cache[group] = entry
        self._cached += entry[1].nbytes
        while self._cached > self.cache_bytes and len(self._cache) > 1:
            _, (_, evicted) = self._cache.popitem(last=False)
            self._cached -= evicted.nbytes
        return entry

    def _check(self, indices: np.ndarray) -> None:
        bad = indices[(indices < 0) | (indices >= len(self))]
        if len(bad):
            raise IndexError(f"patch index {bad[0]} out of range: the store holds {len(self)} patches")

    def __getitem__(self, i: int) -> Any:
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        wanted = np.asarray(indices, dtype=np.int64)
        self._check(wanted)
        groups = np.searchsorted(self.row_group_starts, wanted, side="right") - 1
        items = []
        for i, group in zip((wanted - self.row_group_starts[groups]).tolist(), groups.tolist(), strict=True):
            offsets, data = self._row_group(group)
            patch = decode_patch(data[offsets[i] : offsets[i + 1]], self.size, self.channels)
            items.append(patch if self.transform is None else self.transform(patch))
        return items


class GroupedShuffleSampler(torch.utils.data.Sampler[int]):
    """A permutation of the store that keeps each row group together: random row-group order, random
    order inside each. The DataLoader cuts batches of consecutive indices, so an epoch reads each row
    group once in every worker that gets some of its patches (one or two workers, unless a group
    spans more batches), where a plain permutation reads a row group for nearly every patch once the
    store outgrows the cache.

    The order depends on ``seed`` and the epoch given to :meth:`set_epoch` (0 by default), through one
    SeedSequence of both, so two seeds never give the same orders one epoch apart.
    """

    def __init__(self, dataset: PatchDataset, seed: int = 0) -> None:
        self.starts = dataset.row_group_starts
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        sizes = np.diff(self.starts)
        parts = [self.starts[group] + rng.permutation(sizes[group]) for group in rng.permutation(len(sizes))]
        return iter(np.concatenate([np.zeros(0, np.int64), *parts]).tolist())
