"""Atomic output: a failure inside the block leaves neither the final file nor a temporary one."""

from __future__ import annotations

import builtins
import errno
import os
import stat

import numpy as np
import pandas as pd
import pytest

import comcl.io
from comcl.errors import DataError
from comcl.io import atomic_directory, atomic_path, read_table, save_image, write_table


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "table.parquet"
    target.write_text("previous")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.parquet"]


def test_atomic_directory_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "images"
    target.mkdir()
    (target / "old.png").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "new.png").write_text("new")
        raise RuntimeError("killed")
    assert sorted(p.name for p in target.iterdir()) == ["old.png"]
    with atomic_directory(target) as tmp:
        (tmp / "new.png").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]


def test_an_atomic_directory_gets_the_users_umask_like_a_file(tmp_path):
    with atomic_directory(tmp_path / "images") as tmp:
        (tmp / "a.png").write_text("a")
    with atomic_path(tmp_path / "file.txt") as tmp:
        tmp.write_text("f")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "images").stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((tmp_path / "file.txt").stat().st_mode) == 0o666 & ~umask


def test_tables_carry_their_metadata(tmp_path):
    frame = pd.DataFrame({"image_id": ["a", "b"], "level": ["L", "H~"]})
    write_table(tmp_path / "t.parquet", frame, {"task": "grading", "label_columns": ["dr_grade"]})
    read, meta = read_table(tmp_path / "t.parquet")
    assert read.equals(frame) and meta == {"task": "grading", "label_columns": ["dr_grade"]}


def test_atomic_path_gives_the_file_the_mode_open_would(tmp_path):
    with atomic_path(tmp_path / "out.txt") as tmp:
        tmp.write_text("x")
    (tmp_path / "plain.txt").write_text("x")
    assert stat.S_IMODE((tmp_path / "out.txt").stat().st_mode) == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)


def test_a_full_disk_is_one_error_naming_the_folder_and_leaves_no_cut_image(tmp_path, monkeypatch):
    """Pillow ignores a short write; the image is encoded in memory and its one write checked."""

    class FullDisk:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

    def full_disk(path, mode):
        return FullDisk(builtins.open(path, mode))

    monkeypatch.setattr(comcl.io, "open", full_disk, raising=False)
    with pytest.raises(DataError, match=r"no space left to write a.jpg \([\d,]+ bytes\) in ") as error:
        save_image(tmp_path / "a.jpg", np.zeros((64, 64, 3), np.uint8))
    assert error.value.path == tmp_path and list(tmp_path.iterdir()) == []
