"""Torch archives of the workflow: equal bytes for equal content, and checkpoints resumed only by their own configuration."""

from __future__ import annotations

import pytest
import torch

from comcl.checkpoints import load_checkpoint, resume_state, save_checkpoint, save_torch
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
