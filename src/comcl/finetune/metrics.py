"""The evaluation metrics of the fine-tuned classifiers: quadratic weighted kappa and accuracy for DR grading;
per-label Cohen's kappa, accuracy and AUROC, averaged over the labels, for the multi-label chest task.

Written with numpy alone, so the package does not depend on scikit-learn; the tests check every metric against
it. A metric that is undefined on the data (kappa when no disagreement is expected by chance, AUROC with one
class present) is None rather than NaN, so the metrics stay valid JSON and a table can say why a cell is empty.
Kappa is computed from integer counts, so "undefined" is an exact zero and not a rounding accident.
"""

from __future__ import annotations

from typing import Any

import numpy as np

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


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``(num_classes, num_classes)`` int64, rows the truth and columns the prediction. Every class gets a
    row and a column, so a split that lacks a class still gives a ``num_classes`` square matrix."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    truth, predictions = _pair(y_true, y_pred)
    for name, labels in (("y_true", truth), ("y_pred", predictions)):
        outside = labels[(labels < 0) | (labels >= num_classes)]
        if outside.size:
            raise ValueError(f"{name} has labels outside 0..{num_classes - 1}: {np.unique(outside)[:10].tolist()}")
    counts = np.bincount(truth * num_classes + predictions, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def _kappa(confusion: np.ndarray, weights: np.ndarray) -> float | None:
    """``1 - sum(W * O) / sum(W * E)``, with ``O`` the confusion counts and ``E = outer(truth counts, prediction
    counts) / N`` the counts expected by chance; None when ``sum(W * E)`` is zero (no disagreement is expected,
    e.g. both raters always give the same single class). Python integers keep the sums exact."""
    expected = int((weights * np.outer(confusion.sum(axis=1), confusion.sum(axis=0))).sum())
    if expected == 0:
        return None
    observed = int((weights * confusion).sum())
    return 1.0 - int(confusion.sum()) * observed / expected


def _quadratic_weights(num_classes: int) -> np.ndarray:
    """Disagreement weights ``(i - j)^2`` over the class indices. The usual ``/ (C - 1)^2`` cancels in the ratio of
    :func:`_kappa`. Indices, not the classes present, so a split missing a grade weighs 0 vs 4 as 16, not less."""
    classes = np.arange(num_classes, dtype=np.int64)
    return (classes[:, None] - classes[None, :]) ** 2


def quadratic_weighted_kappa(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float | None:
    """Cohen's kappa with quadratic weights over the ordered classes ``0..num_classes - 1`` (the DR grading metric);
    None when undefined."""
    return _kappa(confusion_matrix(y_true, y_pred, num_classes), _quadratic_weights(num_classes))


def cohen_kappa(y_true: np.ndarray, y_pred: np.ndarray) -> float | None:
    """Unweighted Cohen's kappa over the classes present in either array (binary or multi-class); None when
    undefined, i.e. both raters give one and the same class throughout."""
    truth, predictions = _pair(y_true, y_pred)
    classes, codes = np.unique(np.concatenate([truth, predictions]), return_inverse=True)
    confusion = confusion_matrix(codes[: truth.size], codes[truth.size :], classes.size)
    return _kappa(confusion, 1 - np.eye(classes.size, dtype=np.int64))


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The fraction of predictions equal to the truth."""
    truth, predictions = _pair(y_true, y_pred)
    return float(np.mean(truth == predictions))


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve as the Mann-Whitney statistic: the probability that a random positive scores above
    a random negative, ties counting one half. None when only one class is present.

    Tied scores share the mean of the ranks they span; twice that mean is an integer, so the sums are exact.
    """
    truth, values = _integers(y_true, "y_true", 1), _floats(scores, "scores", 1)
    if truth.shape != values.shape:
        raise ValueError(f"y_true and scores must have the same shape, got {truth.shape} and {values.shape}")
    _check_binary(truth, "y_true")
    positives = int(truth.sum())
    negatives = truth.size - positives
    if positives == 0 or negatives == 0:
        return None
    _, group, counts = np.unique(values, return_inverse=True, return_counts=True)
    # The 1-based ranks of a group of tied scores run from end - count + 1 to end; twice their mean is below.
    twice_mean_rank = 2 * np.cumsum(counts) - counts + 1
    twice_rank_sum = int(twice_mean_rank[group][truth == 1].sum())
    return (twice_rank_sum - positives * (positives + 1)) / (2 * positives * negatives)


def _ratio(numerator: int, denominator: int) -> float | None:
    return float(numerator / denominator) if denominator else None


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
    confusion = confusion_matrix(truth, scores.argmax(axis=1), num_classes)
    hits, predicted, support = np.diag(confusion), confusion.sum(axis=0), confusion.sum(axis=1)
    per_class = {
        k: {"precision": _ratio(hits[k], predicted[k]), "recall": _ratio(hits[k], support[k]), "support": int(support[k])}
        for k in range(num_classes)
    }
    return {
        "kappa": _kappa(confusion, _quadratic_weights(num_classes)),
        "accuracy": float(hits.sum() / truth.size),
        "per_class": per_class,
        "confusion": confusion.tolist(),
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
