"""Training curves: logged values against the step, one panel per kind of value."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from comcl.io import save_figure


def draw_training_curves(log: pd.DataFrame, x: str, panels: Mapping[str, Sequence[str]], title: str, path: str | Path) -> None:
    """``panels``: y-axis label -> the columns of ``log`` drawn on it (missing columns are skipped)."""
    fig = Figure(figsize=(6.5, 2.2 + 1.8 * len(panels)))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (label, columns) in zip(axes, panels.items(), strict=True):
        for column in (c for c in columns if c in log.columns):
            ax.plot(log[x], log[column], label=column, lw=1.6 if column in ("loss", "total") else 1.0)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    axes[-1].set_xlabel(x)
    axes[0].set_title(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
