"""The fine-tuning metrics against scikit-learn on random predictions, the cases where a metric is undefined
(None, never NaN), and the validation of their inputs."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from sklearn import metrics as sk

from comcl.finetune.metrics import (
    accuracy,
    cohen_kappa,
    confusion_matrix,
    grading_metrics,
    multilabel_metrics,
    quadratic_weighted_kappa,
    roc_auc,
)

SEEDS = range(6)


def _same(ours: float | None, reference: float) -> None:
    """Ours is None exactly where scikit-learn's value is NaN, and equal to it otherwise."""
    if math.isnan(reference):
        assert ours is None
    else:
        assert ours == pytest.approx(reference, abs=1e-12)


def _graded(seed: int, n: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Truth and predictions that agree more often than chance (half copied, half random), so kappa is not ~0."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, num_classes, n)
    predictions = np.where(rng.random(n) < 0.5, truth, rng.integers(0, num_classes, n))
    return truth, predictions


# scikit-learn warns where it returns NaN, or where a split holds a single label; ours returns None there, checked.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning", "ignore:A single label was found")
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [1, 3, 10, 57, 500])
@pytest.mark.parametrize("num_classes", [2, 3, 5])
def test_kappas_accuracy_and_confusion_match_scikit_learn(seed: int, n: int, num_classes: int) -> None:
    truth, predictions = _graded(seed * 100 + n, n, num_classes)
    classes = list(range(num_classes))
    _same(
        quadratic_weighted_kappa(truth, predictions, num_classes),
        sk.cohen_kappa_score(truth, predictions, labels=classes, weights="quadratic"),
    )
    _same(cohen_kappa(truth, predictions), sk.cohen_kappa_score(truth, predictions))
    assert accuracy(truth, predictions) == pytest.approx(sk.accuracy_score(truth, predictions), abs=1e-15)
    confusion = confusion_matrix(truth, predictions, num_classes)
    assert confusion.dtype == np.int64
    np.testing.assert_array_equal(confusion, sk.confusion_matrix(truth, predictions, labels=classes))


@pytest.mark.parametrize("seed", SEEDS)
def test_unweighted_kappa_works_on_any_integer_labels(seed: int) -> None:
    truth, predictions = _graded(seed, 80, 4)
    codes = np.array([-3, 7, 10, 42])
    assert cohen_kappa(codes[truth], codes[predictions]) == pytest.approx(
        sk.cohen_kappa_score(codes[truth], codes[predictions]), abs=1e-12
    )
    assert cohen_kappa(truth == 1, predictions == 1) == pytest.approx(
        sk.cohen_kappa_score(truth == 1, predictions == 1), abs=1e-12
    )


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [2, 9, 64, 1000])
@pytest.mark.parametrize("levels", [2, 5, 20, None])
def test_roc_auc_matches_scikit_learn_with_and_without_ties(seed: int, n: int, levels: int | None) -> None:
    rng = np.random.default_rng(seed * 1000 + n)
    truth = rng.integers(0, 2, n)
    truth[:2] = [0, 1]  # both classes present
    signal = truth * rng.random() + rng.random(n)
    scores = signal if levels is None else np.round(signal * levels) / levels  # few distinct values: many ties
    assert roc_auc(truth, scores) == pytest.approx(sk.roc_auc_score(truth, scores), abs=1e-12)


def test_roc_auc_of_perfect_inverted_and_all_tied_scores() -> None:
    truth = np.array([0, 0, 1, 1])
    assert roc_auc(truth, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert roc_auc(truth, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert roc_auc(truth, np.full(4, 0.5)) == 0.5


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [4, 30, 300])
@pytest.mark.parametrize("num_classes", [2, 5])
def test_grading_metrics_match_scikit_learn(seed: int, n: int, num_classes: int) -> None:
    rng = np.random.default_rng(seed * 10 + n)
    truth = rng.integers(0, num_classes, n)
    probabilities = rng.dirichlet(np.ones(num_classes), n)
    probabilities[np.arange(n), truth] += rng.random(n) * 0.5  # some skill, so kappa is not ~0
    result = grading_metrics(truth, probabilities)
    predictions = probabilities.argmax(axis=1)
    classes = list(range(num_classes))
    assert result["kappa"] == pytest.approx(
        sk.cohen_kappa_score(truth, predictions, labels=classes, weights="quadratic"), abs=1e-12
    )
    assert result["accuracy"] == pytest.approx(sk.accuracy_score(truth, predictions), abs=1e-15)
    assert result["confusion"] == sk.confusion_matrix(truth, predictions, labels=classes).tolist()
    precision = sk.precision_score(truth, predictions, labels=classes, average=None, zero_division=np.nan)
    recall = sk.recall_score(truth, predictions, labels=classes, average=None, zero_division=np.nan)
    assert sorted(result["per_class"]) == classes
    for k in classes:
        _same(result["per_class"][k]["precision"], precision[k])
        _same(result["per_class"][k]["recall"], recall[k])
        assert result["per_class"][k]["support"] == int((truth == k).sum())
    json.dumps(result, allow_nan=False)


def test_a_test_split_missing_a_grade_still_gives_a_5x5_confusion_and_a_defined_kappa() -> None:
    truth = np.array([0, 0, 1, 2, 2, 4, 4, 0])
    predictions = np.array([0, 1, 1, 2, 4, 4, 2, 0])  # grade 3 neither true nor predicted
    result = grading_metrics(truth, np.eye(5)[predictions])
    assert np.array(result["confusion"]).shape == (5, 5)
    assert result["per_class"][3] == {"precision": None, "recall": None, "support": 0}
    # Weights over the grades 0..4, not over the grades present: 2 vs 4 weighs 4, as on a split with every grade.
    expected = sk.cohen_kappa_score(truth, predictions, labels=list(range(5)), weights="quadratic")
    assert result["kappa"] == pytest.approx(expected, abs=1e-12)
    assert result["kappa"] != pytest.approx(sk.cohen_kappa_score(truth, predictions, weights="quadratic"))
    json.dumps(result, allow_nan=False)


def test_kappa_is_none_when_both_raters_give_the_same_single_class() -> None:
    same = np.full(6, 2)
    assert quadratic_weighted_kappa(same, same, 5) is None
    assert cohen_kappa(same, same) is None
    assert quadratic_weighted_kappa(np.zeros(3, int), np.zeros(3, int), 1) is None
    # Constant but different classes is defined: chance agreement is zero, and so is the observed one.
    assert cohen_kappa(np.zeros(4, int), np.ones(4, int)) == 0.0
    assert quadratic_weighted_kappa(np.zeros(4, int), np.full(4, 3), 5) == 0.0
    result = grading_metrics(same, np.eye(5)[same])
    assert result["kappa"] is None
    assert result["per_class"][0] == {"precision": None, "recall": None, "support": 0}
    json.dumps(result, allow_nan=False)


def test_no_scikit_learn_warning_escapes_where_a_metric_is_none() -> None:
    """scikit-learn warns on an undefined kappa, a 1 x 1 confusion matrix and a class never predicted; ours says
    None instead, so a caller running with warnings as errors still gets its metrics."""
    same = np.full(6, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert quadratic_weighted_kappa(same, same, 5) is None
        assert cohen_kappa(same, same) is None
        assert quadratic_weighted_kappa(np.zeros(3, int), np.zeros(3, int), 1) is None
        assert confusion_matrix(np.zeros(3, int), np.zeros(3, int), 1).tolist() == [[3]]
        result = grading_metrics(same, np.eye(5)[same])
        assert result["kappa"] is None and result["per_class"][0]["precision"] is None
        result = multilabel_metrics(np.zeros((3, 2), int), np.zeros((3, 2)), ["a", "b"])
        assert result["kappa"] is None and result["auroc"] is None


def test_roc_auc_is_none_with_one_class() -> None:
    assert roc_auc(np.zeros(5, int), np.linspace(0, 1, 5)) is None
    assert roc_auc(np.ones(5, int), np.linspace(0, 1, 5)) is None


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [5, 40, 400])
def test_multilabel_metrics_per_label_match_scikit_learn(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed * 7 + n)
    labels = [f"finding_{j}" for j in range(8)]
    truth = (rng.random((n, 8)) < rng.uniform(0.05, 0.6, 8)).astype(int)
    probabilities = np.clip(0.3 * truth + 0.8 * rng.random((n, 8)), 0, 1)
    probabilities[:, 3] = np.round(probabilities[:, 3], 1)  # ties for AUROC
    result = multilabel_metrics(truth, probabilities, labels, threshold=0.4)
    predictions = (probabilities >= 0.4).astype(int)
    for j, label in enumerate(labels):
        scores = result["per_label"][label]
        _same(scores["kappa"], sk.cohen_kappa_score(truth[:, j], predictions[:, j]))
        assert scores["accuracy"] == pytest.approx(sk.accuracy_score(truth[:, j], predictions[:, j]), abs=1e-15)
        if len(np.unique(truth[:, j])) == 2:
            assert scores["auroc"] == pytest.approx(sk.roc_auc_score(truth[:, j], probabilities[:, j]), abs=1e-12)
        else:
            assert scores["auroc"] is None
        assert scores["support"] == int(truth[:, j].sum())
    for metric in ("kappa", "accuracy", "auroc"):
        defined = [result["per_label"][label][metric] for label in labels if result["per_label"][label][metric] is not None]
        assert result[metric] == pytest.approx(np.mean(defined), abs=1e-12)
        assert result["undefined"][metric] == [label for label in labels if result["per_label"][label][metric] is None]
    json.dumps(result, allow_nan=False)


def test_multilabel_means_skip_undefined_labels_and_list_them() -> None:
    labels = ["Atelectasis", "Effusion", "Hernia"]
    truth = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    probabilities = np.array([[0.9, 0.2, 0.1], [0.2, 0.7, 0.0], [0.6, 0.4, 0.3], [0.1, 0.3, 0.2]])
    result = multilabel_metrics(truth, probabilities, labels)
    # Hernia: never present and never predicted, so kappa and AUROC are undefined; its accuracy is 1.
    assert result["per_label"]["Hernia"] == {"kappa": None, "accuracy": 1.0, "auroc": None, "support": 0}
    assert result["undefined"] == {"kappa": ["Hernia"], "accuracy": [], "auroc": ["Hernia"]}
    kappas = [result["per_label"][label]["kappa"] for label in labels[:2]]
    assert result["kappa"] == pytest.approx(np.mean(kappas))
    assert result["auroc"] == pytest.approx(1.0)
    assert result["accuracy"] == pytest.approx(np.mean([1.0, 0.75, 1.0]))
    json.dumps(result, allow_nan=False)


def test_multilabel_metrics_are_none_when_no_label_defines_them() -> None:
    result = multilabel_metrics(np.zeros((3, 2), int), np.zeros((3, 2)), ["a", "b"])
    assert result["kappa"] is None and result["auroc"] is None
    assert result["undefined"]["kappa"] == ["a", "b"]
    assert result["accuracy"] == 1.0
    assert "NaN" not in json.dumps(result, allow_nan=False)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: accuracy(np.zeros(3, int), np.zeros(4, int)), "same shape"),
        (lambda: cohen_kappa(np.zeros((2, 2), int), np.zeros((2, 2), int)), "1-D"),
        (lambda: accuracy(np.array([], int), np.array([], int)), "non-empty"),
        (lambda: accuracy(np.array([0.0, 1.0]), np.array([0, 1])), "integer labels"),
        (lambda: confusion_matrix(np.array([0, 5]), np.array([0, 1]), 5), r"y_true has labels outside 0\.\.4: \[5\]"),
        (lambda: quadratic_weighted_kappa(np.array([0, 1]), np.array([0, -1]), 5), "y_pred has labels outside"),
        (lambda: confusion_matrix(np.zeros(2, int), np.zeros(2, int), 0), "num_classes"),
        (lambda: roc_auc(np.array([0, 2]), np.array([0.1, 0.2])), "binary"),
        (lambda: roc_auc(np.array([0, 1]), np.array([0.1, np.nan])), "NaN"),
        (lambda: roc_auc(np.array([0, 1]), np.array([0.1, 0.2, 0.3])), "same shape"),
        (lambda: grading_metrics(np.array([0, 1]), np.array([0.2, 0.8])), "2-D"),
        (lambda: grading_metrics(np.array([0, 1]), np.full((3, 5), 0.2)), r"\(N, C\)"),
        (lambda: grading_metrics(np.array([0, 5]), np.full((2, 5), 0.2)), "outside 0..4"),
        (lambda: multilabel_metrics(np.zeros((2, 3), int), np.zeros((2, 2)), ["a", "b"]), r"\(N, L\)"),
        (lambda: multilabel_metrics(np.zeros((2, 2), int), np.zeros((2, 2)), ["a"]), "labels must name"),
        (lambda: multilabel_metrics(np.full((2, 2), 2), np.zeros((2, 2)), ["a", "b"]), "binary"),
        (lambda: multilabel_metrics(np.zeros((2, 2), int), np.zeros((2, 2)), ["a", "b"], threshold=1.5), "threshold"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
