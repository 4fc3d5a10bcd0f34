"""Contrastive pretraining: one loop for CoMCL, its ablations and the contrastive baselines.

A variant is configuration only: its level ``groups``, the ``pairs`` (m, n) of Eq. 1 that it sums,
its ``source`` (patches or whole images) and its self-paced learning (SPL). The encoders start from
``init`` (ImageNet weights or scratch, the family the supervised baselines start from too). Every
anchor group goes through the query encoder in one pass and every group through the key encoder in
one shuffled pass (batch norm over the levels together, MoCo's shuffling BN); the embeddings of a
group serve every pair that uses it; the hard negatives are a top-k over a B x delta matrix from
which the anchor's own image is masked out. After the step, the key embeddings of each group enter
that group's queue with their image ids.

The loader hands over uint8 (``comcl.pretrain.data``): views made by its workers, which the training
device normalises, or, on a GPU, the patches and the views' random parameters, from which the GPU
makes the views itself (at the paper's sizes a GPU step consumes views far faster than CPU workers
make them: ``benchmarks/pretrain_loader.py``). ``pretrain.workers`` null gives the loader one process
per core the job has beyond the training process's own, at most 16 per training process.

A run checkpoints its whole state (model, queues, optimiser, log) every ``checkpoint_interval``
steps, atomically, in its work folder, and a rerun resumes from there: since a step's batch is a
function of the step number (``comcl.pretrain.data``), the resumed run reaches the same weights as an
uninterrupted one. Once the outputs are written the checkpoint is deleted.

A job with several GPUs trains on all of them (``comcl.distributed``), and reaches what one process
would with the same batch size: each process encodes its shard of every group's batch, with batch
norm over the whole batch (the key encoder's sub-batches shared out among the processes); anchors
are selected among the whole batch; the gradients are averaged; and the keys of every shard enter
the queues, so every process holds the same queues. The main
process writes the checkpoints and outputs, which therefore do not depend on the number of GPUs: a
run resumes from a checkpoint written with another.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from comcl import distributed
from comcl.augment import Augmentation, build_augmentation, normalise
from comcl.checkpoints import discard_checkpoint, resume_state, run_stamp, save_checkpoint, save_torch
from comcl.curves import draw_training_curves
from comcl.devices import device_for
from comcl.errors import DataError
from comcl.io import atomic_path, read_table, write_json
from comcl.parallel import derived_seed
from comcl.pretrain.data import DeviceViews, ImageSource, PatchSource, StepBatches, check_groups, group_members
from comcl.pretrain.loss import multilevel_loss
from comcl.pretrain.mining import negatives_at, select_anchors, self_paced_loss
from comcl.pretrain.model import ContrastiveModel, read_imagenet
from comcl.schedule import learning_rate
from comcl.threads import limit_threads, one_thread_per_worker
from comcl.weights import IMAGENET_URLS, fetch_weights

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"
# Loader processes per training process at most (pretrain.workers null): each keeps two batches in /dev/shm, and
# 16 feed a GPU that makes its own views (benchmarks/pretrain_loader.py).
MAX_WORKERS = 16


def check_variant(variant: Mapping[str, Any]) -> None:
    """Pairs must name groups the variant defines."""
    known = set(variant["groups"])
    for anchor, negative in variant["pairs"]:
        for name in (anchor, negative):
            if name not in known:
                raise DataError(
                    f"pair ({anchor}, {negative}) names {name!r}, which is not one of the variant's groups {sorted(known)}",
                    hint="add the group to the variant's `groups`, or fix the pair",
                )


def pairs_with_images(variant: Mapping[str, Any], index: Path, split: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The variant's pairs whose groups have images in this dataset version, and those left out.

    At 100 % low quality there are no L or H images at all, so pairs with those levels cannot exist
    there; they are left out and listed. A group whose level has images but too few patches is
    another matter: :func:`comcl.pretrain.data.check_groups` stops on it.
    """
    frame, meta = read_table(index)
    present = set(frame.loc[frame["split"] == split, "level"])
    kept: list[tuple[str, str]] = []
    skipped: list[tuple[str, str]] = []
    for pair in map(tuple, variant["pairs"]):
        (kept if all(present & set(variant["groups"][group]) for group in pair) else skipped).append(pair)
    for anchor, negative in skipped:
        log.warning("pair (%s, %s) left out: %s has no %s images of its levels", anchor, negative, meta.get("proportion"), split)
    if not kept:
        raise DataError(
            f"none of the pairs {variant['pairs']} has images of its levels in the {split} split",
            path=index,
            hint="this variant cannot train on this dataset version: leave the version out of its pretrain.runs entry",
        )
    return kept, skipped


def _source(
    variant: Mapping[str, Any], params: Mapping[str, Any], store: str | Path | None, index: Path
) -> tuple[PatchSource | ImageSource, str, int]:
    """Where the variant's items come from, their modality (fundus or chest), and the side of the views fed to the encoder.

    Patches (cut at the lesion scale) give views of ``view_size``. Whole images are seen at the lesion
    scale too, resized to ``input_size`` (fine-tuning's, ``finetune.input_size``), and give views of
    ``image_view_size`` (paper 224), as MoCo crops its views from the whole image: squeezing them to the patch size would
    leave a microaneurysm under a pixel.
    """
    if variant["source"] == "patches":
        if store is None:
            raise ValueError(f"variant {variant['name']!r} trains on patches: give it the patch store")
        source = PatchSource(store)
        return source, source.store.metadata["modality"], params["view_size"]
    frame, meta = read_table(index)
    return ImageSource(frame, meta, params["input_size"], index), meta["modality"], params["image_view_size"]


def initial_weights(params: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor] | None, str]:
    """The encoders' start, ``pretrain.init``: ImageNet weights (fetched as the baselines' are) or none, and
    what the summary records: "imagenet", "scratch", or "scratch (ImageNet weights unavailable)"."""
    if params["init"] == "scratch":
        return None, "scratch"
    if params["init"] != "imagenet":
        raise ValueError(f"pretrain.init must be imagenet or scratch, got {params['init']!r}")
    if params["arch"] not in IMAGENET_URLS:
        raise ValueError(
            f"no ImageNet weights are known for {params['arch']!r}: use one of {', '.join(IMAGENET_URLS)} or init scratch"
        )
    path = fetch_weights(IMAGENET_URLS[params["arch"]])
    if path is None:
        log.warning("ImageNet weights for %s are unavailable: pretraining from scratch", params["arch"])
        return None, "scratch (ImageNet weights unavailable)"
    return read_imagenet(path, params["arch"]), "imagenet"


def build_optimizer(model: ContrastiveModel, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """Adam with decoupled weight decay (AdamW) over the query encoder and head.

    The paper trains with Adam and a regulariser r(w). Adam's coupled form adds ``weight_decay * w`` to
    the gradient and then normalises it, so a weight whose data gradient is zero (the off-centre taps
    of a 3x3 convolution that sees a 1x1 map) takes a step of size ``lr`` towards zero every step and is
    gone within a few hundred steps. Decoupled, it shrinks by ``1 - lr * weight_decay`` per step and
    keeps its scale, while weights with a data gradient get Adam's update unchanged.
    """
    return torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=lr, betas=(0.9, 0.999), weight_decay=weight_decay
    )


def planned_steps(params: Mapping[str, Any], longest: int) -> int:
    """The run's optimiser steps: ``steps`` when set, the same budget for every variant of a table; else
    ``epochs`` passes over the largest anchor group (``longest`` items), which gives a variant on whole
    images other steps than one on patches."""
    if params["steps"] is not None:
        return int(params["steps"])
    return max(1, params["epochs"] * math.ceil(longest / params["batch_size"]))


def loader_workers(configured: int | None, cores: int) -> int:
    """This process's DataLoader workers: its share of ``pretrain.workers``, or, for null, its share of the job's
    ``cores`` less the core it trains on, at most ``MAX_WORKERS``. The batches do not depend on the number."""
    if configured is not None:
        return distributed.per_process(configured)
    return max(0, min(MAX_WORKERS, distributed.per_process(cores) - 1))


def views_on_device(device: torch.device) -> bool:
    """Whether the training device makes the views from the patches (a GPU, which has time for it and would wait
    for CPU workers) or the loader's workers make them (a CPU, which spends all its time on the step itself)."""
    return device.type == "cuda"


def device_views(
    views: torch.Tensor | DeviceViews, device: torch.device, augmentation: Augmentation | None = None
) -> list[torch.Tensor]:
    """A group's views as the loader gives them, as the encoders take them: per view, float32 (B, 3, S, S) on
    ``device``. uint8 views (V, B, C, S, S) are normalised there; patches and views' parameters
    (``StepBatches(on_device=True)``) become views there, by ``augmentation``; float views (already network
    input, as tests and benchmarks give them) only move."""
    if isinstance(views, torch.Tensor):
        return [normalise(view) if view.dtype == torch.uint8 else view for view in views.to(device, non_blocking=True)]
    if augmentation is None:
        raise ValueError("a batch of patches to make views of on the device needs the augmentation")
    patches = views["patches"].to(device, non_blocking=True)
    params = {name: value.to(device, non_blocking=True) for name, value in views.items() if name != "patches"}
    return [
        augmentation.device_views(patches, {name: value[view] for name, value in params.items()})
        for view in range(len(params["box"]))
    ]


def _checkpoint(
    path: Path, model: ContrastiveModel, optimizer: torch.optim.Optimizer, step: int, rows: list[dict], stamp: str
) -> None:
    if distributed.is_main():
        save_checkpoint(
            path, stamp, {"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(), "log": rows}
        )
    distributed.barrier()


def _pair_loss(
    losses: torch.Tensor, spl: Mapping[str, Any], k_t: int, delta: int
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """This process's part of a pair's self-paced loss, the pair's loss over the whole batch, and what the log records.

    The anchors are selected among the whole batch (a share or a guard counts every anchor), so the
    processes gather their detached per-anchor losses and each keeps its rows of the selection. A
    process backpropagates its selected losses over the batch's selected count, times the number of
    processes, which the averaging of the gradients undoes.
    """
    every = distributed.all_gather(losses.detach())
    rule, min_fraction = (spl["rule"], spl["min_fraction"]) if spl["enabled"] else ("none", 0.0)
    selected, guarded = select_anchors(every, k_t, min_fraction, rule, delta)
    whole, objective = self_paced_loss(every, selected, k_t)
    mine = selected[distributed.shard(len(every))]
    part = torch.where(mine, losses, torch.zeros_like(losses)).sum() / max(1, int(selected.sum())) * distributed.world_size()
    stats = {
        "loss": float(every.mean()),
        "selected": float(selected.float().mean()),
        "guard": float(guarded),
        "objective": objective,
    }
    return part, whole, stats


def train_step(
    model: ContrastiveModel,
    optimizer: torch.optim.Optimizer,
    batch: Mapping[str, torch.Tensor | DeviceViews],
    pairs: Sequence[tuple[str, str]],
    spl: Mapping[str, Any],
    k_t: int,
    temperature: float,
    images: Mapping[str, torch.Tensor] | None = None,
    key_splits: int = 1,
    shuffle_seed: int = 0,
    augmentation: Augmentation | None = None,
) -> dict[str, float]:
    """One optimisation step on ``batch`` (group -> its views as the loader gives them, :func:`device_views`:
    an anchor group's query view first, every group's key view last); returns what the log records of it.

    The query encoder encodes every anchor group in one pass, the key encoder every group in one
    shuffled pass of ``key_splits`` sub-batches (order from ``shuffle_seed``), whatever the number of
    pairs that use a group (:class:`ContrastiveModel`). ``images`` (group -> image id per row) keeps an
    anchor's own image out of its negatives. The keys enter their queues after the update. Under several
    processes ``batch`` is this process's shard, and the log records the whole batch. ``augmentation`` makes
    the views of a batch of patches (views made on the device).
    """
    device = model.queues.device
    cuda = device.type == "cuda"
    # In a fixed order, not a set's (string hashes differ between processes): the order of the groups
    # in the one pass decides which rows each key sub-batch gets.
    anchors = sorted({anchor for anchor, _ in pairs})
    names = sorted(batch)
    # channels-last takes rank-4 tensors, not a group's (V, B, 3, S, S) stack: view by view.
    memory_format = torch.channels_last if cuda else torch.contiguous_format
    views = {
        name: [view.contiguous(memory_format=memory_format) for view in device_views(batch[name], device, augmentation)]
        for name in names
    }
    if images is None:
        images = {name: torch.full((len(views[name][0]),), -1, dtype=torch.long) for name in names}
    images = {name: ids.to(device) for name, ids in images.items()}
    generator = torch.Generator().manual_seed(shuffle_seed)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cuda):
        queries = model.queries({name: views[name][0] for name in anchors})
        keys = model.shuffled_keys({name: views[name][-1] for name in names}, key_splits, generator)
    row: dict[str, float] = {}
    total = torch.zeros((), device=device)
    logged = torch.zeros((), device=device)
    for anchor, negative in pairs:
        # -1 is an unknown image (no ids given, an empty slot): it matches nothing.
        exclude = (images[anchor][:, None] == model.negative_images(negative)[None, :]) & (images[anchor][:, None] >= 0)
        losses = multilevel_loss(queries[anchor], keys[anchor], model.negatives(negative), temperature, k_t, exclude)
        part, whole, stats = _pair_loss(losses, spl, k_t, model.queues.shape[1])
        total = total + part
        logged = logged + whole
        row |= {f"{what} {anchor}/{negative}": value for what, value in stats.items()}
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    distributed.average_gradients(model.parameters())
    optimizer.step()
    model.momentum_update()
    for name in model.levels:
        # Every shard's keys, in batch order: each process's queue holds what one process's would.
        model.enqueue(name, distributed.all_gather(keys[name]), distributed.all_gather(images[name]))
    row["loss"] = float(logged)
    return row


def _selected_shares(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per pair, the share of anchors selected at the first and the last step and the steps a guard decided."""
    shares = {}
    for column in (c for c in frame.columns if c.startswith("selected ")):
        pair = column.removeprefix("selected ")
        guard = frame.get(f"guard {pair}", pd.Series(0.0, index=frame.index))
        shares[pair] = {
            "first": float(frame[column].iloc[0]),
            "last": float(frame[column].iloc[-1]),
            "guarded_steps": float(guard.mean()),
        }
    return shares


@distributed.training_stage("pretrain")
def pretrain(
    variant: Mapping[str, Any],
    params: Mapping[str, Any],
    store: str | Path | None,
    index: str | Path,
    work_dir: str | Path,
    encoder: str | Path,
    training_log: str | Path,
    curves: str | Path,
    summary: str | Path,
    threads: int,
) -> dict[str, Any] | None:
    """Train ``variant`` and write the query encoder as a torchvision state dict, the log and its curves.

    ``store`` (the patch store) is needed by variants whose source is patches; ``index`` by all.
    Trains on every GPU the job sees, one process each; ``world_size=`` sets the number of processes
    instead (on CPU, gloo processes: how the tests check that the result does not depend on it).
    Returns the summary (what the main process writes; ``None`` in the other processes).
    """
    limit_threads(distributed.per_process(threads))
    check_variant(variant)
    index, work_dir = Path(index), Path(work_dir)
    pairs, skipped = pairs_with_images(variant, index, params["split"])
    source, modality, view_size = _source(variant, params, store, index)
    members = group_members(source, variant["groups"], params["split"])
    anchors = {anchor for anchor, _ in pairs}
    queued = sorted({negative for _, negative in pairs})
    used = sorted(anchors | set(queued))
    needs = {
        name: max(params["batch_size"] if name in anchors else 0, params["queue_size"] if name in queued else 0) for name in used
    }
    check_groups(source, variant["groups"], members, needs)
    augment = build_augmentation(params["augment"][modality], view_size)
    shard = distributed.shard(params["batch_size"])
    device = device_for(params["device"])
    on_device = views_on_device(device)
    batches = StepBatches(
        source, {name: members[name] for name in used}, params["batch_size"], augment, params["seed"], shard, anchors, on_device
    )
    total = planned_steps(params, max(len(members[name]) for name in anchors))

    if distributed.world_size() > 1:
        log.info("training on %d processes, %d of each batch's items each", distributed.world_size(), shard.stop - shard.start)
    with distributed.main_first():
        weights, init = initial_weights(params)
    log.info("encoders initialised from %s", init)
    torch.manual_seed(params["seed"])
    model = ContrastiveModel(
        params["arch"], queued, params["queue_size"], params["dim"], params["hidden"], params["momentum"], weights
    )
    model = model.synchronise_queries().to(device)
    optimizer = build_optimizer(model, params["lr"], params["weight_decay"])
    cuda = device.type == "cuda"
    if cuda:
        # torch's overloads of Module.to leave out the memory_format keyword that it documents and takes.
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    # Where the views are made is part of what a run sees: a run never resumes with the other path's views.
    stamp = run_stamp({"variant": variant, "params": params, "views": "device" if on_device else "loader"}, sized=[source.path])
    checkpoint_file = work_dir / CHECKPOINT
    rows: list[dict[str, Any]] = []
    start = 0
    state = resume_state(checkpoint_file, stamp)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, rows = state["step"], state["log"]
        log.info("resuming from step %d of %d (%s)", start, total, checkpoint_file)
    if start == 0:
        model.train()
        for name in queued:
            # Every process encodes the whole fill, chunk by chunk as one process does (batch norm over
            # a chunk that every process holds is that chunk's); the main process's keys are then
            # everyone's, so the queues start bitwise equal whatever the GPU kernels.
            fill, images = batches.queue_fill(name, params["queue_size"], params["batch_size"])
            keys = torch.cat([model.key(device_views(chunk, device, augment)[-1]) for chunk in fill])
            model.enqueue(name, distributed.broadcast(keys), images)

    loader = torch.utils.data.DataLoader(
        batches,
        batch_size=None,
        sampler=range(start, total),
        num_workers=loader_workers(params["workers"], threads),
        pin_memory=cuda,
        persistent_workers=False,
        worker_init_fn=one_thread_per_worker,
    )
    model.train()
    bar = tqdm(
        loader,
        total=total,
        initial=start,
        desc="pretrain",
        unit="step",
        mininterval=1.0,
        disable=None if distributed.is_main() else True,
    )
    for step, batch in enumerate(bar, start=start):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(params["lr"], params["cosine"], step, total)
        k_t = negatives_at(step, total, params["queue_size"]) if variant["spl"]["enabled"] else params["queue_size"]
        row = {"step": step + 1, "lr": optimizer.param_groups[0]["lr"], "k_t": k_t}
        row |= train_step(
            model,
            optimizer,
            batch["views"],
            pairs,
            variant["spl"],
            k_t,
            params["temperature"],
            images=batch["images"],
            key_splits=params["key_splits"],
            shuffle_seed=derived_seed(params["seed"], step),
            augmentation=augment,
        )
        rows.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", k_t=k_t)
        if (step + 1) % params["checkpoint_interval"] == 0 and step + 1 < total:
            _checkpoint(checkpoint_file, model, optimizer, step + 1, rows, stamp)

    _checkpoint(checkpoint_file, model, optimizer, total, rows, stamp)
    if not distributed.is_main():
        return None
    save_torch(encoder, model.encoder_state_dict())
    frame = pd.DataFrame(rows)
    with atomic_path(training_log) as tmp:
        frame.to_csv(tmp, index=False)
    panels = {
        "loss": ["loss", *(c for c in frame.columns if c.startswith("loss "))],
        "hard negatives K_t": ["k_t"],
        "selected anchors (share)": [c for c in frame.columns if c.startswith("selected ")],
    }
    draw_training_curves(frame, "step", panels, f"{variant['name']} on {index.parent.parent.name}/{index.parent.name}", curves)
    result = {
        "variant": variant["name"],
        "init": init,
        "steps": total,
        "groups": {name: len(members[name]) for name in used},
        "pairs": [list(pair) for pair in pairs],
        "pairs_without_images": [list(pair) for pair in skipped],
        "final_loss": rows[-1]["loss"] if rows else None,
        "selected_share": _selected_shares(frame),
        "device": device.type,
    }
    write_json(summary, result)
    discard_checkpoint(checkpoint_file)
    return result
