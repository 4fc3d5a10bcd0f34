"""The fine-tuning objectives against torch's own losses, and the grade a regression's value reads as."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from comcl.finetune.objective import Objective


def test_cross_entropy_grading_is_torchs_and_predicts_the_argmax():
    logits, grades = torch.randn(6, 5, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 3, 4, 0])
    objective = Objective("grading", 5, "ce")
    assert objective.outputs == 5 and torch.allclose(objective(logits, grades), F.cross_entropy(logits, grades))
    assert torch.allclose(objective.probabilities(logits), torch.softmax(logits, dim=1))
    assert torch.equal(objective.grades(logits), logits.argmax(dim=1))


def test_a_grade_regression_reads_its_value_as_the_nearest_grade_within_the_grades():
    objective = Objective("grading", 5, "mse")
    values = torch.tensor([[-3.0], [0.49], [0.51], [1.4], [2.6], [9.0]])
    assert objective.outputs == 1 and objective.regression
    assert objective.grades(values).tolist() == [0, 0, 1, 1, 3, 4]
    probabilities = objective.probabilities(values)
    assert probabilities.shape == (6, 5) and torch.equal(probabilities.argmax(dim=1), objective.grades(values))
    grades = torch.tensor([0, 0, 1, 1, 3, 4])
    assert torch.allclose(objective(values, grades), F.mse_loss(values[:, 0], grades.float()))


def test_the_chest_task_trains_a_sigmoid_per_finding_whatever_the_loss():
    logits, labels = torch.randn(4, 3, generator=torch.Generator().manual_seed(1)), torch.tensor([[0, 1, 0]] * 4)
    for loss in ("ce", "mse"):
        objective = Objective("multilabel", 3, loss)
        assert objective.outputs == 3 and not objective.regression
        assert torch.allclose(objective(logits, labels), F.binary_cross_entropy_with_logits(logits, labels.float()))
        assert torch.allclose(objective.probabilities(logits), torch.sigmoid(logits))


def test_an_unknown_loss_is_refused():
    with pytest.raises(ValueError, match="ce, mse"):
        Objective("grading", 5, "hinge")
