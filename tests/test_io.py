"""Atomic output: a failure inside the block leaves neither the final file nor a temporary one."""

from __future__ import annotations

import stat

import pandas as pd
import pytest

from comcl.io import atomic_directory, atomic_path, read_table, write_table


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
