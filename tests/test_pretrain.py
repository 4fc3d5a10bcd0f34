"""Contrastive pretraining: queues, step batches, every variant for a few steps, exact resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from comcl.errors import DataError
from comcl.io import write_table
from comcl.pretrain.data import PatchSource, StepBatches, group_members
from comcl.pretrain.model import ContrastiveModel
from comcl.pretrain.train import CHECKPOINT, pretrain
from tests.conftest import REPO

VARIANTS = {path.stem: yaml.safe_load(path.read_text()) for path in sorted((REPO / "config/pretrain").glob("*.yaml"))}
PARAMS = dict(
    arch="resnet18",
    dim=16,
    hidden=32,
    queue_size=12,
    momentum=0.99,
    temperature=0.07,
    batch_size=6,
    epochs=1,
    lr=1e-3,
    weight_decay=1e-4,
    cosine=True,
    input_size=32,
    image_size=40,
    split="train",
    checkpoint_interval=2,
    workers=0,
    device="cpu",
    seed=3,
    augment={"eyeq": {"preset": "fundus"}, "chestxray14": {"preset": "chest"}},
)


@pytest.fixture
def data(pretrain_data: tuple[Path, Path]) -> tuple[Path, Path]:
    return pretrain_data


def outputs(folder: Path) -> dict[str, Path]:
    return {name: folder / file for name, file in [("encoder", "encoder.pt"), ("training_log", "log.csv"), ("curves", "c.png"), ("summary", "s.json")]}


def run(variant: str, data: tuple[Path, Path], folder: Path, **changes) -> dict:
    store, index = data
    return pretrain(VARIANTS[variant], dict(PARAMS, **changes), store, index, folder / "work", **outputs(folder), threads=2)


def test_queues_wrap_around_and_are_saved_with_the_model():
    model = ContrastiveModel("resnet18", ["L", "H"], queue_size=5, dim=4, hidden=8)
    keys = torch.nn.functional.normalize(torch.randn(7, 4), dim=1)
    model.enqueue("L", keys[:3])
    assert model.negatives("L").shape == (3, 4) and model.negatives("H").shape == (0, 4)
    model.enqueue("L", keys[3:])  # 4 more: wraps, overwriting the two oldest
    assert torch.equal(model.negatives("L"), torch.cat([keys[5:7], keys[2:5]]))
    assert int(model.pointers[0]) == 2 and int(model.filled[0]) == 5
    copy = ContrastiveModel("resnet18", ["L", "H"], queue_size=5, dim=4, hidden=8)
    copy.load_state_dict(model.state_dict())
    assert torch.equal(copy.negatives("L"), model.negatives("L")) and int(copy.pointers[0]) == 2


def test_the_momentum_encoder_starts_equal_and_follows_slowly():
    model = ContrastiveModel("resnet18", ["L"], queue_size=2, dim=4, hidden=8, momentum=0.9)
    query, key = model.head_q[0].weight, model.head_k[0].weight
    assert torch.equal(query, key) and not key.requires_grad
    before = key.detach().clone()
    with torch.no_grad():
        query.add_(1.0)
    model.momentum_update()
    assert torch.allclose(key, before + 0.1)


def test_a_steps_batch_depends_only_on_the_step(data):
    source = PatchSource(data[0])
    members = group_members(source, {"L": ["L"], "healthy": ["H", "H~"]}, "train")
    assert [len(members[name]) for name in ("L", "healthy")] == [20, 40]
    assert set(source.frame.loc[members["healthy"], "level"]) == {"H", "H~"}

    def augment(image, seed):
        return np.full((3, 4, 4), seed % 1000, np.float32) + image[:4, :4].transpose(2, 0, 1)

    batches = StepBatches(source, members, 6, augment, seed=1)
    again = StepBatches(source, members, 6, augment, seed=1)
    assert all(torch.equal(batches[5][g], again[5][g]) for g in members)
    assert batches[5]["L"].shape == (2, 6, 3, 4, 4) and not torch.equal(batches[5]["L"][0], batches[5]["L"][1])
    first_epoch = np.concatenate([batches.positions("L", 6 * step, 6) for step in range(4)])[:20]
    assert sorted(first_epoch) == sorted(members["L"])  # each patch once per epoch


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_trains_for_a_few_steps(variant, data, tmp_path):
    summary = run(variant, data, tmp_path)
    state = torch.load(tmp_path / "encoder.pt", weights_only=True)
    assert "conv1.weight" in state and "layer4.1.bn2.weight" in state and not any(key.startswith("fc.") for key in state)
    log = pd.read_csv(tmp_path / "log.csv")
    assert len(log) == summary["steps"] > 0 and np.isfinite(log["loss"]).all()
    for anchor, negative in VARIANTS[variant]["pairs"]:
        assert f"loss {anchor}/{negative}" in log.columns
    spl = VARIANTS[variant]["spl"]["enabled"]
    assert (log["k_t"].iloc[-1] < PARAMS["queue_size"]) == (spl and len(log) > 1)
    assert json.loads((tmp_path / "s.json").read_text())["variant"] == VARIANTS[variant]["name"]


def test_a_killed_run_resumes_to_the_same_weights(data, tmp_path):
    total = run("comcl", data, tmp_path / "whole", epochs=2)["steps"]

    class Killed(Exception):
        pass

    stopped = tmp_path / "stopped"
    original = torch.optim.Adam.step
    calls = {"n": 0}

    def step_then_die(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise Killed
        return original(self, *args, **kwargs)

    torch.optim.Adam.step = step_then_die
    try:
        with pytest.raises(Killed):
            run("comcl", data, stopped, epochs=2)
    finally:
        torch.optim.Adam.step = original
    assert torch.load(stopped / "work" / CHECKPOINT, weights_only=True)["step"] == 2
    run("comcl", data, stopped, epochs=2)
    assert not (stopped / "work" / CHECKPOINT).exists()  # a finished run's checkpoint is deleted
    whole, resumed = (torch.load(folder / "encoder.pt", weights_only=True) for folder in (tmp_path / "whole", stopped))
    assert total > 3 and all(torch.equal(whole[key], resumed[key]) for key in whole)
    assert pd.read_csv(stopped / "log.csv")["loss"].tolist() == pytest.approx(pd.read_csv(tmp_path / "whole" / "log.csv")["loss"].tolist())


def test_too_few_patches_for_a_batch_or_a_queue_is_named(data, tmp_path):
    with pytest.raises(DataError, match=r"group 'L' has 20 training items, but the configuration needs 24"):
        run("comcl", data, tmp_path, batch_size=24)
    with pytest.raises(DataError, match=r"group 'H' has 20 training items, but the configuration needs 30.*\n.*queue_size"):
        run("comcl", data, tmp_path, queue_size=30)


def test_a_pair_naming_an_unknown_group_is_refused(data, tmp_path):
    variant = dict(VARIANTS["comcl"], pairs=[["L", "lesion"]])
    with pytest.raises(DataError, match=r"pair \(L, lesion\) names 'lesion'"):
        pretrain(variant, PARAMS, *data, tmp_path / "work", **outputs(tmp_path), threads=1)


def test_pairs_with_a_level_that_has_no_images_are_left_out_and_listed(data, tmp_path):
    store, index = data
    frame = pd.read_parquet(index)
    write_table(tmp_path / "lq100.parquet", frame[frame["level"].isin(["L~", "H~"])], {"proportion": "lq100"})
    summary = pretrain(VARIANTS["comcl"], PARAMS, store, tmp_path / "lq100.parquet", tmp_path / "work", **outputs(tmp_path), threads=2)
    assert summary["pairs"] == [["L~", "H~"]] and summary["pairs_without_images"] == [["L", "L~"], ["L", "H"]]
    with pytest.raises(DataError, match="none of the pairs"):
        pretrain(VARIANTS["comcl_v1"], PARAMS, store, tmp_path / "lq100.parquet", tmp_path / "w2", **outputs(tmp_path), threads=2)
