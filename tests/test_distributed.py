"""Training on two processes (gloo, on CPU) reaches what one process reaches with the whole batch.

One step is compared, with tolerances for float rounding: batch statistics and gradients summed in
another order differ in the last bits, and chaotic training amplifies that over many steps.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from comcl import distributed
from comcl.errors import DataError
from comcl.finetune.model import build_classifier
from comcl.finetune.train import finetune
from comcl.pretrain.model import ContrastiveModel
from comcl.pretrain.train import CHECKPOINT, pretrain, train_step
from tests.interrupt import Killed, kill_after_optimizer_steps
from tests.test_finetune import PARAMS as FINETUNE
from tests.test_finetune import tiny_index
from tests.test_pretrain import PARAMS as PRETRAIN
from tests.test_pretrain import VARIANTS, outputs

CPU = torch.device("cpu")
LEVELS = ["A", "B"]
PAIRS = [("A", "B"), ("B", "A")]
SPL = {"enabled": True, "rule": "curriculum", "min_fraction": 0.25}


@pytest.fixture
def data(pretrain_data: tuple[Path, Path]) -> tuple[Path, Path]:
    return pretrain_data


def _model() -> ContrastiveModel:
    torch.manual_seed(0)
    return ContrastiveModel("resnet18", LEVELS, queue_size=8, dim=16, hidden=32, momentum=0.9)


def _one_step(batch: dict[str, torch.Tensor], fill: torch.Tensor) -> dict:
    """One training step on this process's shard of ``batch``: the log row, the state after it, and every process's queues.

    SGD, whose update is the gradient: Adam's first update is about ``lr * sign(gradient)``, which
    rounding flips where a gradient is nearly zero.
    """
    if distributed.world_size() > 1:
        torch.set_num_threads(1)  # each spawned process would take every core
    model = _model().synchronise_queries()
    for level, keys in zip(LEVELS, (fill, fill.flip(0)), strict=True):
        model.enqueue(level, keys, torch.arange(len(keys)))
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    shard = {name: views[:, distributed.shard(views.shape[1])] for name, views in batch.items()}
    # Images 0-5 of every level: each anchor's own image is among the queued keys, and masked out.
    images = {name: torch.arange(views.shape[1])[distributed.shard(views.shape[1])] for name, views in batch.items()}
    row = train_step(model, optimizer, shard, PAIRS, SPL, k_t=4, temperature=0.07, images=images, key_splits=4, shuffle_seed=5)
    state = {name: value.clone() for name, value in model.state_dict().items()}
    return {"row": row, "state": state, "queues": distributed.all_gather(model.queues[None])}


def _relative_change(after: dict, reference: dict, before: dict, prefixes: tuple[str, ...]) -> float:
    """|update - reference update| / |reference update| over the parameters whose names start with ``prefixes``."""
    names = [name for name in before if name.startswith(prefixes) and "running" not in name and before[name].is_floating_point()]
    difference = sum(float(((after[name] - reference[name]).double() ** 2).sum()) for name in names)
    update = sum(float(((reference[name] - before[name]).double() ** 2).sum()) for name in names)
    return math.sqrt(difference / update)


def test_one_pretraining_step_on_two_processes_is_one_step_on_the_whole_batch():
    generator = torch.Generator().manual_seed(1)
    batch = {level: torch.randn(2, 6, 3, 32, 32, generator=generator) for level in LEVELS}
    fill = F.normalize(torch.randn(8, 16, generator=generator), dim=1)
    before = _model().state_dict()
    one = _one_step(batch, fill)
    two = distributed.launch(_one_step, (batch, fill), 2, CPU)

    # The keys of both shards entered the queues, in batch order, and both processes' queues are alike.
    assert two["state"]["pointers"].tolist() == [6, 6]
    assert torch.equal(two["queues"][0], two["queues"][1])
    assert torch.allclose(two["queues"][0], one["queues"][0], atol=1e-5)
    assert two["row"] == pytest.approx(one["row"], rel=1e-4)
    assert _relative_change(two["state"], one["state"], before, ("backbone_q", "head_q")) < 1e-3
    # The query encoder's batch norm is the whole batch's. The key encoder's sub-batches are spread over the
    # processes, so each process tracks running statistics of its own sub-batches, which nothing reads.
    statistics = [name for name in before if "running" in name and name.startswith("backbone_q")]
    assert all(torch.allclose(two["state"][name], one["state"][name], atol=1e-5) for name in statistics)
    assert torch.equal(two["state"]["queue_images"], one["state"]["queue_images"])


def test_a_run_resumes_on_two_processes_from_the_checkpoint_of_one(data, tmp_path, monkeypatch):
    store, index = data
    whole = pretrain(
        VARIANTS["comcl"], PRETRAIN, store, index, tmp_path / "whole" / "work", **outputs(tmp_path / "whole"), threads=2
    )

    stopped = tmp_path / "stopped"
    original = kill_after_optimizer_steps(monkeypatch, 3)
    with pytest.raises(Killed):
        pretrain(VARIANTS["comcl"], PRETRAIN, store, index, stopped / "work", **outputs(stopped), threads=2)
    monkeypatch.setattr(torch.optim.AdamW, "step", original)
    assert torch.load(stopped / "work" / CHECKPOINT, weights_only=True)["step"] == 2

    resumed = pretrain(VARIANTS["comcl"], PRETRAIN, store, index, stopped / "work", **outputs(stopped), threads=2, world_size=2)
    expected, log = (pd.read_csv(folder / "log.csv") for folder in (tmp_path / "whole", stopped))
    assert resumed["steps"] == whole["steps"] == len(log) == 4
    pd.testing.assert_frame_equal(log[:2], expected[:2])  # from the checkpoint
    assert log["loss"].tolist() == pytest.approx(expected["loss"].tolist(), rel=1e-4)
    encoders = [torch.load(folder / "encoder.pt", weights_only=True) for folder in (tmp_path / "whole", stopped)]
    assert all(torch.allclose(encoders[0][name], encoders[1][name], atol=1e-4) for name in encoders[0])


def _finetune(index: Path, folder: Path, processes: int) -> dict:
    # 9 training images in batches of 16: one step, on a batch that two processes share as 5 + 4.
    files = dict(
        metrics=folder / "metrics.json",
        predictions=folder / "predictions.parquet",
        training_log=folder / "log.csv",
        model_file=folder / "model.pt",
    )
    params = dict(FINETUNE, epochs=1, batch_size=16)
    return finetune(index, params, "scratch", None, folder / "work", **files, threads=2, world_size=processes)


def test_one_fine_tuning_step_on_two_processes_is_one_step_on_the_whole_batch(tmp_path):
    index = tiny_index(tmp_path, "grading")
    one, two = (_finetune(index, tmp_path / str(processes), processes) for processes in (1, 2))
    assert one["sizes"]["train"] == 9
    assert two["history"][0]["loss"] == pytest.approx(one["history"][0]["loss"], rel=1e-5)
    assert two["history"][0]["val_kappa"] == one["history"][0]["val_kappa"] and two["test"] == one["test"]
    states = [torch.load(tmp_path / str(processes) / "model.pt", weights_only=True)["state"] for processes in (1, 2)]
    torch.manual_seed(FINETUNE["seed"])  # the initial weights, drawn as fine-tuning draws them
    initial = build_classifier(FINETUNE["arch"], 5, "scratch")[0].state_dict()
    # Adam's first update is about lr * sign(gradient): rounding flips the few nearly zero gradients.
    assert _relative_change(states[1], states[0], initial, ("",)) < 1e-2
    statistics = [name for name in initial if "running" in name]
    assert all(torch.allclose(states[1][name], states[0][name], atol=1e-5) for name in statistics)
    predictions = [pd.read_parquet(tmp_path / str(processes) / "predictions.parquet") for processes in (1, 2)]
    pd.testing.assert_frame_equal(predictions[1], predictions[0], atol=1e-4)


def test_a_batch_that_does_not_split_over_the_processes_is_refused(data, tmp_path):
    with pytest.raises(DataError, match="batch_size 6 does not split evenly over 4 processes"):
        pretrain(VARIANTS["comcl"], PRETRAIN, *data, tmp_path / "work", **outputs(tmp_path), threads=1, world_size=4)
    index = tiny_index(tmp_path, "grading")
    with pytest.raises(DataError, match="batch_size 4 does not split evenly over 3 processes"):
        finetune(
            index,
            FINETUNE,
            "scratch",
            None,
            tmp_path / "work",
            tmp_path / "m.json",
            tmp_path / "p.parquet",
            tmp_path / "l.csv",
            tmp_path / "model.pt",
            threads=1,
            world_size=3,
        )


def test_an_error_in_a_process_is_raised_as_itself(data, tmp_path):
    with pytest.raises(DataError, match=r"group 'H' has 20 training items, but the configuration needs 30"):
        pretrain(
            VARIANTS["comcl"],
            dict(PRETRAIN, queue_size=30),
            *data,
            tmp_path / "work",
            **outputs(tmp_path),
            threads=2,
            world_size=2,
        )
