"""The part of a run's configuration that the notes of Tables 1-3 state. Standard library only: the workflow
computes it when it loads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def table_context(configuration: Mapping[str, Any], versions: Sequence[str], path: str | Path) -> dict[str, Any]:
    """What the notes of the tables say of the resolved configuration, which is written to ``path`` (the run's
    ``config.yaml``) and named by the notes for every other setting. It reaches the tables rule as a parameter, so that
    the tables rerun when what their notes say changes, and only then."""
    finetune, pretrain = configuration["finetune"], configuration["pretrain"]
    return {
        "datasets": {
            name: {key: section[key] for key in ("format", "root", "task") if key in section}
            for name, section in configuration["datasets"].items()
        },
        "versions": list(versions),
        "seeds": finetune["seeds"],
        "finetune": {
            key: finetune[key] for key in ("epochs", "input_size", "batch_size", "loss", "optimizer", "lr", "cosine", "balanced")
        },
        "pretrain": {key: pretrain[key] for key in ("arch", "epochs", "steps", "batch_size", "view_size")},
        "file": str(path),
    }
