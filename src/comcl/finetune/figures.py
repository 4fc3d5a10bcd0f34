"""Figures of the fine-tuning stage for one dataset version, every method side by side.

``draw_curves``: training loss and validation kappa per epoch (mean over seeds), the curves that
show whether a classifier learnt at all and where model selection stopped. ``draw_outcomes``: for
grading, each method's confusion matrix summed over seeds; for the multi-label task, the test AUROC
per finding and method (a 2 x 2 matrix per finding would be eight panels per method). Both read the
metrics.json files of the fine-tuning runs only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from comcl.finetune.results import read_metrics
from comcl.io import save_figure

Results = Mapping[str, Sequence[Mapping[str, Any]]]


def _mean_history(runs: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Loss and validation kappa per epoch, averaged over the seeds that have the epoch (undefined kappa left out)."""
    history = pd.DataFrame([row for run in runs for row in run["history"]])
    return history.astype({"val_kappa": float}).groupby("epoch", as_index=False)[["loss", "val_kappa"]].mean()


def draw_curves(results: Results, title: str, path: str | Path) -> None:
    """``results``: method label -> the metrics of its runs (one per seed)."""
    fig = Figure(figsize=(10, 3.6))
    loss_axis, kappa_axis = fig.subplots(1, 2)
    for label, runs in results.items():
        history = _mean_history(runs)
        (line,) = loss_axis.plot(history["epoch"], history["loss"], label=label, lw=1.2)
        kappa_axis.plot(history["epoch"], history["val_kappa"], color=line.get_color(), lw=1.2)
        best = [run["best_epoch"] for run in runs]
        kappa_axis.scatter(best, history.set_index("epoch").loc[best, "val_kappa"], color=line.get_color(), s=18, zorder=3)
    loss_axis.set(xlabel="epoch", ylabel="training loss")
    kappa_axis.set(xlabel="epoch", ylabel="validation kappa (dot: selected epoch)")
    for axis in (loss_axis, kappa_axis):
        axis.grid(alpha=0.3)
    loss_axis.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def draw_outcomes(results: Results, title: str, path: str | Path) -> None:
    """Confusion matrices (grading) or AUROC per finding (multi-label) of the test split."""
    tasks = {run["task"] for runs in results.values() for run in runs}
    if tasks == {"multilabel"}:
        _draw_auroc(results, title, path)
    else:
        _draw_confusions(results, title, path)


def _draw_confusions(results: Results, title: str, path: str | Path) -> None:
    columns = min(4, len(results))
    rows = -(-len(results) // columns)
    fig = Figure(figsize=(3.1 * columns, 3.0 * rows + 0.4))
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for axis, (label, runs) in zip(axes, results.items()):
        counts = np.sum([np.asarray(run["test"]["confusion"]) for run in runs], axis=0)
        shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        for (i, j), count in np.ndenumerate(counts):
            axis.text(j, i, str(count), ha="center", va="center", fontsize=7, color="white" if shares[i, j] > 0.5 else "black")
        kappas = [run["test"]["kappa"] for run in runs if run["test"]["kappa"] is not None]
        kappa = f"kappa {np.mean(kappas):.2f}" if kappas else "kappa n/d"
        axis.set_title(f"{label}\n{kappa}, {len(runs)} seed(s)", fontsize=8)
        axis.set(xlabel="predicted", ylabel="true", xticks=range(len(counts)), yticks=range(len(counts)))
    for axis in axes[len(results) :]:
        axis.set_axis_off()
    fig.suptitle(title + " (counts; colour: share of the true class)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def _draw_auroc(results: Results, title: str, path: str | Path) -> None:
    labels = list(next(iter(results.values()))[0]["test"]["per_label"])
    table = np.full((len(results), len(labels)), np.nan)
    for i, runs in enumerate(results.values()):
        for j, finding in enumerate(labels):
            values = [run["test"]["per_label"][finding]["auroc"] for run in runs]
            defined = [value for value in values if value is not None]
            if defined:
                table[i, j] = np.mean(defined)
    fig = Figure(figsize=(1.0 * len(labels) + 3, 0.45 * len(results) + 2))
    axis = fig.subplots()
    axis.imshow(np.ma.masked_invalid(table), cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    for (i, j), value in np.ndenumerate(table):
        axis.text(j, i, "n/d" if np.isnan(value) else f"{value:.2f}", ha="center", va="center", fontsize=7)
    axis.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=8)
    axis.set_yticks(range(len(results)), list(results), fontsize=8)
    axis.set_title(title + ": test AUROC per finding (mean over seeds; n/d: one class only)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def read_results(runs: Mapping[str, Sequence[str | Path]]) -> dict[str, list[dict[str, Any]]]:
    """Method label -> the checked metrics.json contents of its runs."""
    return {label: [read_metrics(path) for path in paths] for label, paths in runs.items()}


def run_finetune_figures(runs: Mapping[str, Sequence[str | Path]], title: str, curves: str | Path, outcomes: str | Path) -> None:
    results = read_results(runs)
    draw_curves(results, title, curves)
    draw_outcomes(results, title, outcomes)
