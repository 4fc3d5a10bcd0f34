"""Contrastive pretraining: queues, step batches, every variant for a few steps, exact resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
import yaml

from comcl import weights
from comcl.augment import build_augmentation
from comcl.errors import DataError
from comcl.io import write_table
from comcl.pretrain import train as train_module
from comcl.pretrain.data import PatchSource, StepBatches, group_members, image_codes
from comcl.pretrain.model import ContrastiveModel
from comcl.pretrain.train import CHECKPOINT, build_optimizer, planned_steps, pretrain, train_step
from tests.conftest import REPO

VARIANTS = {path.stem: yaml.safe_load(path.read_text()) for path in sorted((REPO / "config/pretrain").glob("*.yaml"))}
PARAMS = dict(
    arch="resnet18",
    init="scratch",
    dim=16,
    hidden=32,
    queue_size=12,
    momentum=0.99,
    temperature=0.07,
    key_splits=2,
    batch_size=6,
    epochs=1,
    steps=None,
    lr=1e-3,
    weight_decay=1e-4,
    cosine=True,
    view_size=32,
    image_view_size=40,
    input_size=48,
    split="train",
    checkpoint_interval=2,
    workers=0,
    device="cpu",
    seed=3,
    augment={"fundus": {"preset": "fundus"}, "chest": {"preset": "chest"}},
)


@pytest.fixture
def data(pretrain_data: tuple[Path, Path]) -> tuple[Path, Path]:
    return pretrain_data


def outputs(folder: Path) -> dict[str, Path]:
    return {
        name: folder / file
        for name, file in [("encoder", "encoder.pt"), ("training_log", "log.csv"), ("curves", "c.png"), ("summary", "s.json")]
    }


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

    augment = build_augmentation({"preset": "fundus"}, 4)
    batches = StepBatches(source, members, 6, augment, seed=1)
    again = StepBatches(source, members, 6, augment, seed=1)
    views = batches[5]["views"]
    assert all(torch.equal(views[g], again[5]["views"][g]) for g in members)
    assert views["L"].shape == (2, 6, 3, 4, 4) and not torch.equal(views["L"][0], views["L"][1])
    # Each row's image code names the image of the patch at that position.
    codes = dict(zip(source.frame["image_id"], image_codes(source.frame), strict=False))
    rows = batches.positions("L", 5 * 6, 6)
    assert batches[5]["images"]["L"].tolist() == [codes[i] for i in source.frame["image_id"].iloc[rows]]
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
    original = torch.optim.AdamW.step
    calls = {"n": 0}

    def step_then_die(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise Killed
        return original(self, *args, **kwargs)

    torch.optim.AdamW.step = step_then_die
    try:
        with pytest.raises(Killed):
            run("comcl", data, stopped, epochs=2)
    finally:
        torch.optim.AdamW.step = original
    assert torch.load(stopped / "work" / CHECKPOINT, weights_only=True)["step"] == 2
    run("comcl", data, stopped, epochs=2)
    assert not (stopped / "work" / CHECKPOINT).exists()  # a finished run's checkpoint is deleted
    whole, resumed = (torch.load(folder / "encoder.pt", weights_only=True) for folder in (tmp_path / "whole", stopped))
    assert total > 3 and all(torch.equal(whole[key], resumed[key]) for key in whole)
    assert pd.read_csv(stopped / "log.csv")["loss"].tolist() == pytest.approx(
        pd.read_csv(tmp_path / "whole" / "log.csv")["loss"].tolist()
    )


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
    summary = pretrain(
        VARIANTS["comcl"], PARAMS, store, tmp_path / "lq100.parquet", tmp_path / "work", **outputs(tmp_path), threads=2
    )
    assert summary["pairs"] == [["L~", "H~"]] and summary["pairs_without_images"] == [["L", "L~"], ["L", "H"]]
    with pytest.raises(DataError, match="none of the pairs"):
        pretrain(VARIANTS["comcl_v1"], PARAMS, store, tmp_path / "lq100.parquet", tmp_path / "w2", **outputs(tmp_path), threads=2)


def test_comcls_selected_share_rises_over_the_run_to_nearly_all_anchors(data, tmp_path):
    summary = run("comcl", data, tmp_path, epochs=2)
    log = pd.read_csv(tmp_path / "log.csv")
    assert summary["steps"] == len(log) == 8
    for anchor, negative in VARIANTS["comcl"]["pairs"]:
        share = log[f"selected {anchor}/{negative}"]
        assert share.iloc[0] <= 0.34 and share.iloc[-1] >= 0.9 and share.is_monotonic_increasing
        assert (log[f"guard {anchor}/{negative}"] == 0).all()
        assert summary["selected_share"][f"{anchor}/{negative}"]["last"] == share.iloc[-1]
    # The literal rule of Eq. 3 selects nothing by itself until the threshold 1 / K_t nears 1: its guard decides.
    literal = dict(VARIANTS["comcl"], spl={"enabled": True, "rule": "inverse_k", "min_fraction": 0.25})
    pretrain(literal, dict(PARAMS, epochs=2), *data, tmp_path / "literal" / "work", **outputs(tmp_path / "literal"), threads=2)
    assert (pd.read_csv(tmp_path / "literal" / "log.csv")["guard L/H"].iloc[:-1] == 1).all()


def _step_model(levels, queue_size=4, **kwargs) -> ContrastiveModel:
    torch.manual_seed(0)
    return ContrastiveModel("resnet18", levels, queue_size=queue_size, dim=8, hidden=16, **kwargs).train()


def test_levels_share_batch_norm_so_a_planted_per_level_offset_survives():
    """Two levels that differ only by a constant added to the pixels: encoded one level per batch, batch norm
    takes the offset out (up to the borders, where zero padding differs); encoded together it stays."""
    model = _step_model(["A", "B"])
    images = torch.rand(6, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    stem = []
    model.backbone_q.bn1.register_forward_hook(lambda module, inputs, output: stem.append(output.detach()))
    with torch.no_grad():
        model.query(images), model.query(images + 0.5)
        separate = (stem[0] - stem[1])[:, :, 3:-3, 3:-3].abs().mean()
        stem.clear()
        together = model.queries({"A": images, "B": images + 0.5})
        joint = (stem[0][:6] - stem[0][6:])[:, :, 3:-3, 3:-3].abs().mean()
        alike = model.queries({"A": images, "B": images.clone()})
    assert len(stem) == 2 and stem[0].shape[0] == 12  # one pass over both levels, not one per level
    assert joint > 5 * separate
    assert (together["A"] - together["B"]).norm(dim=1).min() > 0.1
    assert torch.allclose(alike["A"], alike["B"])


def test_keys_are_encoded_in_shuffled_sub_batches_and_come_back_in_order():
    model = _step_model(["A", "B"])
    generator = torch.Generator().manual_seed(2)
    groups = {"A": torch.randn(4, 3, 32, 32, generator=generator), "B": torch.randn(6, 3, 32, 32, generator=generator)}
    whole = torch.cat([groups["A"], groups["B"]])
    with torch.no_grad():
        one = model.shuffled_keys(groups, 1, torch.Generator().manual_seed(0))
        assert torch.allclose(torch.cat([one["A"], one["B"]]), model.key(whole), atol=1e-6)
        two = model.shuffled_keys(groups, 2, torch.Generator().manual_seed(0))
        permutation = torch.randperm(10, generator=torch.Generator().manual_seed(0))
        expected = torch.empty(10, 8)
        for chunk in permutation.tensor_split(2):
            expected[chunk] = model.key(whole[chunk])  # each sub-batch with statistics of its own
    assert torch.allclose(torch.cat([two["A"], two["B"]]), expected, atol=1e-6)
    assert not torch.allclose(torch.cat([two["A"], two["B"]]), model.key(whole), atol=1e-3)


SPL = {"enabled": True, "rule": "curriculum", "min_fraction": 0.25}


def _one_step(levels, pairs, spl, images=None, fill_images=None, k_t=4):
    model = _step_model(levels)
    generator = torch.Generator().manual_seed(3)
    for level in levels:
        model.enqueue(level, torch.nn.functional.normalize(torch.randn(4, 8, generator=generator), dim=1), fill_images)
    batch = {level: torch.randn(2, 4, 3, 32, 32, generator=generator) for level in levels}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    row = train_step(model, optimizer, batch, pairs, spl, k_t, 0.07, images=images, key_splits=2)
    return row, model


def test_comcl_and_its_version_without_self_paced_learning_update_differently_on_one_batch():
    pairs = [("A", "B")]
    curriculum, with_spl = _one_step(["A", "B"], pairs, SPL)
    everything, without = _one_step(["A", "B"], pairs, dict(SPL, enabled=False))
    assert curriculum["selected A/B"] == 0.25 and everything["selected A/B"] == 1.0
    weights = [(a, b) for a, b in zip(with_spl.backbone_q.parameters(), without.backbone_q.parameters(), strict=True)]
    assert max(float((a - b).detach().abs().max()) for a, b in weights) > 1e-6


def test_an_anchor_never_meets_its_own_image_among_its_negatives():
    """A same-level pair (Lesion-based CL, Basic CL) with a tiny queue that holds only earlier keys of the
    anchors' own image: with the image ids every negative is masked, and the loss is that of the positive alone."""
    same_image = torch.full((4,), 7)
    off = dict(SPL, enabled=False)
    masked, _ = _one_step(["lesion"], [("lesion", "lesion")], off, images={"lesion": same_image}, fill_images=same_image)
    unmasked, _ = _one_step(
        ["lesion"], [("lesion", "lesion")], off, images={"lesion": torch.full((4,), 8)}, fill_images=same_image
    )
    assert masked["loss lesion/lesion"] == pytest.approx(0.0, abs=1e-6)
    assert unmasked["loss lesion/lesion"] > 0.1


def test_pretraining_starts_from_imagenet_weights_when_they_can_be_fetched(data, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(weights, "IMAGENET_URLS", {"resnet18": "http://127.0.0.1:9/resnet18-00000000.pth"})
    monkeypatch.setattr(train_module, "IMAGENET_URLS", weights.IMAGENET_URLS)
    summary = run("comcl", data, tmp_path / "offline", init="imagenet", epochs=1)
    assert summary["init"] == "scratch (ImageNet weights unavailable)"

    torch.manual_seed(5)
    imagenet = torchvision.models.resnet18(weights=None).state_dict()
    cached = weights.cache_path(weights.IMAGENET_URLS["resnet18"])
    cached.parent.mkdir(parents=True, exist_ok=True)
    torch.save(imagenet, cached)
    with monkeypatch.context() as patched:
        seen = {}
        original = ContrastiveModel.__init__

        def spy(self, *args, **kwargs):
            original(self, *args, **kwargs)
            seen["q"] = {k: v.clone() for k, v in self.backbone_q.state_dict().items()}
            seen["k"] = {k: v.clone() for k, v in self.backbone_k.state_dict().items()}

        patched.setattr(ContrastiveModel, "__init__", spy)
        summary = run("comcl", data, tmp_path / "online", init="imagenet", epochs=1)
    assert summary["init"] == "imagenet"
    for encoder in ("q", "k"):
        assert all(torch.equal(seen[encoder][key], imagenet[key]) for key in seen[encoder])
    with pytest.raises(ValueError, match="no ImageNet weights are known for 'resnet101'"):
        run("comcl", data, tmp_path / "other", init="imagenet", arch="resnet101")


def _off_centre_rms(model: ContrastiveModel) -> float:
    """The rms of the off-centre taps of the query encoder's last-stage 3x3 convolutions."""
    taps = torch.cat(
        [
            m.weight.detach()[:, :, [0, 0, 0, 1, 1, 2, 2, 2], [0, 1, 2, 0, 2, 0, 1, 2]].flatten()
            for m in model.backbone_q.layer4.modules()
            if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)
        ]
    )
    return float(taps.square().mean().sqrt())


@pytest.mark.parametrize("decoupled", [True, False])
def test_weights_without_data_gradient_keep_their_scale_through_pretraining(decoupled):
    """16-px views: the last stage sees a 1x1 map and its off-centre taps get no data gradient. The pretraining
    optimiser (decoupled decay) keeps them; Adam's coupled L2, the optimiser this replaced, sends them to zero."""
    model = _step_model(["A", "B"])
    model.enqueue("B", torch.nn.functional.normalize(torch.randn(4, 8), dim=1))
    start = _off_centre_rms(model)
    if decoupled:
        optimizer = build_optimizer(model, lr=1e-3, weight_decay=1e-4)
    else:
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(4)
    for _ in range(40):
        batch = {level: torch.randn(2, 4, 3, 16, 16, generator=generator) for level in ("A", "B")}
        train_step(model, optimizer, batch, [("A", "B")], dict(SPL, enabled=False), 4, 0.07, key_splits=2)
    ratio = _off_centre_rms(model) / start
    if decoupled:
        assert ratio > 0.99
    else:
        assert ratio < 0.3


def test_a_step_budget_is_the_same_for_every_variant_whatever_its_data():
    assert planned_steps(dict(PARAMS, steps=7), longest=1000) == planned_steps(dict(PARAMS, steps=7), longest=3) == 7
    assert planned_steps(dict(PARAMS, epochs=2, batch_size=6), longest=13) == 6  # 2 passes of ceil(13 / 6) batches


def test_a_pretraining_with_a_step_budget_runs_that_many_steps(data, tmp_path):
    summary = run("comcl", data, tmp_path, steps=3)
    assert summary["steps"] == 3
    assert len(pd.read_csv(tmp_path / "log.csv")) == 3
