"""Fine-tune a classifier (from a pretrained encoder, ImageNet or scratch) and evaluate it on the test split.

DR grading trains with cross-entropy over the grades or as a regression of the grade
(``comcl.finetune.objective``); the chest task with a sigmoid per finding. Adam, or SGD with Nesterov
momentum, at a constant learning rate or on a cosine decay over the epochs (``finetune.cosine``). The
epoch with the best kappa on the index's validation split (carved patient-wise by the index stage,
before the detector and pretraining read the data) is the model that is tested. Each epoch ends
with an atomic checkpoint in the run's work folder; a rerun resumes after the last finished epoch.
Once the outputs are written the checkpoint is deleted.

A job with several GPUs trains on all of them (``comcl.distributed``) and reaches what one process
would: every process draws the epoch's batches with the same generator and takes its shard of each,
batch norm runs over the whole batch and the gradients are averaged. Validation and test sets are
split over the processes and their predictions gathered, so every process computes the same
metrics and keeps the same best epoch; the main process writes checkpoints and outputs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from comcl import distributed
from comcl.augment import build_augmentation
from comcl.checkpoints import discard_checkpoint, resume_state, run_stamp, save_checkpoint
from comcl.devices import device_for
from comcl.errors import DataError
from comcl.finetune.data import ImageDataset, class_balanced_weights
from comcl.finetune.metrics import grading_metrics, multilabel_metrics
from comcl.finetune.model import build_classifier, save_classifier
from comcl.finetune.objective import Objective
from comcl.io import atomic_path, read_table, write_json, write_table
from comcl.schedule import learning_rate
from comcl.threads import limit_threads, one_thread_per_worker

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"
OPTIMIZERS = ("adam", "sgd")
MOMENTUM = 0.9  # SGD's, with Nesterov's correction, as in Huang et al.'s DR grading study


@torch.no_grad()
def predict(
    model: nn.Module, dataset: ImageDataset, batch_size: int, workers: int, device: torch.device, objective: Objective
) -> np.ndarray:
    """Class probabilities (:meth:`Objective.probabilities`), one row per item of ``dataset``.

    Under several processes each predicts its shard of ``dataset``, and every process gets every row.
    """
    model.eval()
    shard = torch.utils.data.Subset(dataset, range(len(dataset))[distributed.shard(len(dataset))])
    loader = torch.utils.data.DataLoader(
        shard, batch_size=batch_size, num_workers=workers, pin_memory=device.type == "cuda", worker_init_fn=one_thread_per_worker
    )
    outputs = []
    for images, _ in loader:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(_layout(images.to(device)))
        outputs.append(objective.probabilities(logits.float()).cpu().numpy())
    return distributed.all_gather(torch.from_numpy(np.concatenate(outputs) if outputs else np.zeros((0, 0), np.float32))).numpy()


def evaluate(frame: pd.DataFrame, meta: Mapping[str, Any], probabilities: np.ndarray, threshold: float) -> dict[str, Any]:
    if meta["task"] == "multilabel":
        labels = list(meta["label_columns"])
        return multilabel_metrics(frame[labels].to_numpy(int), probabilities, labels, threshold)
    return grading_metrics(frame[meta["label_columns"][0]].to_numpy(int), probabilities)


def _score(metrics: Mapping[str, Any]) -> float:
    """Model selection on validation kappa; an undefined kappa ranks last."""
    return -np.inf if metrics["kappa"] is None else float(metrics["kappa"])


def _layout(images: torch.Tensor) -> torch.Tensor:
    """Channels-last on a GPU, where its convolutions are faster."""
    return images.contiguous(memory_format=torch.channels_last) if images.is_cuda else images


def train_step(
    model: nn.Module,
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    targets: torch.Tensor,
    weight: float = 1.0,
) -> float:
    """One optimisation step on a batch, its loss times ``weight`` (a shard's part of the batch under several
    processes, whose gradients DDP averages). On a GPU the network runs in bf16 autocast on channels-last
    input (put the model in channels-last too); the loss is computed in float32."""
    device = next(model.parameters()).device
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        logits = model(_layout(images.to(device, non_blocking=True)))
    loss = objective(logits.float(), targets.to(device, non_blocking=True)) * weight
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def build_optimizer(name: str, parameters: Any, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=MOMENTUM, nesterov=True, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}: use one of {', '.join(OPTIMIZERS)}")


def _splits(frame: pd.DataFrame, index: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The index's train, val and test rows, refused now rather than as an empty loader or an undefined metric
    epochs into the run: selection needs a val split, the result a test split, every process a training image."""
    train, val, test = (frame[frame["split"] == split].reset_index(drop=True) for split in ("train", "val", "test"))
    if train.empty or val.empty or test.empty:
        raise DataError(
            "the index needs a train, a val and a test split",
            path=index,
            hint="run the index stage again: it carves the val split from the train split (index.val_share)",
        )
    if len(train) < distributed.world_size():
        raise DataError(
            f"{len(train)} training images cannot be shared by {distributed.world_size()} processes (one per GPU)",
            path=index,
            hint="fine-tune this dataset on fewer GPUs",
        )
    return train, val, test


def _build_model(
    params: Mapping[str, Any], objective: Objective, init: str, encoder: Path | None, device: torch.device
) -> tuple[nn.Module, str]:
    """The classifier on ``device``, and where its weights came from, for the log and the metrics. The main process
    builds first, so that ImageNet weights are downloaded once; on a GPU the model is channels-last, as the input
    :func:`_layout` gives it."""
    with distributed.main_first():
        model, description = build_classifier(
            params["arch"], objective.outputs, init, encoder, params.get("imagenet_url"), params["input_size"]
        )
    log.info("%s initialised from %s", params["arch"], description)
    # torch's overloads of Module.to leave out the memory_format keyword that it documents and takes.
    memory_format = torch.channels_last if device.type == "cuda" else torch.preserve_format
    model = model.to(device, memory_format=memory_format)  # type: ignore[call-overload]
    return model, description


def _datasets(
    train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame, meta: Mapping[str, Any], params: Mapping[str, Any]
) -> dict[str, ImageDataset]:
    """Only the training split is augmented: the epoch is selected and the model tested on the images as they are."""
    augment = build_augmentation(params["augment"][meta["modality"]], params["input_size"])
    size = params["input_size"]
    return {
        "train": ImageDataset(train, meta, size, augment, params["seed"]),
        "val": ImageDataset(val, meta, size, None, params["seed"]),
        "test": ImageDataset(test, meta, size, None, params["seed"]),
    }


def _resume(
    checkpoint_file: Path, stamp: str, model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[int, list[dict[str, Any]], dict[str, Any]]:
    """The epochs done, their history and the best of them: a rerun of a killed run loads its checkpoint's model
    and optimiser states and goes on after its last finished epoch; any other run starts afresh."""
    state = resume_state(checkpoint_file, stamp)
    if state is None:
        return 0, [], {"score": -np.inf, "epoch": 0, "state": None}
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    log.info("resuming after epoch %d", state["epoch"])
    return state["epoch"], state["history"], state["best"]


def _train_loader(
    dataset: ImageDataset, meta: Mapping[str, Any], params: Mapping[str, Any], epoch: int, workers: int, device: torch.device
) -> tuple[torch.utils.data.DataLoader, list[list[int]]]:
    """This process's loader of the epoch, and the epoch's batches as one process draws them.

    The batches come from a generator seeded by the seed and the epoch, so every process draws them alike (and
    loads its shard of each) and a resumed run draws what an uninterrupted one would. A last batch of one image
    would break batch norm (a 1 x 1 feature map at small input sizes), so a split larger than a batch drops it.
    """
    dataset.set_epoch(epoch)
    generator = torch.Generator().manual_seed(params["seed"] * 1000 + epoch)
    sampler: torch.utils.data.Sampler[int]
    if params["balanced"] and meta["task"] != "multilabel":
        weights = class_balanced_weights(dataset.targets, meta["num_classes"])
        # A list: the sampler's annotation asks for a sequence of floats (it makes a float64 tensor of either).
        sampler = torch.utils.data.WeightedRandomSampler(weights.tolist(), len(weights), replacement=True, generator=generator)
    else:
        sampler = torch.utils.data.RandomSampler(dataset, generator=generator)
    batches = list(torch.utils.data.BatchSampler(sampler, params["batch_size"], drop_last=len(dataset) > params["batch_size"]))
    shards = [batch[distributed.shard(len(batch))] for batch in batches]
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=shards, num_workers=workers, pin_memory=device.type == "cuda", worker_init_fn=one_thread_per_worker
    )
    return loader, batches


def _train_epoch(
    trained: nn.Module,
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    dataset: ImageDataset,
    meta: Mapping[str, Any],
    params: Mapping[str, Any],
    epoch: int,
    workers: int,
    device: torch.device,
) -> float:
    """The epoch's mean loss over the processes, for the history. A loss that is not finite stops the run: it
    would train on as NaN to the last epoch."""
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(params["lr"], params["cosine"], epoch, params["epochs"])
    loader, batches = _train_loader(dataset, meta, params, epoch, workers, device)
    trained.train()
    losses = []
    bar = tqdm(
        zip(loader, batches, strict=True),
        total=len(batches),
        desc=f"epoch {epoch + 1}/{params['epochs']}",
        unit="batch",
        mininterval=1.0,
        disable=None if distributed.is_main() else True,
    )
    for (images, targets), batch in bar:
        # The mean over this shard, weighted by the shard's part of the batch: averaged over the
        # processes, the mean over the batch, also when the one batch of a small split does not
        # split evenly.
        weight = len(images) * distributed.world_size() / len(batch)
        losses.append(train_step(trained, objective, optimizer, images, targets, weight))
        if not np.isfinite(losses[-1]):
            raise FloatingPointError(
                f"fine-tuning diverged: the loss of batch {len(losses)} of epoch {epoch + 1} is {losses[-1]}; lower "
                f"finetune.lr (now {params['lr']}) or use the cosine schedule"
            )
    return distributed.average(float(np.mean(losses)))


def _keep_best(best: dict[str, Any], validation: Mapping[str, Any], model: nn.Module, epoch: int) -> dict[str, Any]:
    """The best epoch so far, with a CPU copy of its weights, which training goes on to change. The first epoch is
    kept even where its kappa is undefined (a validation split of one grade): a later epoch replaces it only with
    a better kappa."""
    if best["state"] is None or _score(validation) > best["score"]:
        state = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
        return {"score": _score(validation), "epoch": epoch + 1, "state": state}
    return best


def _save_epoch(
    checkpoint_file: Path,
    stamp: str,
    epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    history: list[dict[str, Any]],
    best: dict[str, Any],
) -> None:
    """The finished epoch, for a killed run's rerun to resume after. Only the main process writes it; the others
    wait for the write, so that no process reads a checkpoint before it is there."""
    if distributed.is_main():
        content = {
            "epoch": epoch + 1,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "history": history,
            "best": best,
        }
        save_checkpoint(checkpoint_file, stamp, content)
    distributed.barrier()


def _write_outputs(
    result: Mapping[str, Any],
    test: pd.DataFrame,
    meta: Mapping[str, Any],
    probabilities: np.ndarray,
    model: nn.Module,
    objective: Objective,
    metrics: str | Path,
    predictions: str | Path,
    training_log: str | Path,
    model_file: str | Path,
) -> None:
    """The metrics, the test predictions (a probability column per class or finding, by image, for the later
    stages to compare runs on the same images), the per-epoch history and the selected classifier."""
    write_json(metrics, result)
    names = meta["label_columns"] if meta["task"] == "multilabel" else range(meta["num_classes"])
    table = pd.concat([test[["image_id"]], pd.DataFrame(probabilities, columns=[f"p_{name}" for name in names])], axis=1)
    write_table(predictions, table, {"task": meta["task"]})
    with atomic_path(training_log) as tmp:
        pd.DataFrame(result["history"]).to_csv(tmp, index=False)
    save_classifier(model_file, model, result["arch"], objective, result["init"])


@distributed.training_stage("finetune")
def finetune(
    index: str | Path,
    params: Mapping[str, Any],
    init: str,
    encoder: str | Path | None,
    work_dir: str | Path,
    metrics: str | Path,
    predictions: str | Path,
    training_log: str | Path,
    model_file: str | Path,
    threads: int,
) -> dict[str, Any] | None:
    """Train on the index's train split, select on its val split's kappa, test on its test split; write the results.

    Trains on every GPU the job sees, one process each; ``world_size=`` sets the number of processes
    instead (on CPU, gloo processes: how the tests check that the result does not depend on it).
    Returns the metrics (what the main process writes; ``None`` in the other processes).
    """
    limit_threads(distributed.per_process(threads))
    index, work_dir = Path(index), Path(work_dir)
    encoder = None if encoder is None else Path(encoder)
    frame, meta = read_table(index)
    train, val, test = _splits(frame, index)

    torch.manual_seed(params["seed"])
    device = device_for(params["device"])
    objective = Objective(meta["task"], meta["num_classes"], params["loss"])
    model, description = _build_model(params, objective, init, encoder, device)
    datasets = _datasets(train, val, test, meta, params)
    optimizer = build_optimizer(params["optimizer"], model.parameters(), params["lr"], params["weight_decay"])
    stamp = run_stamp({"params": params, "encoder": encoder}, sized=[index], read=[] if encoder is None else [encoder])
    checkpoint_file = work_dir / CHECKPOINT
    start, history, best = _resume(checkpoint_file, stamp, model, optimizer)
    # Training goes through ``trained`` (DDP under several processes); ``model`` is the network itself,
    # for evaluation and for the state dicts, whose keys do not depend on the number of processes.
    trained = distributed.data_parallel(model)
    workers = distributed.per_process(params["workers"])

    for epoch in range(start, params["epochs"]):
        loss = _train_epoch(trained, objective, optimizer, datasets["train"], meta, params, epoch, workers, device)
        probabilities = predict(model, datasets["val"], params["batch_size"], workers, device, objective)
        validation = evaluate(val, meta, probabilities, params["threshold"])
        history.append(
            {"epoch": epoch + 1, "loss": loss, "val_kappa": validation["kappa"], "val_accuracy": validation["accuracy"]}
        )
        best = _keep_best(best, validation, model, epoch)
        _save_epoch(checkpoint_file, stamp, epoch, model, optimizer, history, best)

    if best["state"] is not None:
        model.load_state_dict(best["state"])
    probabilities = predict(model, datasets["test"], params["batch_size"], workers, device, objective)
    if not distributed.is_main():
        return None
    result = {
        "task": meta["task"],
        "arch": params["arch"],
        "init": description,
        "best_epoch": best["epoch"],
        "sizes": {"train": len(train), "val": len(val), "test": len(test)},
        "test": evaluate(test, meta, probabilities, params["threshold"]),
        "history": history,
    }
    _write_outputs(result, test, meta, probabilities, model, objective, metrics, predictions, training_log, model_file)
    discard_checkpoint(checkpoint_file)
    return result
