"""Train the lesion detector with MMEngine's Runner, evaluate COCO mAP, export a clean checkpoint.

The model comes from an MMDetection config file in the repository; data, schedule and backbone
initialisation come from the workflow's ``detector`` section, so one file serves every dataset.

Checkpoints: MMEngine's training checkpoints pickle its message hub (HistoryBuffer, numpy internals,
even ``getattr``), which torch >= 2.6 refuses under ``weights_only=True``. They stay in the run's
own work folder and are only ever read back to resume that same run (its configuration stamp must
match), and are deleted once the outputs are written. What leaves the run is
:func:`export_checkpoint`'s file: a state dict plus plain metadata, which loads with ``weights_only=True``.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mmengine.device.utils
import pandas as pd
import torch
from mmengine.config import Config
from mmengine.runner import CheckpointLoader, Runner, find_latest_checkpoint

from comcl.checkpoints import discard_checkpoint, save_torch
from comcl.checkpoints import run_stamp as checkpoint_stamp
from comcl.curves import draw_training_curves
from comcl.detector.annotations import coco_classes
from comcl.devices import detector_device
from comcl.io import atomic_path, write_json
from comcl.threads import limit_threads
from comcl.weights import fetch_weights

log = logging.getLogger(__name__)
RESUME_SCHEME = "comcl-run://"
CHECKPOINT_FORMAT = "comcl-detector-1"


@CheckpointLoader.register_scheme(prefixes=RESUME_SCHEME)
def _load_own_checkpoint(filename: str, map_location: Any) -> Any:
    """Resume loader for the run's own checkpoints (see the module docstring), never for outside files."""
    return torch.load(filename.removeprefix(RESUME_SCHEME), map_location=map_location, weights_only=False)


def pipelines(scale: tuple[int, int]) -> tuple[list[dict], list[dict]]:
    """Training and test pipelines: images resized to fit ``scale`` (width, height), ratio kept."""
    train: list[dict] = [
        dict(type="LoadImageFromFile"),
        dict(type="LoadAnnotations", with_bbox=True),
        dict(type="Resize", scale=scale, keep_ratio=True),
        dict(type="RandomFlip", prob=0.5),
        dict(type="PackDetInputs"),
    ]
    test: list[dict] = [
        dict(type="LoadImageFromFile"),
        dict(type="Resize", scale=scale, keep_ratio=True),
        dict(type="LoadAnnotations", with_bbox=True),
        dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")),
    ]
    return train, test


def model_config(path: str | Path, classes: list[str]) -> Config:
    """The MMDetection config file at ``path``, its box head sized for ``classes``."""
    config = Config.fromfile(str(path))
    config.model.roi_head.bbox_head.num_classes = len(classes)
    return config


def model_definition(path: str | Path, classes: list[str]) -> dict[str, Any]:
    """The model part of :func:`model_config` as plain data: what an exported checkpoint records."""
    return json.loads(json.dumps(model_config(path, classes).model.to_dict()))


def build_config(
    model_file: str | Path,
    classes: list[str],
    annotations: Mapping[str, str | Path],
    params: Mapping[str, Any],
    work_dir: Path,
    backbone: Path | None,
) -> Config:
    """The full Runner configuration: the model file plus data, schedule and hooks from ``params``."""
    config = model_config(model_file, classes)
    scale = tuple(params["scale"])
    train_pipeline, test_pipeline = pipelines(scale)
    iterations = params["iterations"]
    if backbone is not None:
        config.model.backbone.init_cfg = dict(type="Pretrained", checkpoint=str(backbone))

    def dataset(split: str, pipeline: list[dict], **extra: Any) -> dict:
        return dict(
            type="CocoDataset",
            data_root="",
            ann_file=str(annotations[split]),
            data_prefix=dict(img=""),
            metainfo=dict(classes=tuple(classes)),
            pipeline=pipeline,
            **extra,
        )

    workers = params["workers"]
    config.merge_from_dict(
        dict(
            default_scope="mmdet",
            work_dir=str(work_dir),
            train_dataloader=dict(
                batch_size=params["batch_size"],
                num_workers=workers,
                persistent_workers=workers > 0,
                sampler=dict(type="InfiniteSampler", shuffle=True),
                batch_sampler=dict(type="AspectRatioBatchSampler"),
                dataset=dataset("train", train_pipeline, filter_cfg=dict(filter_empty_gt=True, min_size=1)),
            ),
            train_cfg=dict(type="IterBasedTrainLoop", max_iters=iterations, val_interval=iterations + 1),
            test_dataloader=dict(
                batch_size=1,
                num_workers=workers,
                persistent_workers=False,
                drop_last=False,
                sampler=dict(type="DefaultSampler", shuffle=False),
                dataset=dataset("test", test_pipeline, test_mode=True),
            ),
            test_cfg=dict(type="TestLoop"),
            test_evaluator=dict(
                type="CocoMetric", ann_file=str(annotations["test"]), metric="bbox", classwise=True, format_only=False
            ),
            optim_wrapper=dict(optimizer=dict(lr=params["lr"])),
            param_scheduler=[
                dict(
                    type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=min(params["warmup_iterations"], iterations)
                ),
                dict(type="MultiStepLR", by_epoch=False, begin=0, end=iterations, milestones=[int(0.75 * iterations)], gamma=0.1),
            ],
            default_hooks=dict(
                timer=dict(type="IterTimerHook"),
                logger=dict(type="LoggerHook", interval=max(1, iterations // 20)),
                param_scheduler=dict(type="ParamSchedulerHook"),
                checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=params["checkpoint_interval"], max_keep_ckpts=1),
                sampler_seed=dict(type="DistSamplerSeedHook"),
            ),
            log_processor=dict(type="LogProcessor", window_size=max(1, iterations // 20), by_epoch=False),
            env_cfg=dict(
                cudnn_benchmark=False, mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0), dist_cfg=dict(backend="nccl")
            ),
            vis_backends=[dict(type="LocalVisBackend")],
            visualizer=dict(type="DetLocalVisualizer", vis_backends=[dict(type="LocalVisBackend")]),
            log_level="INFO",
            randomness=dict(seed=params["seed"]),
        )
    )
    return config


def run_stamp(model_file: Path, annotations: Mapping[str, str | Path], params: Mapping[str, Any], backbone: Path | None) -> str:
    """What the work folder's checkpoints depend on: resuming is only allowed when this is unchanged. Not the
    device: a training stopped on one resumes on another."""
    kept = {key: value for key, value in params.items() if key != "device"}
    return checkpoint_stamp(
        {"params": kept, "backbone": backbone}, read=[model_file, *(annotations[split] for split in sorted(annotations))]
    )


@contextmanager
def runner_device(device: torch.device) -> Iterator[None]:
    """MMEngine's Runner puts the model on the device MMEngine chose at import, a GPU when there is one: this one instead."""
    chosen = mmengine.device.utils.DEVICE
    mmengine.device.utils.DEVICE = device.type
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    try:
        yield
    finally:
        mmengine.device.utils.DEVICE = chosen


def _prepare_work_dir(work_dir: Path, stamp: str) -> str | None:
    """The checkpoint to resume from, or ``None``; a work folder from another configuration is cleared."""
    stamp_file = work_dir / "stamp"
    if work_dir.exists() and (not stamp_file.is_file() or stamp_file.read_text() != stamp):
        log.info("clearing %s: its checkpoints belong to another configuration", work_dir)
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    stamp_file.write_text(stamp)
    latest = own_checkpoint(work_dir)
    return RESUME_SCHEME + str(latest) if latest else None


def own_checkpoint(work_dir: Path) -> Path | None:
    """The checkpoint MMEngine's ``last_checkpoint`` points to, if it is one of this run's own files.

    Resuming unpickles the file (see the module docstring), so the pointer is followed only to a
    regular file directly in the work folder, symlinks resolved: a pointer to anywhere else is ignored.
    """
    pointer = find_latest_checkpoint(str(work_dir))
    if not pointer:
        return None
    folder = work_dir.resolve()
    target = (folder / pointer).resolve()
    if target.parent != folder or target.suffix != ".pth" or not target.is_file():
        log.warning("not resuming from %s: the detector resumes only from a .pth file in its work folder %s", pointer, work_dir)
        return None
    return target


def export_checkpoint(
    path: str | Path, model: torch.nn.Module, classes: list[str], definition: dict, scale: tuple[int, int]
) -> None:
    """The detector for inference: tensors and plain metadata only, so it loads with ``weights_only=True``."""
    meta = {"format": CHECKPOINT_FORMAT, "classes": list(classes), "scale": list(scale), "model": json.dumps(definition)}
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    save_torch(path, {"state_dict": state, "meta": meta})


def _scalars(work_dir: Path) -> list[dict[str, Any]]:
    """The training scalars MMEngine logged (loss terms, learning rate) per logged iteration."""
    rows: dict[int, dict[str, Any]] = {}
    for file in sorted(work_dir.glob("*/vis_data/scalars.json")):
        for line in file.read_text().splitlines():
            record = json.loads(line)
            if "loss" in record:
                rows[record["iter"]] = record
    return [rows[step] for step in sorted(rows)]


def train_detector(
    model_file: str | Path,
    annotations: Mapping[str, str | Path],
    params: Mapping[str, Any],
    work_dir: str | Path,
    checkpoint: str | Path,
    metrics: str | Path,
    training_log: str | Path,
    figure: str | Path,
    threads: int,
) -> dict[str, Any]:
    """Train (resuming the run in ``work_dir`` if it was stopped), test on the auxiliary test split, export.
    The device, ``params["device"]``, is checked first: see :func:`comcl.devices.detector_device`."""
    device = detector_device(params["device"], "detector.device")
    log.info("device: %s", device)
    limit_threads(threads)
    model_file, work_dir = Path(model_file), Path(work_dir)
    classes = coco_classes(annotations["train"])
    backbone = fetch_weights(params["pretrained"])
    log.info("backbone: %s", f"ImageNet weights from {backbone}" if backbone else "random initialisation (from scratch)")
    config = build_config(model_file, classes, annotations, params, work_dir, backbone)
    resume = _prepare_work_dir(work_dir, run_stamp(model_file, annotations, params, backbone))
    if resume:
        log.info("resuming from %s", resume.removeprefix(RESUME_SCHEME))
    config.merge_from_dict(dict(load_from=resume, resume=resume is not None))
    with runner_device(device):
        runner = Runner.from_cfg(config)
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.FileHandler):
                runner.logger.addHandler(handler)
        runner.train()
        results = runner.test()
    model = runner.model.module if hasattr(runner.model, "module") else runner.model
    export_checkpoint(checkpoint, model, classes, model_definition(model_file, classes), tuple(params["scale"]))
    # COCO gives NaN for a class absent from the test split, and -1 for an empty size range: both "undefined".
    coco = {key.removeprefix("coco/"): None if math.isnan(value) or value < 0 else float(value) for key, value in results.items()}
    summary = {
        "classes": classes,
        "backbone": "imagenet" if backbone else "scratch",
        "iterations": params["iterations"],
        "mAP": coco.get("bbox_mAP"),
        "mAP_50": coco.get("bbox_mAP_50"),
        "AP_per_class": {name: coco.get(f"{name}_precision") for name in classes},
        "coco": coco,
    }
    write_json(metrics, summary)
    curves = pd.DataFrame(_scalars(work_dir))
    with atomic_path(training_log) as tmp:
        curves.to_csv(tmp, index=False)
    losses = [column for column in curves.columns if column.startswith("loss")]
    draw_training_curves(
        curves, "iter", {"loss": losses}, f"lesion detector: {', '.join(classes)} (COCO mAP {summary['mAP']})", figure
    )
    # MMEngine's checkpoints and its pointer to the latest; its logs stay beside the stamp.
    for path in [*work_dir.glob("*.pth"), work_dir / "last_checkpoint"]:
        discard_checkpoint(path)
    return summary
