"""What fine-tuning minimises, and how a classifier's outputs become the class probabilities that are evaluated.

DR grading trains with cross-entropy over the grades (``ce``), or as a regression of the grade with a
mean-squared error (``mse``): one output, read as the grade it rounds to (thresholds halfway between
grades). Huang et al.'s study of ResNet-50 for DR grading on EyePACS (arXiv 2110.14160) found the
regression better than cross-entropy, since it charges a miss by its distance, as quadratic kappa does.
The chest task trains a sigmoid per finding with binary cross-entropy, whatever ``loss`` says.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

LOSSES = ("ce", "mse")


@dataclass(frozen=True)
class Objective:
    """The loss of one task: ``task`` "grading" or "multilabel", ``num_classes`` grades or findings."""

    task: str
    num_classes: int
    loss: str = "ce"

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}: use one of {', '.join(LOSSES)}")

    @property
    def regression(self) -> bool:
        return self.task == "grading" and self.loss == "mse"

    @property
    def outputs(self) -> int:
        """The classifier's head size: one for the grade regression, else one per grade or finding."""
        return 1 if self.regression else self.num_classes

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean loss of a batch: ``logits`` ``(N, outputs)``; ``targets`` ``(N,)`` grades or ``(N, C)`` 0/1."""
        if self.task == "multilabel":
            return F.binary_cross_entropy_with_logits(logits, targets.float())
        if self.regression:
            return F.mse_loss(logits[:, 0], targets.float())
        return F.cross_entropy(logits, targets)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """``(N, num_classes)``: per-finding sigmoids, the grades' softmax, or for the regression the one-hot of
        the grade its value rounds to (clipped to the grades), so that the argmax is the predicted grade."""
        if self.task == "multilabel":
            return torch.sigmoid(logits)
        if self.regression:
            return F.one_hot(self.grades(logits), self.num_classes).to(logits.dtype)
        return torch.softmax(logits, dim=1)

    def grades(self, logits: torch.Tensor) -> torch.Tensor:
        """``(N,)`` the predicted grades: the argmax, or the regression's value rounded to the nearest grade."""
        if self.regression:
            return logits[:, 0].round().clamp(0, self.num_classes - 1).long()
        return logits.argmax(dim=1)
