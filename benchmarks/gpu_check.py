"""A short check of a CUDA machine for the paper's training: throughput of the pretraining and fine-tuning steps
against a bare ResNet training step measured in the same run, and whether the patch-store loader keeps up.

Measures, and prints as plain-text tables:

1. The CoMCL pretraining step at the paper's sizes: ``comcl.pretrain.train.train_step`` called as the
   training loop of ``pretrain`` calls it, on the variant of ``config/pretrain/comcl.yaml`` (four level
   groups L, L~, H, H~ of ``--per-level`` patches each, paper 400; pairs (L, L~), (L, H), (L~, H~);
   self-paced learning on, with that file's rule and ``min_fraction``; ``K_t = negatives_at`` half-way
   through training), ResNet-50, 128 px views, and ``pretrain``'s defaults from
   ``workflow/schemas/config.schema.yaml`` (queue 4096, embedding 128, 8 key sub-batches, temperature
   0.07). The model, optimiser, queues and inputs are those of ``benchmarks/pretrain_step.py`` (its
   ``Step``: AdamW lr 1e-3 and weight decay 1e-4, momentum 0.999, a projection head as wide as the
   backbone, the schema's defaults too); the views
   lie in host memory, pinned on CUDA, as ``pretrain``'s DataLoader (``pin_memory`` on CUDA) hands them
   over, so the step includes their copy to the GPU. Against it: a bare training step of the torchvision
   ResNet (1000 classes, cross-entropy on random labels, the same AdamW) at the same batch. **The same
   batch** is the same number of images drawn per step: CoMCL's 4 x 400 = 1,600 patches, every one of
   them through the key encoder's forward pass (view 2) and the 800 of the anchor groups L and L~ also
   through the query encoder's forward and backward passes (view 1); the bare step takes 1,600 images,
   forward and backward, copied from pinned host memory too. Printed: images per second of both, the
   encoder images per second (query + key), and the ratio CoMCL / bare of images per second (the
   inverse ratio of the step times), target >= 0.6 (PASS or FAIL).
2. The fine-tuning step at 512 px: ``comcl.finetune.train.train_step(model, objective, optimizer, images,
   targets, weight=1.0)`` on ``build_classifier(arch, 5, "scratch")`` (placed as ``_finetune`` places it,
   channels-last on CUDA), ``Objective("grading", 5, "ce")`` and ``build_optimizer("sgd", ...)`` with the
   schema's fine-tuning lr and weight decay (1e-4 each), batch 32, against the bare step of part 1 at
   512 px, the same batch (32 images forward and backward) and the same SGD (Nesterov momentum 0.9).
   Both take their images from host memory, pinned on CUDA, as the fine-tuning DataLoader
   (``pin_memory`` on CUDA) gives them. Ratio of images per second, target >= 0.9 (the same network: only the head and the
   float32 loss differ).
3. The patch-store reader with its augmentation: a temporary patch store of random patches written by
   ``PatchStoreWriter`` (``--store-per-level`` patches per level, split train, four patches per image,
   1 MiB row groups as the patch stage writes them; smooth random RGB content, so that it compresses
   about as real patches do), read as ``pretrain`` reads it: ``PatchSource``,
   ``group_members``, ``StepBatches`` with the fundus augmentation at the view size, and the same
   DataLoader (one item per step, ``--workers`` processes, default 16 on CUDA, ``pin_memory`` on CUDA).
   The loader's patches per second (median over rounds of ``--workers`` steps each, after a first round
   in which the workers start) against the patches per second that the CoMCL step of part 1 consumes:
   the ratio loader / consumption, target >= 1 (the loader keeps up).

The two steps of a part are timed in turns, round after round, so that they share the machine's state;
every time is read after a device synchronisation, and the median after ``--warmup`` untimed rounds
is reported. On CUDA the steps run in bf16 autocast on channels-last models and inputs (the project's
own steps do so themselves; the bare step does the same), on the CPU in float32. The loader is timed
on its own, after the steps: in training its workers share the CPUs with the training process. A FAIL
is printed, not an exit status: the script exits with an error only when something fails to run.

Sizes are the paper's on CUDA and tiny on the CPU (``--quick`` gives the tiny ones on CUDA too: a
smoke test); every size can be set. If the GPU runs out of memory, lower ``--per-level`` (the bare step's
batch follows it). Run on a GPU machine, with the Python whose PyTorch is to be checked (it needs comcl's
other dependencies too: numpy, pyarrow, opencv, albumentations, pyyaml)::

    bash benchmarks/gpu_check.sh
    PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh --workers 8
    bash benchmarks/gpu_check.sh --device cpu --quick     # any machine, well under a minute
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
import torch.utils.data
import torchvision
from cli import COMCL_VARIANT, REPO, item_bytes, positive_int, print_footer, read_variant, schema_defaults, verdict
from pretrain_step import Step, Variant, time_in_turns

from comcl.augment import build_augmentation
from comcl.finetune.model import build_classifier
from comcl.finetune.objective import Objective
from comcl.finetune.train import MOMENTUM, build_optimizer
from comcl.finetune.train import train_step as finetuning_step
from comcl.patches.store import PatchRow, PatchStoreWriter
from comcl.pretrain.data import PatchSource, StepBatches, group_members
from comcl.pretrain.mining import negatives_at
from comcl.pretrain.train import train_step as pretraining_step

_PROGRESS = 0.5  # share of training done, for K_t
_PATCHES_PER_IMAGE = 4
_CLASSES = 5  # DR grades
_CONTRAST = 64  # grey levels of a random patch's coarse noise
_PREFETCH = 2  # the DataLoader's default prefetch_factor: batches in flight per worker


PRETRAIN = schema_defaults("pretrain")
FINETUNE = schema_defaults("finetune")
PATCHES = schema_defaults("patches")
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "arch": PRETRAIN["arch"],
        "size": PRETRAIN["view_size"],
        "per_level": PRETRAIN["batch_size"],
        "queue_size": PRETRAIN["queue_size"],
        "finetune_size": FINETUNE["input_size"],
        "finetune_batch": FINETUNE["batch_size"],
        "workers": 16,
        "store_per_level": 2048,  # 8192 patches: larger than a reader's 64 MiB cache, as a real store is
        "steps": 10,
        "warmup": 3,
        "rounds": 3,
        "threads": len(os.sched_getaffinity(0)),
    },
    "tiny": {
        "arch": "resnet18",
        "size": 32,
        "per_level": 8,
        "queue_size": 64,
        "finetune_size": 64,
        "finetune_batch": 4,
        "workers": 1,
        "store_per_level": 16,
        "steps": 3,
        "warmup": 1,
        "rounds": 2,
        "threads": 1,  # a smoke test: one thread stays quick on a busy machine, where several would contend
    },
}


class PretrainStep(Step):
    """``pretrain_step.Step`` (model, optimiser, full queues, random views) with the views in host memory,
    pinned on CUDA, as ``pretrain``'s DataLoader gives them, and the variant's own ``spl`` settings."""

    def __init__(
        self, variant: Variant, spl: Mapping[str, Any], args: argparse.Namespace, device: torch.device, k_t: int
    ) -> None:
        super().__init__(variant, args, device, k_t, args.seed)
        self.spl = dict(spl)
        self.views = {name: views.cpu().pin_memory() if self.cuda else views.cpu() for name, views in self.views.items()}

    def __call__(self) -> dict[str, Any]:
        return pretraining_step(
            self.model,
            self.optimizer,
            self.views,
            self.variant.pairs,
            self.spl,
            self.k_t,
            self.temperature,
            images=self.images,
            key_splits=self.key_splits,
        )


class BareStep:
    """A plain training step of a torchvision ResNet: ``batch`` images forward and backward, cross-entropy on
    random labels of its 1000 classes, one optimiser step; bf16 autocast and channels-last on CUDA. The images
    wait in host memory (pinned or not, as the loop it is compared with gets them) and are copied in the step."""

    def __init__(
        self,
        arch: str,
        batch: int,
        size: int,
        optimizer: str,
        lr: float,
        weight_decay: float,
        pinned: bool,
        device: torch.device,
        seed: int,
    ) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.layout = torch.channels_last if self.cuda else torch.contiguous_format
        torch.manual_seed(seed)
        self.model = getattr(torchvision.models, arch)(weights=None).to(
            device, memory_format=torch.channels_last if self.cuda else torch.preserve_format
        )
        self.model.train()
        if optimizer == "adamw":
            self.optimizer: torch.optim.Optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=weight_decay)
        else:
            self.optimizer = torch.optim.SGD(
                self.model.parameters(), lr=lr, momentum=MOMENTUM, nesterov=True, weight_decay=weight_decay
            )
        generator = torch.Generator().manual_seed(seed)
        images = torch.randn(batch, 3, size, size, generator=generator)
        self.images = images.pin_memory() if pinned and self.cuda else images
        self.labels = torch.randint(0, 1000, (batch,), generator=generator)

    def __call__(self) -> None:
        images = self.images.to(self.device, non_blocking=True).contiguous(memory_format=self.layout)
        labels = self.labels.to(self.device, non_blocking=True)
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.cuda):
            loss = F.cross_entropy(self.model(images), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


class FinetuneStep:
    """``comcl.finetune.train.train_step`` on a grading classifier from scratch, as ``_finetune`` sets it up."""

    def __init__(self, arch: str, batch: int, size: int, device: torch.device, seed: int) -> None:
        torch.manual_seed(seed)
        model, _ = build_classifier(arch, _CLASSES, "scratch", input_size=size)
        self.model = model.to(device, memory_format=torch.channels_last if device.type == "cuda" else torch.preserve_format)
        self.model.train()
        self.objective = Objective("grading", _CLASSES, "ce")
        self.optimizer = build_optimizer("sgd", self.model.parameters(), FINETUNE["lr"], FINETUNE["weight_decay"])
        generator = torch.Generator().manual_seed(seed)
        images = torch.randn(batch, 3, size, size, generator=generator)
        self.images = images.pin_memory() if device.type == "cuda" else images  # as the fine-tuning loader gives them
        self.targets = torch.randint(0, _CLASSES, (batch,), generator=generator)

    def __call__(self) -> float:
        return finetuning_step(self.model, self.objective, self.optimizer, self.images, self.targets, weight=1.0)


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def write_random_store(path: Path, levels: Sequence[str], per_level: int, size: int, row_group_bytes: int, seed: int) -> int:
    """A patch store of ``per_level`` random RGB patches per level (train split, ``_PATCHES_PER_IMAGE`` patches
    per image id, the levels' images in turn as the patch stage writes image after image); its size in bytes.

    Each patch is a random colour plus uniform noise of 64 grey levels at an eighth of the side, resized
    (bilinear): about 18 kB per 128 px patch encoded, near a real fundus patch's 14 kB (comcl.patches.store),
    where plain noise would not compress at all.
    """
    rng = np.random.default_rng([seed, 3])
    low = max(1, size // 8)
    images = -(-per_level // _PATCHES_PER_IMAGE)
    with PatchStoreWriter(path, size, 3, {"modality": "fundus", "benchmark": "gpu_check"}, row_group_bytes) as writer:
        for image in range(images):
            for level in levels:
                count = min(_PATCHES_PER_IMAGE, per_level - image * _PATCHES_PER_IMAGE)
                rows = []
                for _ in range(count):
                    colour = rng.integers(0, 257 - _CONTRAST, 3, dtype=np.uint8)
                    coarse = rng.integers(0, _CONTRAST, (low, low, 3), dtype=np.uint8) + colour
                    patch = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_LINEAR)
                    window = (0, 0, size, size)
                    rows.append(PatchRow(f"{level}-{image:06d}", "train", level, window, None, None, None, False, patch))
                writer.add(rows)
    return path.stat().st_size


def time_loader(loader: torch.utils.data.DataLoader, per_round: int, rounds: int) -> tuple[float, list[float]]:
    """Seconds to the end of the first round (the workers' start included), and of each later round of
    ``per_round`` items, each counted from the last item of the round before."""
    arrivals = []
    start = time.perf_counter()
    for item in loader:
        arrivals.append(time.perf_counter())
        del item  # frees the batch's shared memory before the next arrives
    ends = [arrivals[(number + 1) * per_round - 1] for number in range(rounds + 1)]
    return ends[0] - start, [ends[number + 1] - ends[number] for number in range(rounds)]


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "GPU check: images/s of the CoMCL pretraining step and of the fine-tuning step against a bare ResNet "
            "training step at the same batch, and the patch-store loader's patches/s against what the CoMCL step "
            "consumes. Sizes: the paper's on cuda, tiny on cpu or with --quick; unset options take those."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="where the steps run")
    parser.add_argument("--quick", action="store_true", help="tiny sizes also on cuda (a smoke test); the default on cpu")
    parser.add_argument("--arch", default=None, help="torchvision ResNet of every step (paper resnet50, tiny resnet18)")
    parser.add_argument("--size", type=positive_int, default=None, help="side of the pretraining views and patches (paper 128)")
    parser.add_argument("--per-level", type=positive_int, default=None, help="patches per level group and step (paper 400)")
    parser.add_argument("--queue-size", type=positive_int, default=None, help="negatives per level queue, delta (paper 4096)")
    parser.add_argument("--finetune-size", type=positive_int, default=None, help="side of the fine-tuning images, px (paper 512)")
    parser.add_argument("--finetune-batch", type=positive_int, default=None, help="fine-tuning batch (paper 32)")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers of the patch-store loader (cuda 16)")
    parser.add_argument("--store-per-level", type=positive_int, default=None, help="patches per level in the temporary store")
    parser.add_argument("--steps", type=positive_int, default=None, help="timed rounds of steps (the median is reported)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed rounds of steps first")
    parser.add_argument("--rounds", type=positive_int, default=None, help="timed loader rounds of --workers steps each")
    parser.add_argument(
        "--threads", type=positive_int, default=None, help="torch.set_num_threads of this process (paper: all its CPUs; tiny: 1)"
    )
    parser.add_argument("--target-pretrain", type=float, default=0.6, help="least CoMCL / bare images/s at the same batch")
    parser.add_argument("--target-finetune", type=float, default=0.9, help="least fine-tuning / bare images/s at the same batch")
    parser.add_argument("--target-loader", type=float, default=1.0, help="least loader / CoMCL step patches/s")
    parser.add_argument("--seed", type=int, default=0, help="seed of every model, input and patch")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device cuda, but torch {torch.__version__} sees no GPU (use --device cpu --quick elsewhere)")
    args.preset = "tiny" if args.quick or args.device == "cpu" else "paper"
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.workers < 0 or args.warmup < 0:
        parser.error("--workers and --warmup must not be negative")
    return args


def _header(args: argparse.Namespace, device: torch.device) -> None:
    cuda = device.type == "cuda"
    if cuda:
        name = f"{torch.cuda.get_device_name(device)}, {torch.cuda.get_device_properties(device).total_memory / 2**30:.0f} GiB"
    else:
        name = "cpu"
    precision = "bf16 autocast, channels_last" if cuda else "float32"
    cudnn = torch.backends.cudnn.version() if cuda else None
    print(
        f"comcl GPU check: {name} ({precision}), torch {torch.__version__}, CUDA {torch.version.cuda or 'none'}"
        + (f", cuDNN {cudnn}" if cudnn else "")
        + f", {args.threads} torch threads, {len(os.sched_getaffinity(0))} CPUs, seed {args.seed}"
    )
    sizes = "the paper's" if args.preset == "paper" else "tiny (a smoke test: the targets are meant for the paper's sizes)"
    print(
        f"sizes {sizes}; median of {args.steps} rounds of steps after {args.warmup} untimed, the two steps of a part "
        "timed in turns, each time read after a device synchronisation"
    )
    print()


def check_pretraining(args: argparse.Namespace, device: torch.device, variant: Mapping[str, Any]) -> tuple[Variant, float]:
    """Part 1: CoMCL's step against the bare step at the same images per step; CoMCL's variant and median seconds."""
    groups, pairs, spl = variant["groups"], tuple(map(tuple, variant["pairs"])), variant["spl"]
    step_args = argparse.Namespace(
        arch=args.arch,
        size=args.size,
        queue_size=args.queue_size,
        dim=PRETRAIN["dim"],
        temperature=PRETRAIN["temperature"],
        key_splits=PRETRAIN["key_splits"],
        seed=args.seed,
    )
    k_t = negatives_at(round(_PROGRESS * 10_000), 10_000, args.queue_size) if spl["enabled"] else args.queue_size
    label = f"CoMCL, {len(groups)} x {args.per_level}, {len(pairs)} pairs, {'SPL' if spl['enabled'] else 'no SPL'}"
    comcl = Variant(label, dict.fromkeys(groups, args.per_level), pairs, spl["enabled"])
    patches, query_images = comcl.patches, comcl.query_images
    steps = [
        PretrainStep(comcl, spl, step_args, device, k_t),
        BareStep(args.arch, patches, args.size, "adamw", PRETRAIN["lr"], PRETRAIN["weight_decay"], True, device, args.seed),
    ]
    times = time_in_turns(steps, device, args.warmup, args.steps)
    del steps
    _free(device)

    cuda = device.type == "cuda"
    variant_file = COMCL_VARIANT.relative_to(REPO)
    print(f"1. Pretraining step: CoMCL ({variant_file}) against a bare {args.arch} training step at the same batch")
    print(
        f"  CoMCL: {len(groups)} groups ({', '.join(groups)}) x {args.per_level} patches, views (3, {args.size}, {args.size}); "
        f"pairs {', '.join(f'({a}, {n})' for a, n in pairs)}; SPL {'on' if spl['enabled'] else 'off'} ({spl['rule']}, "
        f"min_fraction {spl['min_fraction']}), K_t {k_t} of {args.queue_size} ({_PROGRESS:.0%} of training); "
        f"AdamW lr {PRETRAIN['lr']:g} wd {PRETRAIN['weight_decay']:g}; {PRETRAIN['key_splits']} key sub-batches; "
        f"views from {'pinned ' if cuda else ''}host memory"
    )
    print(
        f"  same batch: {patches} images per step, the patches CoMCL draws (all through the key encoder's forward pass, "
        f"the {query_images} of {', '.join(comcl.anchors)} also through the query encoder's forward and backward); "
        f"the bare step: {patches} images forward and backward, same AdamW"
    )
    print(
        f"  {'step':<34} {'images/step':>11} {'query img':>9} {'key img':>7} {'ms/step':>9} {'min':>8} {'max':>8} "
        f"{'img/s':>9} {'encoder img/s':>13}"
    )
    rows = ((comcl.label, query_images, patches, times[0]), (f"bare {args.arch}, batch {patches}", patches, 0, times[1]))
    for label, query, key, seconds in rows:
        median = statistics.median(seconds)
        print(
            f"  {label:<34} {patches:>11} {query:>9} {key:>7} {1000 * median:>9.1f} {1000 * min(seconds):>8.1f} "
            f"{1000 * max(seconds):>8.1f} {patches / median:>9.1f} {(query + key) / median:>13.1f}"
        )
    comcl_seconds, bare_seconds = map(statistics.median, times)
    print(f"  CoMCL / bare, img/s at the same batch: {verdict(bare_seconds / comcl_seconds, args.target_pretrain)}")
    print()
    return comcl, comcl_seconds


def check_finetuning(args: argparse.Namespace, device: torch.device) -> None:
    """Part 2: the fine-tuning step against the bare step at the same batch."""
    batch, size = args.finetune_batch, args.finetune_size
    lr, weight_decay = FINETUNE["lr"], FINETUNE["weight_decay"]
    steps = [
        FinetuneStep(args.arch, batch, size, device, args.seed),
        BareStep(args.arch, batch, size, "sgd", lr, weight_decay, True, device, args.seed),
    ]
    times = time_in_turns(steps, device, args.warmup, args.steps)
    del steps
    _free(device)

    print(f"2. Fine-tuning step at {size} px against the bare {args.arch} step at the same batch")
    print(
        f"  comcl.finetune.train.train_step: {args.arch} from scratch, {_CLASSES} grades, cross-entropy, SGD (Nesterov "
        f"{MOMENTUM}) lr {lr:g} wd {weight_decay:g}; bare: the same SGD, 1000 classes; "
        f"both {batch} images forward and backward per step, from {'pinned ' if device.type == 'cuda' else ''}host memory"
    )
    print(f"  {'step':<34} {'images/step':>11} {'ms/step':>9} {'min':>8} {'max':>8} {'img/s':>9}")
    labels = (f"fine-tuning, {args.arch}, batch {batch}", f"bare {args.arch}, batch {batch}")
    for label, seconds in zip(labels, times, strict=True):
        median = statistics.median(seconds)
        print(
            f"  {label:<34} {batch:>11} {1000 * median:>9.1f} {1000 * min(seconds):>8.1f} {1000 * max(seconds):>8.1f} "
            f"{batch / median:>9.1f}"
        )
    finetune_seconds, bare_seconds = map(statistics.median, times)
    print(f"  fine-tuning / bare, img/s at the same batch: {verdict(bare_seconds / finetune_seconds, args.target_finetune)}")
    print()


def check_loader(
    args: argparse.Namespace, device: torch.device, variant: Mapping[str, Any], comcl: Variant, step_seconds: float
) -> None:
    """Part 3: the patch-store loader as ``pretrain`` builds it, against the CoMCL step's consumption."""
    cuda = device.type == "cuda"
    groups = variant["groups"]
    per_round = max(1, args.workers)
    with tempfile.TemporaryDirectory(prefix="gpu_check.") as folder:
        store = Path(folder) / "patches.parquet"
        store_bytes = write_random_store(
            store, list(groups), args.store_per_level, args.size, PATCHES["row_group_bytes"], args.seed
        )
        source = PatchSource(store)
        members = group_members(source, groups, "train")
        preset = PRETRAIN["augment"][source.store.metadata["modality"]]
        augment = build_augmentation(preset, args.size)
        batches = StepBatches(
            source,
            {name: members[name] for name in comcl.used},
            args.per_level,
            augment,
            args.seed,
            anchors=comcl.anchors,
            on_device=cuda,  # as pretrain does: on a GPU the workers hand over the patches, the device makes the views
        )
        batch_bytes = item_bytes(batches[0])
        loader = torch.utils.data.DataLoader(
            batches,
            batch_size=None,
            sampler=range(per_round * (args.rounds + 1)),
            num_workers=args.workers,
            pin_memory=cuda,
            persistent_workers=False,
        )
        first_round, rounds = time_loader(loader, per_round, args.rounds)
        row_groups = len(source.store.row_group_starts) - 1
        cache_bytes = source.store.cache_bytes
        del loader, batches, source
    loader_seconds = statistics.median(rounds) / per_round  # per step

    patches = comcl.patches
    used_views = comcl.query_images + patches  # view 1 of the anchor groups, view 2 of every group: all that is made
    total_patches = len(groups) * args.store_per_level
    print(f"3. Patch-store loader (StepBatches, {preset['preset']} augmentation) against what the CoMCL step consumes")
    print(
        f"  store: {total_patches} random RGB patches of {args.size} px ({len(groups)} levels x {args.store_per_level}), "
        f"{store_bytes / 2**20:.1f} MiB, {store_bytes / total_patches / 1000:.1f} kB/patch, {row_groups} row groups; "
        f"reader cache {cache_bytes / 2**20:.0f} MiB per process"
    )
    shm = f", /dev/shm {shutil.disk_usage('/dev/shm').free / 2**30:.1f} GiB free" if os.path.isdir("/dev/shm") else ""
    print(
        f"  DataLoader as pretrain's: one step per item, {args.workers} workers, pin_memory {cuda}; a step's batch is "
        f"{batch_bytes / 1e6:.1f} MB of uint8 {'patches and view parameters (views made on the device)' if cuda else 'views'} "
        f"(up to {_PREFETCH * per_round} in flight{shm})"
    )
    print(
        f"  loader: median of {args.rounds} rounds of {per_round} steps after a first round of {first_round:.1f} s "
        "(worker start-up); timed alone, without a training step beside it"
    )
    print(f"  {'':<34} {'ms/step':>9} {'patches/s':>10} {'views/step':>10} {'views/s':>9}")
    rows = (("loader delivers", loader_seconds, used_views), ("CoMCL step (part 1) consumes", step_seconds, used_views))
    for label, seconds, count in rows:
        print(f"  {label:<34} {1000 * seconds:>9.1f} {patches / seconds:>10.1f} {count:>10} {count / seconds:>9.1f}")
    print(f"  views/step: view 1 of the anchor groups and view 2 of every group ({used_views}), the only ones made")
    ratio = step_seconds / loader_seconds
    keeps = "keeps up" if ratio >= args.target_loader else "does not keep up"
    print(f"  loader / consumption, patches/s: {verdict(ratio, args.target_loader)}: the loader {keeps}")
    print()


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse(argv)
    sys.stdout.reconfigure(line_buffering=True)  # each part's table is out before the next part starts
    wall_start = time.perf_counter()
    load_before = os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    variant = read_variant()
    _header(args, device)
    comcl, step_seconds = check_pretraining(args, device, variant)
    check_finetuning(args, device)
    check_loader(args, device, variant, comcl, step_seconds)
    print_footer(wall_start, "set-up and the store", load_before, args.threads)


if __name__ == "__main__":
    main()
