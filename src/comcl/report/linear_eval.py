"""The linear evaluation's table: per dataset, each encoder's test metrics per version, beside the start.

An encoder is evaluated once (no seed changes a frozen encoder's features or the regression); the start,
random weights, once per seed, shown as mean ± std over the seeds. Undefined metrics are "n/d" in the
Markdown and empty in the CSV, as in Tables 1-3.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comcl.errors import DataError
from comcl.finetune.linear import START
from comcl.finetune.results import TASK_METRICS
from comcl.io import atomic_path, write_text

COLUMNS = ("dataset", "version", "method", "init", "metric", "mean", "std", "runs", "defined")
START_LABELS = {"scratch": "Random weights", "imagenet": "ImageNet weights"}


def _read(path: str | Path) -> dict[str, Any]:
    hint = "delete the file and run the workflow again"
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read the linear evaluation: {error}", path=path, hint=hint) from error
    if (
        not isinstance(document, dict)
        or document.get("task") not in TASK_METRICS
        or not isinstance(document.get("methods"), dict)
    ):
        raise DataError("not a linear evaluation's metrics (no task or methods)", path=path, hint=hint)
    return document


def summarize(files: Mapping[tuple[str, str], str | Path]) -> pd.DataFrame:
    """One row per dataset, version, method and metric (columns :data:`COLUMNS`) from the linear evaluations'
    metrics.json files, keyed by (dataset, version): the mean and sample std over the runs where the metric is
    defined."""
    records = []
    for (dataset, version), path in files.items():
        document = _read(path)
        for method, runs in document["methods"].items():
            init = next(iter(runs.values()))["init"].split(" ", 1)[0]
            for metric in TASK_METRICS[document["task"]]:
                values = np.array([math.nan if run[metric] is None else float(run[metric]) for run in runs.values()])
                defined = values[~np.isnan(values)]
                records.append(
                    {
                        "dataset": dataset, "version": version, "method": method, "init": init, "metric": metric,
                        "mean": float(defined.mean()) if len(defined) else math.nan,
                        "std": float(defined.std(ddof=1)) if len(defined) > 1 else math.nan,
                        "runs": len(values), "defined": len(defined),
                    }
                )  # fmt: skip
    return pd.DataFrame(records, columns=list(COLUMNS))


def _cell(row: pd.Series) -> str:
    if row["defined"] == 0:
        return "n/d"
    text = f"{row['mean']:.3f}"
    return f"{text} ± {row['std']:.3f}" if row["defined"] > 1 else text


def _label(method: str, init: str, labels: Mapping[str, str]) -> str:
    if method == START:
        return START_LABELS.get(init, "Start weights")
    return labels.get(method, method)


def markdown(summary: pd.DataFrame, labels: Mapping[str, str], notes: tuple[str, ...] = ()) -> str:
    """The table by hand, one block per dataset, as Tables 1-3 are written."""
    lines = ["## Linear evaluation: a logistic regression on the frozen encoders' features", ""]
    if summary.empty:
        return "\n".join([*lines, "No pretrained encoder ran, so nothing was evaluated.", ""])
    for dataset, block in summary.groupby("dataset", sort=False):
        versions = list(dict.fromkeys(block["version"]))
        metrics = list(dict.fromkeys(block["metric"]))
        head = ["Method", *(f"{version}: {metric}" for version in versions for metric in metrics)]
        lines += [f"### {dataset}", "", "| " + " | ".join(head) + " |", "|" + "---|" + "---:|" * (len(head) - 1)]
        for method, rows in block.groupby("method", sort=False):
            cells = {(row["version"], row["metric"]): _cell(row) for _, row in rows.iterrows()}
            label = _label(str(method), str(rows["init"].iloc[0]), labels)
            lines.append("| " + " | ".join([label, *(cells.get((v, m), "–") for v in versions for m in metrics)]) + " |")
        lines.append("")
    legend = (
        "Test metrics of a logistic regression on each frozen encoder's pooled features, its C chosen on the validation "
        "split's kappa; an encoder runs once (nothing random is left), random weights once per seed (mean ± std)."
    )
    return "\n".join([*lines, f"- {legend}", *(f"- {note}" for note in notes)]) + "\n"


def write_linear_table(
    files: Mapping[tuple[str, str], str | Path], labels: Mapping[str, str], csv: str | Path, markdown_file: str | Path
) -> pd.DataFrame:
    """The CSV and Markdown of the linear evaluation; ``labels``: method -> the name the tables give it."""
    summary = summarize(files)
    with atomic_path(csv) as tmp:
        summary.to_csv(tmp, index=False, float_format="%.10g")
    write_text(markdown_file, markdown(summary, labels))
    return summary
