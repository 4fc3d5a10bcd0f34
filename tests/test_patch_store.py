"""The patch store: lossless round trip, row groups, random and DataLoader reads, atomic writes."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
import torch.utils.data

from comcl.io import read_table
from comcl.patches.store import (
    INDEX_COLUMNS,
    GroupedShuffleSampler,
    PatchDataset,
    PatchRow,
    PatchStoreWriter,
    decode_patch,
    encode_patch,
    read_store_metadata,
)

SIZE = 24
COLUMNS = [
    "patch_id", "image_id", "split", "level", "x0", "y0", "x1", "y1",
    "box_x1", "box_y1", "box_x2", "box_y2", "score", "label", "box_exceeds_patch", "pixels",
]  # fmt: skip


def make_rows(n: int, channels: int, seed: int = 0) -> list[PatchRow]:
    """``n`` distinct patches (smooth ramps plus noise, so they compress as images do), every other a random crop."""
    rng = np.random.default_rng(seed)
    ramp = np.add.outer(np.arange(SIZE), np.arange(SIZE))[..., None]
    rows = []
    for i in range(n):
        pixels = (ramp * (i % 7 + 1) + rng.integers(0, 12, (SIZE, SIZE, channels)) + 37 * i) % 256
        pixels = pixels.astype(np.uint8)
        pixels[0, 0, 0], pixels[0, 1, 0] = i % 256, i // 256  # unique per patch
        x0, y0 = int(rng.integers(0, 500)), int(rng.integers(0, 400))
        lesion = i % 2 == 0
        rows.append(
            PatchRow(
                image_id=f"img{i // 3:03d}",
                split="test" if i % 5 == 0 else "train",
                level=("L", "L~")[i // 2 % 2] if lesion else ("H", "H~")[i // 2 % 2],
                window=(x0, y0, x0 + SIZE, y0 + SIZE),
                box=(x0 + 2.5, y0 + 3.25, x0 + 10.0, y0 + 20.125) if lesion else None,
                score=float(rng.random()) if lesion else None,
                label=("MA", "HE", "EX")[i % 3] if lesion else None,
                box_exceeds_patch=lesion and i % 3 == 0,
                pixels=pixels,
            )
        )
    return rows


def write_store(path: Path, rows: list[PatchRow], channels: int, row_group_bytes: int = 1 << 20) -> Path:
    with PatchStoreWriter(path, SIZE, channels, {"dataset": "eyeq", "proportion": 0.7}, row_group_bytes) as writer:
        writer.add(rows[: len(rows) // 2])
        writer.add(rows[len(rows) // 2 :])
    assert writer.count == len(rows)
    return path


def to_tensor(patch: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(patch)


@pytest.mark.parametrize("channels", [3, 1])
def test_encode_decode_is_lossless(channels: int) -> None:
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (60, 70, channels), dtype=np.uint8)
    image[10:20] = 255
    image[20:30] = 0  # row differences that wrap around modulo 256
    patch = image[7 : 7 + SIZE, 30 : 30 + SIZE]  # a view, not contiguous
    assert not patch.flags.c_contiguous
    decoded = decode_patch(encode_patch(patch), SIZE, channels)
    assert decoded.dtype == np.uint8 and decoded.shape == (SIZE, SIZE, channels)
    np.testing.assert_array_equal(decoded, patch)
    with pytest.raises(ValueError, match="uint8"):
        encode_patch(patch.astype(np.float32))


@pytest.mark.parametrize("channels", [3, 1])
def test_round_trip_keeps_every_column(tmp_path: Path, channels: int) -> None:
    rows = make_rows(30, channels)
    path = write_store(tmp_path / "store.parquet", rows, channels)
    dataset = PatchDataset(path)
    assert len(dataset) == 30
    assert pq.read_schema(path).names == COLUMNS
    assert list(dataset.index.columns) == COLUMNS[:-1] == list(INDEX_COLUMNS)
    index = dataset.index
    assert index["patch_id"].tolist() == list(range(30))
    for column in ("image_id", "split", "level", "box_exceeds_patch"):
        assert index[column].tolist() == [getattr(row, column) for row in rows]
    assert index[["x0", "y0", "x1", "y1"]].to_numpy().tolist() == [list(row.window) for row in rows]
    assert (index[["x0", "y0", "x1", "y1"]].dtypes == np.int32).all() and index["score"].dtype == np.float64
    boxes = index[["box_x1", "box_y1", "box_x2", "box_y2"]].to_numpy()
    for row, box, score, label in zip(rows, boxes, index["score"], index["label"], strict=True):
        if row.box is None:
            assert np.isnan(box).all() and np.isnan(score) and pd.isna(label)
        else:
            assert tuple(box) == row.box and score == row.score and label == row.label
    for i, row in enumerate(rows):
        patch = dataset[i]
        assert patch.dtype == np.uint8 and patch.shape == (SIZE, SIZE, channels)
        np.testing.assert_array_equal(patch, row.pixels)
    expected = {
        "encoding": dataset.metadata["encoding"],
        "size": SIZE,
        "channels": channels,
        "dataset": "eyeq",
        "proportion": 0.7,
    }
    assert dataset.metadata == expected == read_store_metadata(path)
    assert read_table(path)[1] == expected  # the comcl.io convention


def test_pixels_uncompressed_and_strings_dictionary_encoded(tmp_path: Path) -> None:
    path = write_store(tmp_path / "store.parquet", make_rows(20, 3), 3)
    group = pq.ParquetFile(path).metadata.row_group(0)
    columns = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    assert columns["pixels"].compression == "UNCOMPRESSED"
    assert columns["pixels"].statistics is None
    for name in ("image_id", "split", "level", "label"):
        assert any("DICTIONARY" in encoding for encoding in columns[name].encodings), name


def test_row_groups_of_about_row_group_bytes(tmp_path: Path) -> None:
    rows = make_rows(60, 3)
    sizes = [len(encode_patch(row.pixels)) for row in rows]
    target = 4 * max(sizes)
    path = write_store(tmp_path / "store.parquet", rows, 3, row_group_bytes=target)
    metadata = pq.ParquetFile(path).metadata
    counts = [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]
    assert metadata.num_row_groups >= 4 and sum(counts) == 60
    starts = np.cumsum([0, *counts])
    group_bytes = [sum(sizes[starts[g] : starts[g + 1]]) for g in range(len(counts))]
    for size in group_bytes[:-1]:
        assert target <= size < target + max(sizes)
    assert group_bytes[-1] < target + max(sizes)
    np.testing.assert_array_equal(PatchDataset(path).row_group_starts, starts)


def test_random_order_reads_what_was_written(tmp_path: Path) -> None:
    rows = make_rows(80, 3)
    path = write_store(tmp_path / "store.parquet", rows, 3, row_group_bytes=3000)
    dataset = PatchDataset(path, cache_bytes=4000)  # about one row group: most reads miss the cache
    order = np.random.default_rng(1).permutation(80)
    for i in order:
        np.testing.assert_array_equal(dataset[int(i)], rows[i].pixels)
    batch = dataset.__getitems__(order[:17].tolist())
    for i, patch in zip(order[:17], batch, strict=True):
        np.testing.assert_array_equal(patch, rows[i].pixels)
    assert dataset._cached <= 4000 or len(dataset._cache) == 1
    with pytest.raises(IndexError):
        dataset[80]
    with pytest.raises(IndexError):
        dataset[-1]


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_with_two_workers_reads_every_patch_once(tmp_path: Path, context: str) -> None:
    rows = make_rows(150, 3)
    path = write_store(tmp_path / "store.parquet", rows, 3, row_group_bytes=4000)
    dataset = PatchDataset(path, transform=to_tensor)
    dataset[0]  # the parent opens its handle first: the workers must open their own
    sampler = GroupedShuffleSampler(dataset, seed=3)
    loader = torch.utils.data.DataLoader(dataset, batch_size=16, sampler=sampler, num_workers=2, multiprocessing_context=context)
    by_content = {row.pixels.tobytes(): i for i, row in enumerate(rows)}
    seen = [by_content[patch.numpy().tobytes()] for batch in loader for patch in batch]
    assert sorted(seen) == list(range(150))
    assert seen == list(sampler)  # in the sampler's order


def test_grouped_sampler_is_a_permutation_grouped_by_row_group(tmp_path: Path) -> None:
    path = write_store(tmp_path / "store.parquet", make_rows(90, 1), 1, row_group_bytes=2000)
    dataset = PatchDataset(path)
    starts = dataset.row_group_starts
    assert len(starts) > 4
    sampler = GroupedShuffleSampler(dataset, seed=7)
    first = list(sampler)
    assert len(sampler) == 90 and sorted(first) == list(range(90))
    groups = np.searchsorted(starts, first, side="right") - 1
    runs = groups[np.r_[True, groups[1:] != groups[:-1]]]
    assert len(runs) == len(starts) - 1  # each row group is read in one run
    assert runs.tolist() != sorted(runs.tolist())  # row groups shuffled
    inside = [np.asarray(first)[groups == g] for g in runs]
    assert any((np.diff(part) < 0).any() for part in inside)  # and patches inside them
    assert first == list(GroupedShuffleSampler(dataset, seed=7))
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(second) == list(range(90)) and second != first
    again = GroupedShuffleSampler(dataset, seed=7)
    again.set_epoch(1)
    assert list(again) == second
    assert list(GroupedShuffleSampler(dataset, seed=8)) != first


def test_failed_write_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "store.parquet"
    with pytest.raises(RuntimeError, match="boom"), PatchStoreWriter(path, SIZE, 3, {}, row_group_bytes=2000) as writer:
        writer.add(make_rows(40, 3))  # some row groups already written to the temporary file
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    wrong = make_rows(2, 1)
    with pytest.raises(ValueError, match="img000.*shape"), PatchStoreWriter(path, SIZE, 3, {}) as writer:
        writer.add(wrong)
    assert list(tmp_path.iterdir()) == []


def test_empty_store_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    with PatchStoreWriter(path, SIZE, 1, {"dataset": "chestxray14"}):
        pass
    dataset = PatchDataset(path)
    assert len(dataset) == 0 and dataset.metadata["dataset"] == "chestxray14" and dataset.metadata["channels"] == 1
    assert list(dataset.index.columns) == COLUMNS[:-1] and dataset.index.empty
    assert list(GroupedShuffleSampler(dataset)) == []
    with pytest.raises(IndexError):
        dataset[0]


def test_dataset_pickles_without_its_open_file(tmp_path: Path) -> None:
    rows = make_rows(12, 3)
    dataset = PatchDataset(write_store(tmp_path / "store.parquet", rows, 3, row_group_bytes=2000))
    dataset[5]  # opens the file and fills the cache
    restored = pickle.loads(pickle.dumps(dataset))
    assert restored._file is None and not restored._cache
    assert len(restored) == 12 and restored.metadata == dataset.metadata
    pd.testing.assert_frame_equal(restored.index, dataset.index)
    np.testing.assert_array_equal(restored[11], rows[11].pixels)
