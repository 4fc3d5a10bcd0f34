"""Pretraining's loader: only the views a step reads, uint8 views normalised on the device, the grouped read order,
views made on the device drawn as albumentations draws them, the loader's workers, and the refusal of a short group."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy.stats import ks_2samp

from comcl import distributed
from comcl.augment import DRAWS, IMAGENET_MEAN, IMAGENET_STD, Augmentation, build_augmentation, normalise
from comcl.errors import DataError
from comcl.parallel import derived_seed
from comcl.pretrain import train as train_module
from comcl.pretrain.data import PatchSource, StepBatches, group_members, uniforms
from comcl.pretrain.model import ContrastiveModel
from comcl.pretrain.train import CHECKPOINT, MAX_WORKERS, device_views, loader_workers, train_step
from tests.conftest import REPO
from tests.interrupt import Killed, kill_after_optimizer_steps
from tests.test_pretrain import PARAMS, run

LEVELS = ("L", "L~", "H", "H~")
ANCHORS = {"L", "L~"}  # CoMCL's: (L, L~), (L, H), (L~, H~)
SIZE = 32
OFF = {"resized_crop": None, "hflip": 0.0, "vflip": 0.0, "rotate": None, "color_jitter": None, "grayscale": 0.0}


@pytest.fixture
def source(pretrain_data: tuple[Path, Path]) -> PatchSource:
    return PatchSource(pretrain_data[0])


def _batches(source: PatchSource, seed: int = 4, **options) -> StepBatches:
    members = group_members(source, {level: [level] for level in LEVELS}, "train")
    options = {"anchors": ANCHORS, **options}
    return StepBatches(source, members, 6, build_augmentation({"preset": "fundus"}, SIZE), seed, **options)


@pytest.fixture
def views_made(monkeypatch) -> dict[str, int]:
    """The number of views the loader has made so far (``Augmentation.pixels`` calls)."""
    count = {"views": 0}
    pixels = Augmentation.pixels

    def counted(self: Augmentation, image: np.ndarray, seed: int) -> np.ndarray:
        count["views"] += 1
        return pixels(self, image, seed)

    monkeypatch.setattr(Augmentation, "pixels", counted)
    return count


def test_a_group_that_only_feeds_a_queue_gets_its_key_view_alone(source, views_made):
    batches = _batches(source)
    views = batches[3]["views"]
    assert views_made["views"] == 2 * 6 * 2 + 2 * 6  # L and L~ two views each, H and H~ one
    assert {group: tuple(views[group].shape) for group in LEVELS} == {
        "L": (2, 6, 3, SIZE, SIZE),
        "L~": (2, 6, 3, SIZE, SIZE),
        "H": (1, 6, 3, SIZE, SIZE),
        "H~": (1, 6, 3, SIZE, SIZE),
    }
    # The key view is the one it was when both views were made.
    both = _batches(source, anchors=None)[3]["views"]
    assert all(torch.equal(views[group][-1], both[group][1]) for group in LEVELS)
    assert all(torch.equal(views[group], both[group]) for group in ANCHORS)


def test_pretraining_makes_only_the_views_its_steps_read(pretrain_data, tmp_path, views_made):
    run("comcl", pretrain_data, tmp_path, steps=2)
    batch, queue = PARAMS["batch_size"], PARAMS["queue_size"]
    # Per step: the anchors L and L~ two views, H and H~ their key view; the queues of L~, H, H~ start full.
    assert views_made["views"] == 2 * (2 * 2 * batch + 2 * batch) + 3 * queue


def test_the_step_reads_no_query_view_of_a_group_that_only_feeds_a_queue():
    """train_step with NaN as the query view of the queued-only groups (H) is train_step without that view."""
    generator = torch.Generator().manual_seed(3)
    batch = {level: torch.randn(2, 4, 3, 32, 32, generator=generator) for level in ("L", "H")}
    poisoned = {"L": batch["L"], "H": torch.cat([torch.full_like(batch["H"][:1], torch.nan), batch["H"][1:]])}
    alone = {"L": batch["L"], "H": batch["H"][1:]}
    rows, weights = [], []
    for views in (poisoned, alone):
        torch.manual_seed(0)
        model = ContrastiveModel("resnet18", ["H"], queue_size=4, dim=8, hidden=16).train()
        model.enqueue("H", torch.nn.functional.normalize(torch.randn(4, 8, generator=torch.Generator().manual_seed(1)), dim=1))
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
        spl = {"enabled": False}
        rows.append(train_step(model, optimizer, views, [("L", "H")], spl, 4, 0.07, key_splits=2))
        weights.append(model.backbone_q.conv1.weight.detach().clone())
    assert np.isfinite(rows[0]["loss"]) and rows[0] == rows[1]
    assert torch.equal(weights[0], weights[1])


def test_uint8_views_normalised_on_the_device_are_the_float_views_of_before(source):
    """The float32 view of the old loader (``augment(image, seed)``, seeded by step, group, position and view) is the
    uint8 view that the loader gives now, normalised where the batch lands."""
    batches = _batches(source)
    item = batches[2]
    assert all(views.dtype == torch.uint8 for views in item["views"].values())
    for group in LEVELS:
        images = source.load(batches.positions(group, 2 * 6, 6))
        made = device_views(item["views"][group], torch.device("cpu"))
        for number, view in zip(batches.made[group], made, strict=True):
            # The old loader's seeds: (seed, step, group, position, view).
            seeds = [derived_seed(4, 2, zlib.crc32(group.encode()), i, number) for i in range(6)]
            before = np.stack([batches.augment(image, seed) for image, seed in zip(images, seeds, strict=True)])
            assert view.dtype == torch.float32
            np.testing.assert_allclose(view.numpy(), before, rtol=0, atol=2e-6)
    grey = torch.tensor([[[[0, 128, 255]]]], dtype=torch.uint8)  # (1, 1, 1, 3): one grey channel
    expected = (np.array([0, 128, 255]) / 255 - np.array(IMAGENET_MEAN)[:, None]) / np.array(IMAGENET_STD)[:, None]
    np.testing.assert_allclose(normalise(grey)[0, :, 0].numpy(), expected, atol=2e-6)


def test_an_epoch_reads_each_row_group_of_a_group_in_one_run(source):
    batches = _batches(source)
    units = source.units(batches.members["L"])
    for epoch in range(3):
        order = batches.order("L", epoch)
        assert sorted(order) == sorted(batches.members["L"])  # every patch once an epoch
        runs = 1 + np.count_nonzero(np.diff(source.units(order)))
        assert runs == len(np.unique(units)) > 3  # a row group's patches come together
    assert not np.array_equal(batches.order("L", 0), batches.order("L", 1))
    assert not np.array_equal(batches.order("L", 0), _batches(source, seed=5).order("L", 0))
    # Batches of 6 read each row group once, or twice where a batch ends inside it.
    batches_of_epoch = [batches.positions("L", first, 6) for first in range(0, 18, 6)]
    reads = sum(len(np.unique(source.units(rows))) for rows in batches_of_epoch)
    assert reads <= len(np.unique(units)) + len(batches_of_epoch) - 1


def _tensors(item: dict, group: str) -> dict[str, tuple[torch.Tensor, int]]:
    """A group's tensors in a step's item, each with the dimension of its rows."""
    views = item["views"][group]
    parts = {"views": views} if isinstance(views, torch.Tensor) else views
    rows = {name: (value, 0 if name == "patches" else 1) for name, value in parts.items()}
    return rows | {"images": (item["images"][group], 0)}


@pytest.mark.parametrize("on_device", [False, True])
def test_a_steps_batch_is_a_function_of_the_step_and_its_shards_make_it_up(source, on_device):
    batches = _batches(source, on_device=on_device)
    later = [batches[step] for step in (9, 1, 9)]  # another epoch's order in between
    fresh = _batches(source, on_device=on_device)[9]
    shards = [_batches(source, on_device=on_device, rows=rows)[9] for rows in (slice(0, 2), slice(2, 6))]
    for group in LEVELS:
        for name, (whole, axis) in _tensors(fresh, group).items():
            assert torch.equal(_tensors(later[0], group)[name][0], whole) and torch.equal(
                _tensors(later[2], group)[name][0], whole
            )
            assert torch.equal(torch.cat([_tensors(shard, group)[name][0] for shard in shards], dim=axis), whole)
    rows = np.arange(40)
    assert np.array_equal(uniforms(7, rows[10:20], DRAWS), uniforms(7, rows, DRAWS)[10:20])
    assert abs(uniforms(7, np.arange(4000), 1).mean() - 0.5) < 0.02


def test_a_killed_run_with_views_made_on_the_device_resumes_to_the_same_weights(pretrain_data, tmp_path, monkeypatch):
    monkeypatch.setattr(train_module, "views_on_device", lambda device: True)
    total = run("comcl", pretrain_data, tmp_path / "whole", epochs=2)["steps"]

    stopped = tmp_path / "stopped"
    original = kill_after_optimizer_steps(monkeypatch, 3)
    with pytest.raises(Killed):
        run("comcl", pretrain_data, stopped, epochs=2)
    monkeypatch.setattr(torch.optim.AdamW, "step", original)
    assert torch.load(stopped / "work" / CHECKPOINT, weights_only=True)["step"] == 2
    run("comcl", pretrain_data, stopped, epochs=2)
    whole, resumed = (torch.load(folder / "encoder.pt", weights_only=True) for folder in (tmp_path / "whole", stopped))
    assert total > 3 and all(torch.equal(whole[key], resumed[key]) for key in whole)


# --- views made on the device against albumentations' ---------------------------------------------------------

VIEWS = 600  # per path and check


def _levels(normalised: torch.Tensor) -> np.ndarray:
    """Network input back in 0-255 levels, (N, 3, S, S)."""
    std, mean = np.array(IMAGENET_STD)[:, None, None], np.array(IMAGENET_MEAN)[:, None, None]
    return (normalised.double().numpy() * std + mean) * 255


def _cpu_views(augmentation: Augmentation, image: np.ndarray) -> np.ndarray:
    return _levels(normalise(torch.from_numpy(np.stack([augmentation.pixels(image, seed) for seed in range(VIEWS)]))))


def _gpu_views(augmentation: Augmentation, image: np.ndarray, seed: int = 1) -> np.ndarray:
    params = augmentation.draw(np.random.default_rng(seed).random((VIEWS, DRAWS)), *image.shape[:2])
    images = torch.from_numpy(np.repeat(image[None], VIEWS, axis=0))
    return _levels(augmentation.device_views(images, {name: torch.from_numpy(value) for name, value in params.items()}))


def _ramps(size: int) -> np.ndarray:
    """RGB: red 4 x column, green 4 x row: a view's pixels tell where in the image they came from."""
    rows, cols = np.mgrid[0:size, 0:size]
    return np.stack([4 * cols, 4 * rows, np.full_like(rows, 128)], axis=-1).astype(np.uint8)


def _geometry(levels: np.ndarray) -> dict[str, np.ndarray]:
    """Per view, from the affine map (view pixel -> image pixel) fitted on its central disc (which rotation and
    crop never take outside the image): the crop's width, height, left and top edge in image pixels (integers:
    fitted, they carry the CPU path's rounding to uint8 as noise, which rounding takes off again), the parity of
    its flips and the angle of its rotation (up to the flips)."""
    size = levels.shape[-1]
    centre = size / 2 - 0.5
    rows, cols = np.mgrid[0:size, 0:size]
    inner = (rows - centre) ** 2 + (cols - centre) ** 2 < (0.35 * size) ** 2
    design = np.stack([cols[inner] - centre, rows[inner] - centre, np.ones(inner.sum())], axis=1)  # (P, 3)
    targets = levels[:, :2][:, :, inner] / 4  # (N, 2, P): image column, row
    coefficients = np.linalg.lstsq(design, targets.reshape(-1, inner.sum()).T, rcond=None)[0]  # (3, 2N)
    linear = coefficients[:2].T.reshape(-1, 2, 2)  # (N, 2, 2): rows x, y of the map
    # The map is crop scale x flips x rotation: its rows' lengths are the crop's width and height per view pixel.
    width, height = (size * np.linalg.norm(linear, axis=2)).round().T
    return {
        "width": width,
        "height": height,
        "left": (coefficients[2, 0::2] - width / 2 + 0.5).round(),
        "top": (coefficients[2, 1::2] - height / 2 + 0.5).round(),
        "parity": np.sign(np.linalg.det(linear)),
        "angle": np.degrees(np.arctan2(linear[:, 0, 1], linear[:, 0, 0])),
    }


def _halves(levels: np.ndarray, channels: int) -> dict[str, np.ndarray]:
    """Mean level of each channel over the left and the right half's interior, and their difference."""
    size = levels.shape[-1]
    left, right = (part.mean(axis=(2, 3)) for part in (levels[..., 2 : size // 2 - 2], levels[..., size // 2 + 2 : -2]))
    means = {f"{side} {c}": part[:, c] for side, part in (("left", left), ("right", right)) for c in range(channels)}
    return means | {f"difference {c}": left[:, c] - right[:, c] for c in range(channels)}


def _same_distribution(cpu: dict[str, np.ndarray], gpu: dict[str, np.ndarray]) -> dict[str, float]:
    return {name: ks_2samp(cpu[name], gpu[name]).pvalue for name in cpu}


@pytest.mark.parametrize("preset", ["fundus", "chest"])
def test_views_made_on_the_device_have_the_crops_flips_and_rotations_of_albumentations(preset):
    image = _ramps(48)
    geometry = {key: value for key, value in OFF.items() if key in ("color_jitter", "grayscale")}
    augmentation = build_augmentation({"preset": preset, **geometry}, 40)
    cpu, gpu = _geometry(_cpu_views(augmentation, image)), _geometry(_gpu_views(augmentation, image))
    area = cpu["width"] * cpu["height"] / 48**2
    assert area.min() > augmentation.settings["resized_crop"]["scale"][0] - 0.05 and area.max() <= 1
    assert (np.abs(cpu["angle"]) > 5).mean() > 0.3 and (cpu["parity"] < 0).any() == (preset == "fundus")
    assert min(_same_distribution(cpu, gpu).values()) > 1e-3, _same_distribution(cpu, gpu)
    # The check can tell: crops of another scale do not pass it.
    crops = {"resized_crop": {"scale": [0.4, 0.8], "ratio": [0.8, 1.25]}}
    other = build_augmentation({"preset": preset, **geometry, **crops}, 40)
    assert _same_distribution(cpu, _geometry(_gpu_views(other, image)))["width"] < 1e-6


@pytest.mark.parametrize(("preset", "channels"), [("fundus", 3), ("chest", 1)])
def test_views_made_on_the_device_have_the_colours_of_albumentations(preset, channels):
    image = np.empty((40, 40, channels), dtype=np.uint8)
    image[:, :20], image[:, 20:] = (200, 90, 40)[:channels], (40, 120, 200)[:channels]
    colour = {key: value for key, value in OFF.items() if key not in ("color_jitter", "grayscale")}
    augmentation = build_augmentation({"preset": preset, **colour}, 40)
    cpu = _halves(_cpu_views(augmentation, image), 3)
    gpu = _halves(_gpu_views(augmentation, image), 3)
    assert min(_same_distribution(cpu, gpu).values()) > 1e-3, _same_distribution(cpu, gpu)
    grey = np.isclose(cpu["left 0"], cpu["left 2"], atol=1.5)  # views of three equal channels
    assert 0.1 < grey.mean() < 0.3 if preset == "fundus" else grey.all()
    jitter = dict(augmentation.settings["color_jitter"], brightness=0.1, contrast=0.1)
    other = build_augmentation({"preset": preset, **colour, "color_jitter": jitter}, 40)
    assert min(_same_distribution(cpu, _halves(_gpu_views(other, image), 3)).values()) < 1e-4


# --- the loader's workers -------------------------------------------------------------------------------------


def test_the_loader_takes_a_worker_per_core_beside_the_training_process_at_most_16(monkeypatch):
    assert [loader_workers(None, cores) for cores in (1, 2, 8, 17, 64)] == [0, 1, 7, 16, MAX_WORKERS]
    assert loader_workers(3, 64) == 3 and loader_workers(0, 64) == 0
    monkeypatch.setattr(distributed, "world_size", lambda: 2)  # two GPUs share the job's cores and workers
    assert [loader_workers(None, 16), loader_workers(None, 64), loader_workers(6, 16)] == [7, 16, 3]
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    workers = schema["properties"]["pretrain"]["properties"]["workers"]
    assert workers["default"] is None and "at most 16" in " ".join(workers["description"].split())


# --- a group too short for its batch or queue -----------------------------------------------------------------


def test_a_short_group_of_patches_names_its_levels_and_the_patch_settings_that_give_more(pretrain_data, tmp_path):
    with pytest.raises(DataError) as lesion:
        run("lesion_cl", pretrain_data, tmp_path / "a", batch_size=41, queue_size=4)
    message = str(lesion.value)
    assert "group 'lesion' has 40 training items, but the configuration needs 41" in message
    assert "its patches per level: L: 20, L~: 20\n" in message
    assert "patches of L and L~ (patches.conf lower" in message and "patches.k" not in message
    with pytest.raises(DataError) as healthy:
        run("comcl_wo_ml", pretrain_data, tmp_path / "b", queue_size=41)
    message = str(healthy.value)
    assert "its patches per level: H: 20, H~: 20\n" in message
    assert "patches.k higher" in message and "patches.conf" not in message


def test_a_short_group_of_whole_images_is_told_about_images_batch_and_queue_only(pretrain_data, tmp_path):
    with pytest.raises(DataError) as short:
        run("basic_cl", pretrain_data, tmp_path, queue_size=81)
    message = str(short.value)
    assert "group 'image' has 80 training items, but the configuration needs 81" in message
    assert "its images per level: L: 20, L~: 20, H: 20, H~: 20\n" in message
    assert "pretrain.batch_size or pretrain.queue_size" in message and "more training images of L, L~, H and H~" in message
    assert "patches" not in message.split("What to do:")[1]


# --- the benchmark ----------------------------------------------------------------------------------------------

RATIO = r"(\d+\.\d+) \(target <= [\d.]+: (PASS|FAIL)\)"


def test_the_loader_benchmark_runs_tiny():
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "pretrain_loader.py"), "--quick"],
        env={**os.environ, "PYTHONPATH": f"{REPO / 'src'}:{REPO / 'benchmarks'}"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for ratio in ("bytes per batch, after / before: ", "loader time per step, after / before: "):
        assert re.search(re.escape(ratio) + RATIO, out), out
    assert re.search(r"workers to feed one H100: before \d+, after \d+", out), out
    assert "GFLOP" in out and "1-minute load average:" in out
