"""The paper's Fig. 1: t-SNE of encoder embeddings of patches, coloured by level, one panel per encoder.

The claim the figure supports is that CoMCL's encoder separates the four levels (lesion or healthy,
high or low quality) where instance discrimination (Basic CL) mixes them. Every encoder embeds the
same patches (drawn per level with a seed, from the test split where it has them), so the panels
differ only by the encoder. A t-SNE picture alone can mislead (its clusters depend on perplexity
and on the random start), so each panel also gives the silhouette score of the levels, computed in
the encoder's own feature space rather than in the 2-D map.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from sklearn.manifold import TSNE
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler
from torch import nn

from comcl.augment import to_input
from comcl.errors import DataError
from comcl.finetune.model import load_backbone, read_weights
from comcl.io import save_figure, write_json
from comcl.levels import LEVEL_NAMES, LEVELS
from comcl.patches.store import PatchDataset
from comcl.pretrain.model import backbone
from comcl.threads import limit_threads

log = logging.getLogger(__name__)

# Lesion levels warm, healthy levels cool; the low-quality level of each pair is the lighter shade.
LEVEL_COLOURS = {"L": "#d62728", "L~": "#ff9f40", "H": "#1f4e9c", "H~": "#6cc3f0"}
# Below 4 points the perplexity (N - 1) / 3 falls under 1: no neighbourhood for t-SNE to keep.
MIN_TSNE_POINTS = 4


def load_encoder(path: str | Path, arch: str) -> nn.Module:
    """The pretrained backbone in eval mode: ``backbone(arch)`` with ``encoder.pt`` loaded strictly.

    Strictly, because a partial load would embed with a half-random network and draw it as the pretrained one.
    """
    path = Path(path)
    hint = f"pretrain.arch must match the arch given here ({arch!r}); pass the encoder.pt that pretraining wrote"
    network, _ = backbone(arch)
    load_backbone(network, arch, read_weights(path, hint), path, (), hint)
    return network.eval()


def _present_levels(index: pd.DataFrame) -> list[str]:
    return [level for level in LEVELS if (index["level"] == level).any()]


def sample_patches(
    index: pd.DataFrame, per_level: int, seed: int, split: str = "test", source: str | Path | None = None
) -> np.ndarray:
    """Sorted store positions (``patch_id``): up to ``per_level`` patches of each level, drawn with ``seed``.

    From ``split`` (held-out patches show what the encoder learnt, not what it memorised); a level
    without a patch there is drawn from all splits, with a warning, so that it still appears in the
    figure (the lq100 versions have no high-quality level at all, which is then simply absent).
    ``source`` is the store, named in errors.
    """
    if index.empty:
        raise DataError(
            "the patch store holds no patch to embed", path=source, hint="check the patch stage's summary (patches.json)"
        )
    rng = np.random.default_rng(seed)
    chosen = []
    for level in _present_levels(index):
        rows = index[(index["level"] == level) & (index["split"] == split)]
        if rows.empty:
            rows = index[index["level"] == level]
            log.warning(
                "no %s patch in the %s split: drawing level %s from all splits (%d patches)", level, split, level, len(rows)
            )
        ids = rows["patch_id"].to_numpy(np.int64)
        chosen.append(rng.choice(ids, size=min(per_level, len(ids)), replace=False))
    return np.sort(np.concatenate(chosen))


@torch.no_grad()
def embed(
    encoder: nn.Module, store: PatchDataset, positions: Sequence[int] | np.ndarray, view_size: int, batch_size: int = 64
) -> np.ndarray:
    """(N, width) float32 features of the patches at ``positions``, each seen as at pretraining: resized, normalised."""
    encoder.eval()
    device = next(encoder.parameters()).device
    features = []
    positions = np.asarray(positions, dtype=np.int64)
    for start in range(0, len(positions), batch_size):
        batch = []
        for position in positions[start : start + batch_size].tolist():
            patch = cv2.resize(store[position], (view_size, view_size), interpolation=cv2.INTER_AREA)
            # cv2 drops the channel axis of a one-channel patch; to_input wants it back.
            batch.append(to_input(patch.reshape(view_size, view_size, -1)))
        features.append(encoder(torch.from_numpy(np.stack(batch)).to(device)).float().cpu())
    return torch.cat(features).numpy()


def _standardise(features: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per feature: a few large ReLU channels would otherwise decide every distance."""
    return StandardScaler().fit_transform(np.asarray(features, dtype=np.float64))


def tsne_2d(features: np.ndarray, seed: int) -> np.ndarray:
    """(N, 2) t-SNE map of the standardised ``features``: perplexity min(30, (N - 1) / 3), PCA start, seeded.

    Fewer than ``MIN_TSNE_POINTS`` rows raise DataError rather than falling back to PCA: a PCA plot
    titled t-SNE would be a different figure under the same name.
    """
    count = len(features)
    if count < MIN_TSNE_POINTS:
        raise DataError(
            f"t-SNE needs at least {MIN_TSNE_POINTS} patches, got {count}",
            hint="raise report.tsne per_level, or check that the patch store holds patches",
        )
    tsne = TSNE(n_components=2, perplexity=min(30.0, (count - 1) / 3), init="pca", random_state=seed)
    return tsne.fit_transform(_standardise(features)).astype(np.float32)


def level_silhouette(features: np.ndarray, levels: Sequence[str] | np.ndarray) -> float | None:
    """Silhouette score of the levels in the standardised feature space (Euclidean), in [-1, 1].

    None when it is undefined: fewer than two levels, or no patch left over to share a level with another.
    """
    levels = np.asarray(levels)
    groups = len(np.unique(levels))
    if groups < 2 or groups > len(levels) - 1:
        return None
    return float(silhouette_score(_standardise(features), levels))


def draw_tsne(
    panels: Mapping[str, tuple[np.ndarray, np.ndarray]], silhouettes: Mapping[str, float | None], title: str, path: str | Path
) -> None:
    """One panel per encoder (label -> (xy, levels)), points coloured by level, the silhouette in each title."""
    fig = Figure(figsize=(4.2 * len(panels), 4.9))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    shown: set[str] = set()
    for ax, (label, (xy, levels)) in zip(axes, panels.items(), strict=True):
        for level in LEVELS:
            mask = np.asarray(levels) == level
            if mask.any():
                ax.scatter(xy[mask, 0], xy[mask, 1], s=10, c=LEVEL_COLOURS[level], alpha=0.8, linewidths=0)
                shown.add(level)
        score = silhouettes.get(label)
        ax.set_title(f"{label}\nsilhouette of levels: {'n/a' if score is None else f'{score:.3f}'}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [
        Line2D([], [], ls="", marker="o", markersize=5, color=LEVEL_COLOURS[level], label=LEVEL_NAMES[level])
        for level in LEVELS
        if level in shown
    ]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(bottom=0.1, top=0.82, left=0.03, right=0.97, wspace=0.08)
    save_figure(fig, path)


def run_tsne(
    store: str | Path,
    encoders: Mapping[str, str | Path],
    arch: str,
    view_size: int,
    per_level: int,
    seed: int,
    figure: str | Path,
    summary: str | Path,
    threads: int,
) -> dict[str, Any]:
    """Embed the same sampled patches with every encoder (label -> encoder.pt); write the figure and the summary.

    The summary (also returned) is ``{label: {"silhouette": float | None, "patches": {level: count}}}``.
    """
    if not encoders:
        raise ValueError("run_tsne needs at least one encoder")
    limit_threads(threads)
    dataset = PatchDataset(store)
    positions = sample_patches(dataset.index, per_level, seed, source=store)
    # The writer numbers patches in the order it stores them: patch_id is the row of the index.
    levels = dataset.index["level"].to_numpy()[positions]
    counts = {level: int((levels == level).sum()) for level in LEVELS}
    panels: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    result: dict[str, Any] = {}
    for label, path in encoders.items():
        features = embed(load_encoder(path, arch), dataset, positions, view_size)
        panels[label] = (tsne_2d(features, seed), levels)
        result[label] = {"silhouette": level_silhouette(features, levels), "patches": counts}
        log.info("%s: %d patches embedded, silhouette of levels %s", label, len(positions), result[label]["silhouette"])
    meta = dataset.metadata
    title = (
        f"{meta.get('dataset')} {meta.get('proportion')}: t-SNE of {arch} encoder features of {len(positions)} patches by level"
    )
    draw_tsne(panels, {label: entry["silhouette"] for label, entry in result.items()}, title, figure)
    write_json(summary, result)
    return result
