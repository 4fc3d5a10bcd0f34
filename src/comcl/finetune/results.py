"""Reading back a fine-tuning run's metrics.json: every later stage (tables, figures) checks it the same way.

A file is accepted whole or refused naming what is wrong, so that a table or figure never shows half a
run; the only remedy for a bad file is to run its fine-tuning again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from comcl.errors import DataError
from comcl.finetune.metrics import MULTILABEL_METRICS

TASK_METRICS: dict[str, tuple[str, ...]] = {"grading": ("kappa", "accuracy"), "multilabel": MULTILABEL_METRICS}
# Per-class detail of a metrics.json by task: its key, what one entry is, the entry's metrics.
DETAIL = {"grading": ("per_class", "class", ("precision", "recall")), "multilabel": ("per_label", "label", MULTILABEL_METRICS)}
SPLITS = ("train", "val", "test")


def _is_number(value: Any) -> bool:
    """A metric value as metrics.json holds it: a number, or None where undefined."""
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def metrics_problem(document: Any) -> str | None:
    """What is wrong with a parsed metrics.json, or None."""
    if not isinstance(document, dict):
        return "not a JSON object"
    task = document.get("task")
    if task not in TASK_METRICS:
        return f"task {task!r} is none of {', '.join(TASK_METRICS)}"
    if not isinstance(document.get("init"), str):
        return "no 'init' string"
    sizes = document.get("sizes")
    if not isinstance(sizes, dict) or not all(isinstance(sizes.get(split), int) for split in SPLITS):
        return "'sizes' lacks the train, val and test counts"
    if not isinstance(document.get("best_epoch"), int) or not isinstance(document.get("history"), list):
        return "no 'best_epoch' and 'history'"
    test = document.get("test")
    if not isinstance(test, dict):
        return "no 'test' results"
    bad = [metric for metric in TASK_METRICS[task] if metric not in test or not _is_number(test[metric])]
    if bad:
        return f"test metric(s) {', '.join(bad)} missing or not a number"
    key, _, fields = DETAIL[task]
    entries = test.get(key)
    if not isinstance(entries, dict) or not all(
        isinstance(entry, dict)
        and isinstance(entry.get("support"), int)
        and all(f in entry and _is_number(entry[f]) for f in fields)
        for entry in entries.values()
    ):
        return f"'test.{key}' is missing or malformed"
    if task == "grading" and not isinstance(test.get("confusion"), list):
        return "no 'test.confusion' matrix"
    return None


def read_metrics(path: str | Path, hint: str = "run that fine-tuning again") -> dict[str, Any]:
    """The checked contents of a metrics.json; a missing, unreadable or malformed file raises DataError naming it."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # ValueError: invalid JSON or not UTF-8
        raise DataError(f"cannot read the fine-tuning metrics: {error}", path=path, hint=hint) from error
    problem = metrics_problem(document)
    if problem:
        raise DataError(f"malformed fine-tuning metrics: {problem}", path=path, hint=hint)
    return document
