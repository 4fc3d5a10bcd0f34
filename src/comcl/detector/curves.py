"""The detector's training curves: each loss term MMEngine logged, against the iteration."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from comcl.io import atomic_path

PNG_METADATA = {"Software": None}


def draw_training_curves(log: pd.DataFrame, title: str, path: str | Path) -> None:
    """``log``: one row per logged iteration with an ``iter`` column and ``loss*`` columns."""
    fig = Figure(figsize=(6.5, 3.8))
    ax = fig.subplots()
    losses = [column for column in log.columns if column.startswith("loss")]
    for column in losses:
        ax.plot(log["iter"], log[column], label=column, lw=2.0 if column == "loss" else 1.0)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if losses:
        ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, metadata=PNG_METADATA)
