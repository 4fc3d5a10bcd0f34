"""The learning-rate schedule that pretraining (per step) and fine-tuning (per epoch) share."""

from __future__ import annotations

import math


def learning_rate(lr: float, cosine: bool, step: int, total: int) -> float:
    """The rate at ``step`` of ``total`` (from 0): ``lr`` throughout, or a cosine from ``lr`` towards 0. A function
    of the step alone, so that a resumed run continues on the same curve."""
    if not cosine:
        return lr
    return lr * 0.5 * (1 + math.cos(math.pi * step / total))
