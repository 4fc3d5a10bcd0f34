"""The evaluation metrics of the fine-tuned classifiers: quadratic weighted kappa and accuracy for DR grading;
per-label Cohen's kappa, accuracy and AUROC, averaged over the labels, for the multi-label chest task.

scikit-learn computes them; this module keeps two things it does not. A metric that is undefined on the data
(kappa when no disagreement is expected by chance, AUROC with one class present) is None rather than NaN (or an
exception), so the metrics stay valid JSON and a table can say why a cell is empty. And the inputs are checked
first, with one message per mistake: scikit-learn takes float labels such as 1.0 as classes, leaves labels outside
``labels`` out of the counts, and cannot see a NaN probability once it is an argmax or thresholded.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from sklearn import metrics as sk_metrics
from sklearn.exceptions import UndefinedMetricWarning

MULTILABEL_METRICS = ("kappa", "accuracy", "auroc")


def _integers(values: np.ndarray, name: str, ndim: int) -> np.ndarray:
    """``values`` as a non-empty int64 array of ``ndim`` dimensions. Floats are refused rather than truncated:
    a float label usually means a bug upstream (a column with missing values, probabilities passed as labels)."""
    array = np.asarray(values)
    if array.ndim != ndim or array.size == 0:
        raise ValueError(f"{name} must be a non-empty {ndim}-D array, got shape {array.shape}")
    if array.dtype != bool and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integer labels, got dtype {array.dtype}")
    return array.astype(np.int64)


def _floats(values: np.ndarray, name: str, ndim: int) -> np.ndarray:
    """``values`` as a non-empty, finite float64 array of ``ndim`` dimensions: a NaN score has no rank and no
    argmax, so it is reported here instead of turning into a silently wrong metric."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != ndim or array.size == 0:
        raise ValueError(f"{name} must be a non-empty {ndim}-D array, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    truth, predictions = _integers(y_true, "y_true", 1), _integers(y_pred, "y_pred", 1)
    if truth.shape != predictions.shape:
        raise ValueError(f"y_true and y_pred must have the same shape, got {truth.shape} and {predictions.shape}")
    return truth, predictions


def _check_binary(truth: np.ndarray, name: str) -> None:
    if not np.isin(truth, (0, 1)).all():
        raise ValueError(f"{name} must hold binary labels 0 or 1, got values {np.unique(truth)[:10].tolist()}")


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence scikit-learn's warnings for the cases this module reports as None (an undefined kappa) or expects
    (a 1 x 1 confusion matrix when a single class is asked for or present): the caller gets None, not a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.filterwarnings("ignore", message="A single label was found", category=UserWarning)
        yield


def _defined(value: float) -> float | None:
    """scikit-learn's NaN for an undefined metric as None."""
    return None if math.isnan(value) else float(value)


def _graded(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The pair, checked to hold only the classes ``0..num_classes - 1``: scikit-learn would drop the others from
    the counts silently."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    truth, predictions = _pair(y_true, y_pred)
    for name, labels in (("y_true", truth), ("y_pred", predictions)):
        outside = labels[(labels < 0) | (labels >= num_classes)]
        if outside.size:
            raise ValueError(f"{name} has labels outside 0..{num_classes - 1}: {np.unique(outside)[:10].tolist()}")
    return truth, predictions


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``(num_classes, num_classes)`` int64, rows the truth and columns the prediction. Every class gets a
    row and a column, so a split that lacks a class still gives a ``num_classes`` square matrix."""
    truth, predictions = _graded(y_true, y_pred, num_classes)
    with _quiet():
        counts = sk_metrics.confusion_matrix(truth, predictions, labels=range(num_classes))
    return counts.astype(np.int64, copy=False)


def _quadratic_kappa(truth: np.ndarray, predictions: np.ndarray, num_classes: int) -> float | None:
    """Quadratic weights over the class indices, not the classes present, so a split missing a grade weighs 0 vs 4
    as 16, not less. The chance disagreement is a sum of non-negative terms, so "undefined" is an exact zero."""
    with _quiet():
        kappa = sk_metrics.cohen_kappa_score(truth, predictions, labels=range(num_classes), weights="quadratic")
    return _defined(kappa)


def quadratic_weighted_kappa(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float | None:
    """Cohen's kappa with quadratic weights over the ordered classes ``0..num_classes - 1`` (the DR grading metric);
    None when undefined."""
    return _quadratic_kappa(*_graded(y_true, y_pred, num_classes), num_classes)


def cohen_kappa(y_true: np.ndarray, y_pred: np.ndarray) -> float | None:
    """Unweighted Cohen's kappa over the classes present in either array (binary or multi-class); None when
    undefined, i.e. both raters give one and the same class throughout."""
    truth, predictions = _pair(y_true, y_pred)
    with _quiet():
        return _defined(sk_metrics.cohen_kappa_score(truth, predictions))


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The fraction of predictions equal to the truth."""
    return float(sk_metrics.accuracy_score(*_pair(y_true, y_pred)))


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve, ties counting one half. None when only one class is present, checked here because
    scikit-learn raises there."""
    truth, values = _integers(y_true, "y_true", 1), _floats(scores, "scores", 1)
    if truth.shape != values.shape:
        raise ValueError(f"y_true and scores must have the same shape, got {truth.shape} and {values.shape}")
    _check_binary(truth, "y_true")
    if truth.min() == truth.max():
        return None
    return float(sk_metrics.roc_auc_score(truth, values))


def grading_metrics(y_true: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """Metrics of single-label grading from class probabilities ``(N, C)``, predicting the argmax (the lower class
    on a tie): ``kappa`` (quadratic weighted), ``accuracy``, ``per_class`` ``{class index: {precision, recall,
    support}}`` (precision None for a class never predicted, recall None for a class absent from the truth) and
    ``confusion`` (a list of rows, rows the truth)."""
    scores = _floats(probabilities, "probabilities", 2)
    truth = _integers(y_true, "y_true", 1)
    if scores.shape[0] != truth.size or scores.shape[1] < 2:
        raise ValueError(f"probabilities must be (N, C) with N = len(y_true) = {truth.size} and C >= 2, got {scores.shape}")
    num_classes = scores.shape[1]
    truth, predictions = _graded(truth, scores.argmax(axis=1), num_classes)
    # zero_division=NaN marks (and does not warn about) a class never predicted or absent, mapped to None below.
    precision, recall, _, support = sk_metrics.precision_recall_fscore_support(
        truth, predictions, labels=range(num_classes), average=None, zero_division=np.nan
    )
    per_class = {
        k: {"precision": _defined(precision[k]), "recall": _defined(recall[k]), "support": int(support[k])}
        for k in range(num_classes)
    }
    return {
        "kappa": _quadratic_kappa(truth, predictions, num_classes),
        "accuracy": accuracy(truth, predictions),
        "per_class": per_class,
        "confusion": confusion_matrix(truth, predictions, num_classes).tolist(),
    }


def multilabel_metrics(
    y_true: np.ndarray, probabilities: np.ndarray, labels: list[str], threshold: float = 0.5
) -> dict[str, Any]:
    """Metrics of multi-label classification from per-label probabilities ``(N, L)``, a label predicted present when
    its probability is at least ``threshold``.

    ``per_label`` gives, for each label, the unweighted ``kappa`` and the ``accuracy`` of the thresholded
    predictions, the ``auroc`` of the probabilities and the ``support`` (number of positives). ``kappa``,
    ``accuracy`` and ``auroc`` are the means over the labels where the metric is defined (None if it is defined for
    none), and ``undefined`` lists, per metric, the labels left out of its mean.
    """
    truth = _integers(y_true, "y_true", 2)
    scores = _floats(probabilities, "probabilities", 2)
    if truth.shape != scores.shape:
        raise ValueError(f"y_true and probabilities must both be (N, L), got {truth.shape} and {scores.shape}")
    if len(labels) != truth.shape[1] or len(set(labels)) != len(labels):
        raise ValueError(f"labels must name the {truth.shape[1]} columns once each, got {list(labels)}")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    _check_binary(truth, "y_true")
    predictions = (scores >= threshold).astype(np.int64)
    per_label = {
        label: {
            "kappa": cohen_kappa(truth[:, j], predictions[:, j]),
            "accuracy": accuracy(truth[:, j], predictions[:, j]),
            "auroc": roc_auc(truth[:, j], scores[:, j]),
            "support": int(truth[:, j].sum()),
        }
        for j, label in enumerate(labels)
    }
    means: dict[str, float | None] = {}
    undefined: dict[str, list[str]] = {}
    for metric in MULTILABEL_METRICS:
        values = {label: result[metric] for label, result in per_label.items()}
        defined = [value for value in values.values() if value is not None]
        means[metric] = float(np.mean(defined)) if defined else None
        undefined[metric] = [label for label, value in values.items() if value is None]
    return {**means, "per_label": per_label, "undefined": undefined}
