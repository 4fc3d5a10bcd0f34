"""Time of one CoMCL training step against a plain MoCo step (comcl.pretrain), in the same run.

Measures, and prints as plain-text tables:

1. The median time of one training step, after warm-up, of:

   * CoMCL as ``config/pretrain/comcl.yaml`` defines it: four level groups (L, L~, H, H~) of
     ``--batch / 4`` patches each, three pairs (L, L~), (L, H), (L~, H~) and self-paced learning on;
   * a plain MoCo step with as many patches: one group of ``--batch`` patches, one pair (the group
     against its own queue), no mining (``k`` None, every anchor selected);
   * a plain MoCo step with one group of ``--batch / 4`` patches, the per-group batch size of CoMCL
     (``batch_size`` in the configuration is per group).

   Each step is the body of the training loop of ``comcl.pretrain.train.pretrain``, call for call: the
   query encoder on view 1 of every anchor group in one pass, the momentum (key) encoder on view 2 of
   every group a pair uses in one shuffled pass of ``--key-splits`` sub-batches (shuffling BN), each
   group encoded once per view and step whatever the number of pairs that use it; per pair the mask of
   the anchors' own images among the queued keys, ``multilevel_loss`` (with ``K_t`` hard negatives),
   ``select_anchors`` and ``self_paced_loss``, the logged scalars; the pair losses summed, backward, a step
   of ``pretrain``'s optimiser (``build_optimizer``: AdamW), the momentum update and the keys of every queued
   group written into its queue. Learning rate, weight decay, momentum and the defaults of ``--queue-size``,
   ``--dim``, ``--temperature`` and ``--key-splits`` are the ``pretrain`` defaults of
   ``workflow/schemas/config.schema.yaml`` (the paper's values). For CoMCL ``K_t = negatives_at`` at
   ``--progress`` of training (half-way by default: 2896 of 4096) and the anchors are selected by the rule
   and ``min_fraction`` of ``spl`` in ``config/pretrain/comcl.yaml`` (over the defaults of
   ``workflow/schemas/variant.schema.yaml``, as the workflow reads it): the ``curriculum``, a top-k over the
   anchors' losses. So CoMCL's query encoder sees the two anchor groups (L, L~:
   ``batch / 2`` images, forward and backward) and its key encoder all four groups (``batch`` images,
   forward only).

   The target compares one training step of CoMCL (three pairs, SPL on) against a plain MoCo step (one
   pair, no mining) at the same batch size, backbone and patch size; "the same batch size" is read as
   the same number of patches drawn per step (and through the key encoder): 4 groups x ``batch / 4``
   against one group of ``batch``. That ratio must be at most ``--target`` (1.10; PASS or FAIL). Note
   that it does not hold the query encoder's work equal: MoCo's query encoder sees all ``batch``
   patches, CoMCL's only the anchor groups' ``batch / 2``; section 3 shows what the loss and the mining
   themselves add. The ratio against MoCo at the per-group batch (``batch / 4`` patches) follows as a
   secondary line, and both ratios per patch and per anchor image (an image through the query encoder).
2. Throughput: patches and encoder images (query + key) per second.
3. The loss and mining alone, without any encoder: the same calls on random L2-normalised embeddings of
   the same shapes, forward and backward into the embeddings. A pair's mining is a top-k over its
   ``batch/4 x delta`` similarity matrix.

Inputs are random tensors, two views of ``(n, 3, S, S)`` per group, made and moved to the device before
any timing: the step is measured, not the data loader nor the augmentation. The queues start full of
random unit keys. The three steps are timed in turns, round after round, so that they share the
machine's state; each step's time ends after a device synchronisation. The 1-minute load average
before and after is printed: above the thread count, other processes shared the CPUs. On CUDA the
steps run as in ``pretrain``: bf16 autocast for the encoders and channels_last (here view by view,
as channels_last takes rank-4 tensors only). Every model, input and queue is seeded from ``--seed``.

Run from the repository root::

    .venv/bin/python benchmarks/pretrain_step.py
    .venv/bin/python benchmarks/pretrain_step.py --arch resnet50 --threads 16
    .venv/bin/python benchmarks/pretrain_step.py --device cuda --batch 1600 --size 128
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from cli import judged, positive_int, print_footer, read_variant, schema_defaults

from comcl.pretrain.loss import multilevel_loss
from comcl.pretrain.mining import negatives_at, select_anchors, self_paced_loss
from comcl.pretrain.model import ContrastiveModel
from comcl.pretrain.train import build_optimizer, train_step

PRETRAIN = schema_defaults("pretrain")
_COMCL = read_variant()
_SPL = _COMCL["spl"]
_GROUPS = tuple(_COMCL["groups"])
_COMCL_PAIRS = tuple(map(tuple, _COMCL["pairs"]))
# On CUDA the paper's views and its per-group batch in every group; on a CPU the benchmark's own, smaller sizes, so
# that a step takes seconds rather than minutes.
_DEFAULTS = {
    "cpu": {"size": 64, "batch": 256},
    "cuda": {"size": PRETRAIN["view_size"], "batch": len(_GROUPS) * PRETRAIN["batch_size"]},
}


@dataclass(frozen=True)
class Variant:
    """A step: its groups (name: patches per step), pairs (anchor, negative) and whether SPL is on."""

    label: str
    groups: Mapping[str, int]
    pairs: tuple[tuple[str, str], ...]
    spl: bool

    @property
    def anchors(self) -> list[str]:
        return sorted({anchor for anchor, _ in self.pairs})

    @property
    def queued(self) -> list[str]:
        return sorted({negative for _, negative in self.pairs})

    @property
    def used(self) -> list[str]:
        return sorted(set(self.anchors) | set(self.queued))

    @property
    def patches(self) -> int:
        return sum(self.groups[name] for name in self.used)

    @property
    def query_images(self) -> int:
        return sum(self.groups[name] for name in self.anchors)

    @property
    def anchor_losses(self) -> int:
        return sum(self.groups[anchor] for anchor, _ in self.pairs)


@dataclass(frozen=True)
class Timing:
    variant: Variant
    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def ms(self) -> float:
        return 1000.0 * self.median


class Step:
    """One variant's model, optimiser, queues and inputs, and its training step as ``pretrain`` runs it."""

    def __init__(self, variant: Variant, args: argparse.Namespace, device: torch.device, k_t: int, seed: int) -> None:
        self.variant = variant
        self.device = device
        self.cuda = device.type == "cuda"
        self.temperature = args.temperature
        self.delta = args.queue_size
        self.k_t = k_t if variant.spl else args.queue_size  # what pretrain logs and self_paced_loss gets with SPL off
        torch.manual_seed(seed)
        model = ContrastiveModel(args.arch, variant.queued, args.queue_size, args.dim, None, PRETRAIN["momentum"]).to(device)
        self.optimizer = build_optimizer(model, PRETRAIN["lr"], PRETRAIN["weight_decay"])
        self.model = model.to(memory_format=torch.channels_last) if self.cuda else model
        generator = torch.Generator().manual_seed(seed)
        for name in variant.queued:
            self.model.enqueue(name, F.normalize(torch.randn(args.queue_size, args.dim, generator=generator), dim=1).to(device))
        self.views = {
            name: torch.randn(2, variant.groups[name], 3, args.size, args.size, generator=generator).to(device)
            for name in variant.used
        }
        # Image ids as the patch store gives them: several patches per image, none of them queued.
        self.images = {name: torch.arange(variant.groups[name]) // 4 for name in variant.used}
        self.key_splits = args.key_splits
        self.model.train()

    def __call__(self) -> dict[str, Any]:
        """``pretrain``'s own training step (inputs already on the device, so no transfer is timed)."""
        spl = _SPL | {"enabled": self.variant.spl}
        return train_step(
            self.model,
            self.optimizer,
            self.views,
            self.variant.pairs,
            spl,
            self.k_t,
            self.temperature,
            images=self.images,
            key_splits=self.key_splits,
        )


class LossOnly:
    """A variant's loss and mining on fixed random embeddings, forward and backward into the anchors' embeddings."""

    def __init__(self, variant: Variant, args: argparse.Namespace, device: torch.device, k_t: int, seed: int) -> None:
        self.variant = variant
        self.temperature = args.temperature
        self.k_t = k_t if variant.spl else args.queue_size
        self.delta = args.queue_size
        generator = torch.Generator().manual_seed(seed)

        def unit(count: int) -> torch.Tensor:
            return F.normalize(torch.randn(count, args.dim, generator=generator), dim=1).to(device)

        self.queries = {name: unit(variant.groups[name]).requires_grad_() for name in variant.anchors}
        self.keys = {name: unit(variant.groups[name]) for name in variant.used}
        self.negatives = {name: unit(args.queue_size) for name in variant.queued}

    def __call__(self) -> float:
        variant = self.variant
        for query in self.queries.values():
            query.grad = None
        total_loss = torch.zeros((), device=next(iter(self.keys.values())).device)
        logged = 0.0
        for anchor, negative in variant.pairs:
            k = self.k_t if variant.spl else None
            losses = multilevel_loss(self.queries[anchor], self.keys[anchor], self.negatives[negative], self.temperature, k)
            rule = _SPL["rule"] if variant.spl else "none"
            selected = select_anchors(losses, self.k_t, _SPL["min_fraction"], rule, self.delta).mask
            pair_loss, objective = self_paced_loss(losses, selected, self.k_t)
            total_loss = total_loss + pair_loss
            logged += float(losses.detach().mean()) + float(selected.float().mean()) + objective
        total_loss.backward()
        return logged + float(total_loss.detach())


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_in_turns(calls: Sequence[Callable[[], Any]], device: torch.device, warmup: int, steps: int) -> list[list[float]]:
    """Seconds of each call over ``steps`` rounds after ``warmup`` untimed ones; in each round the calls run in turn."""
    seconds: list[list[float]] = [[] for _ in calls]
    for round_number in range(warmup + steps):
        for number, call in enumerate(calls):
            _synchronize(device)
            start = time.perf_counter()
            call()
            _synchronize(device)
            if round_number >= warmup:
                seconds[number].append(time.perf_counter() - start)
    return seconds


def _batch(text: str) -> int:
    value = positive_int(text)
    if value % len(_GROUPS):
        raise argparse.ArgumentTypeError(
            f"must be a multiple of {len(_GROUPS)} (CoMCL splits it over its level groups), got {value}"
        )
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {value}")
    return value


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Median time of one CoMCL pretraining step (4 level groups, 3 pairs, self-paced hard-negative mining) "
            "against a plain MoCo step (1 group, 1 pair, no mining) with as many patches per step, and against one "
            "at CoMCL's per-group batch; the loss and mining timed alone. Random inputs, no data loading."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--device", default="auto", help="torch device; auto = cuda if available, else cpu")
    parser.add_argument(
        "--arch",
        default="resnet18",
        help=f"torchvision ResNet backbone (resnet18, resnet50, ...); the paper's is {PRETRAIN['arch']}, resnet18 keeps a CPU run short",
    )
    parser.add_argument(
        "--batch",
        type=_batch,
        default=None,
        help=f"patches per step (CoMCL: batch/4 per level group); unset: {_DEFAULTS['cpu']['batch']} on CPU, "
        f"{_DEFAULTS['cuda']['batch']} on CUDA",
    )
    parser.add_argument(
        "--size",
        type=positive_int,
        default=None,
        help=f"side S of the (3, S, S) inputs, px; unset: {_DEFAULTS['cpu']['size']} on CPU, {_DEFAULTS['cuda']['size']} on CUDA",
    )
    parser.add_argument(
        "--queue-size", type=positive_int, default=PRETRAIN["queue_size"], help="negatives per level queue (delta)"
    )
    parser.add_argument("--dim", type=positive_int, default=PRETRAIN["dim"], help="embedding size")
    parser.add_argument("--temperature", type=float, default=PRETRAIN["temperature"], help="temperature tau of the loss")
    parser.add_argument(
        "--key-splits",
        type=positive_int,
        default=PRETRAIN["key_splits"],
        help="sub-batches of the key encoder's shuffled batch (pretrain.key_splits)",
    )
    parser.add_argument("--progress", type=_fraction, default=0.5, help="share of training done, for CoMCL's K_t = negatives_at")
    parser.add_argument("--steps", type=positive_int, default=20, help="timed steps per variant (the median is reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first")
    parser.add_argument("--loss-steps", type=positive_int, default=50, help="timed loss-only calls per variant (section 3)")
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=len(os.sched_getaffinity(0)),
        help="torch.set_num_threads; all the CPUs this process may use",
    )
    parser.add_argument("--target", type=float, default=1.10, help="most CoMCL / MoCo step time at the same patches per step")
    parser.add_argument("--seed", type=int, default=0, help="seed of every model, input and queue")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse(argv)
    wall_start = time.perf_counter()
    load_before = os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    defaults = _DEFAULTS["cuda" if device.type == "cuda" else "cpu"]
    args.batch = args.batch or defaults["batch"]
    args.size = args.size or defaults["size"]
    per_group = args.batch // len(_GROUPS)
    progress_steps = 10_000
    k_t = negatives_at(round(args.progress * progress_steps), progress_steps, args.queue_size)

    variants = [
        Variant(
            f"CoMCL, {len(_GROUPS)} x {per_group}, {len(_COMCL_PAIRS)} pairs, {'SPL' if _SPL['enabled'] else 'no SPL'}",
            dict.fromkeys(_GROUPS, per_group),
            _COMCL_PAIRS,
            _SPL["enabled"],
        ),
        Variant(f"MoCo, 1 x {args.batch}, same patches", {"image": args.batch}, (("image", "image"),), False),
        Variant(f"MoCo, 1 x {per_group}, per-group batch", {"image": per_group}, (("image", "image"),), False),
    ]
    comcl, moco, moco_group = variants

    steps = [Step(variant, args, device, k_t, args.seed) for variant in variants]
    step_seconds = time_in_turns(steps, device, args.warmup, args.steps)
    timings = [Timing(variant, seconds) for variant, seconds in zip(variants, step_seconds, strict=True)]
    selected = {name: value for name, value in steps[0]().items() if name.startswith("selected ")}
    del steps
    if device.type == "cuda":
        torch.cuda.empty_cache()
    losses_only = [LossOnly(variant, args, device, k_t, args.seed) for variant in variants]
    loss_seconds = time_in_turns(losses_only, device, args.warmup, args.loss_steps)
    loss_timings = [Timing(variant, seconds) for variant, seconds in zip(variants, loss_seconds, strict=True)]
    step_of = {timing.variant.label: timing for timing in timings}
    loss_of = {timing.variant.label: timing for timing in loss_timings}

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {args.threads} torch threads"
    precision = "bf16 autocast, channels_last" if device.type == "cuda" else "float32"
    print(f"comcl pretraining step benchmark: {name} ({precision}), torch {torch.__version__}, seed {args.seed}")
    print(
        f"{args.arch}, inputs (3, {args.size}, {args.size}), delta {args.queue_size}, dim {args.dim}, tau {args.temperature:g}, "
        f"AdamW lr {PRETRAIN['lr']:g} wd {PRETRAIN['weight_decay']:g}, momentum {PRETRAIN['momentum']}"
    )
    print(
        f"CoMCL: pairs {', '.join(f'({a}, {n})' for a, n in _COMCL_PAIRS)}; K_t = negatives_at at {args.progress:.0%} of training "
        f"= {k_t} of {args.queue_size}; {_SPL['rule']}, min_fraction {_SPL['min_fraction']} (anchors selected this step: "
        + ", ".join(f"{key[9:]} {value:.0%}" for key, value in selected.items())
        + ")"
    )
    print("MoCo: one group against its own queue, k None (every negative), rule none (every anchor)")
    print(f"median of {args.steps} steps after {args.warmup} warm-up steps each; the three steps timed in turns")
    print()
    print("1. One training step (query images: through the query encoder, forward and backward; key images: forward only)")
    print(
        f"  {'step':<34} {'patches':>7} {'query img':>9} {'key img':>7} {'anchor losses':>13} "
        f"{'ms/step':>9} {'min':>8} {'max':>8} {'ms/patch':>8} {'ms/query img':>12}"
    )
    for timing in timings:
        v = timing.variant
        print(
            f"  {v.label:<34} {v.patches:>7} {v.query_images:>9} {v.patches:>7} {v.anchor_losses:>13} "
            f"{timing.ms:>9.1f} {1000 * min(timing.seconds):>8.1f} {1000 * max(timing.seconds):>8.1f} "
            f"{timing.ms / v.patches:>8.2f} {timing.ms / v.query_images:>12.2f}"
        )
    print()
    c = step_of[comcl.label]
    print(f"  {'CoMCL / MoCo':<50} {'step time':>9} {'per patch':>9} {'per query img':>13}")
    for kind, reference in (("primary", moco), ("secondary", moco_group)):
        r = step_of[reference.label]
        step_ratio = c.median / r.median
        per_patch = (c.median / comcl.patches) / (r.median / reference.patches)
        per_query = (c.median / comcl.query_images) / (r.median / reference.query_images)
        label = f"{kind}: vs {reference.label}"
        verdict = (
            f"  step time target <= {args.target:.2f}: {judged(step_ratio, args.target, at_most=True)}"
            if reference is moco
            else ""
        )
        print(f"  {label:<50} {step_ratio:>9.3f} {per_patch:>9.3f} {per_query:>13.3f}{verdict}")
    print()
    print("2. Throughput")
    print(f"  {'step':<34} {'patches/s':>10} {'encoder images/s':>17}")
    for timing in timings:
        v = timing.variant
        print(f"  {v.label:<34} {v.patches / timing.median:>10.1f} {(v.query_images + v.patches) / timing.median:>17.1f}")
    print()
    print(
        f"3. Loss and mining alone, no encoder: random unit embeddings, forward + backward into the anchors' embeddings "
        f"(median of {args.loss_steps})"
    )
    print(f"  {'step':<34} {'similarity matrices':<24} {'ms':>8} {'share of its step':>17}")
    for timing in loss_timings:
        v = timing.variant
        top = f", top-{k_t}" if v.spl else ""
        matrices = f"{len(v.pairs)} x {v.groups[v.pairs[0][0]]} x {args.queue_size}{top}"
        print(f"  {v.label:<34} {matrices:<24} {timing.ms:>8.3f} {timing.median / step_of[v.label].median:>17.2%}")
    extra = loss_of[comcl.label].median - loss_of[moco.label].median
    print(
        f"  CoMCL's loss and mining minus MoCo's (1 x {args.batch}): {1000 * extra:+.3f} ms "
        f"= {extra / step_of[moco.label].median:+.2%} of the MoCo step at the same batch"
    )
    print()
    print_footer(wall_start, "model set-up", load_before, args.threads)


if __name__ == "__main__":
    main()
