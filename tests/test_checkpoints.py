"""Torch archives of the workflow: equal bytes for equal content, and checkpoints resumed only by their own configuration."""

from __future__ import annotations

import pytest
import torch

from comcl.checkpoints import load_checkpoint, resume_state, run_stamp, save_checkpoint, save_torch
from comcl.errors import DataError


def test_equal_content_saved_to_two_paths_gives_equal_bytes_and_loads_back(tmp_path):
    content = {"state": {"weight": torch.arange(6.0).reshape(2, 3)}, "meta": {"classes": ["MA", "HE"]}}
    save_torch(tmp_path / "a" / "model.pt", content)
    save_torch(tmp_path / "b" / "encoder.pt", content)
    assert (tmp_path / "a" / "model.pt").read_bytes() == (tmp_path / "b" / "encoder.pt").read_bytes()
    loaded = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    assert torch.equal(loaded["state"]["weight"], content["state"]["weight"]) and loaded["meta"] == content["meta"]
    assert [path.name for path in (tmp_path / "a").iterdir()] == ["model.pt"]


def test_a_checkpoint_of_another_configuration_is_refused_and_not_resumed(tmp_path):
    save_checkpoint(tmp_path / "checkpoint.pt", "stamp of run A", {"step": 3})
    assert load_checkpoint(tmp_path / "checkpoint.pt", "stamp of run A")["step"] == 3
    with pytest.raises(DataError, match="written by another configuration"):
        load_checkpoint(tmp_path / "checkpoint.pt", "stamp of run B")
    assert resume_state(tmp_path / "checkpoint.pt", "stamp of run B") is None
    assert resume_state(tmp_path / "missing.pt", "stamp of run A") is None


def test_the_temporary_file_of_a_write_that_a_kill_interrupted_is_removed_on_the_next_start(tmp_path):
    save_checkpoint(tmp_path / "checkpoint.pt", "stamp", {"step": 3})
    stale = tmp_path / ".checkpoint.k2j4x_.part.pt"  # what atomic_path leaves when killed before its rename
    stale.write_bytes(b"half a checkpoint")
    assert resume_state(tmp_path / "checkpoint.pt", "stamp")["step"] == 3
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_a_run_stamp_changes_with_the_settings_the_size_of_the_data_and_the_content_of_the_weights(tmp_path):
    data, weights = tmp_path / "index.parquet", tmp_path / "encoder.pt"
    data.write_bytes(b"12345")
    weights.write_bytes(b"abcde")
    stamp = run_stamp({"lr": 0.1, "epochs": 2}, sized=[data], read=[weights])
    assert run_stamp({"epochs": 2, "lr": 0.1}, sized=[data], read=[weights]) == stamp  # the order of keys does not count
    assert run_stamp({"lr": 0.2, "epochs": 2}, sized=[data], read=[weights]) != stamp
    weights.write_bytes(b"abcdf")  # the same size
    changed_weights = run_stamp({"lr": 0.1, "epochs": 2}, sized=[data], read=[weights])
    assert changed_weights != stamp
    data.write_bytes(b"123456")
    assert run_stamp({"lr": 0.1, "epochs": 2}, sized=[data], read=[weights]) not in {stamp, changed_weights}
