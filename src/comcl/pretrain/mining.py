"""Self-paced hard-negative mining: how many negatives each step keeps (Eq. 2) and which anchors it learns
from (Eq. 3).

Training starts with every negative and every easy-enough anchor, and narrows to the hardest negatives as
``K_t`` falls along a quarter cosine. The threshold on the anchor losses is a named rule, so an experiment
can replace the paper's ``1 / K_t`` by configuration; a minimum fraction of lowest-loss anchors keeps a step
from learning from nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor


def negatives_at(step: int, total_steps: int, delta: int) -> int:
    """``K_t = floor(delta * cos(pi * t / (2 * T_max)))``, at least 1, with ``t = step`` (0-based) clamped to
    ``[0, T_max]``: every negative at the first step, a single one at the last."""
    if total_steps < 1 or delta < 1:
        raise ValueError(f"total_steps and delta must be at least 1, got {total_steps} and {delta}")
    t = min(max(step, 0), total_steps)
    return max(1, math.floor(delta * math.cos(math.pi * t / (2 * total_steps))))


def _inverse_k(k_t: int) -> float:
    """The paper's threshold: an anchor is easy enough when its loss is below ``1 / K_t``."""
    return 1.0 / k_t


def _none(k_t: int) -> float:
    """No threshold: every anchor is selected (CoMCL without self-paced learning)."""
    return math.inf


THRESHOLDS: dict[str, Callable[[int], float]] = {"inverse_k": _inverse_k, "none": _none}


def select_anchors(losses: Tensor, k_t: int, min_fraction: float, rule: str = "inverse_k") -> Tensor:
    """The self-paced weights ``s_i`` of Eq. 3 as a bool mask ``(B,)``: ``loss_i < threshold(K_t)``.

    When fewer than ``ceil(min_fraction * B)`` anchors pass, the ``ceil(min_fraction * B)`` lowest-loss
    anchors are selected instead (a superset of those that passed), so with ``min_fraction > 0`` no step
    selects nothing. The losses are detached: selection is a decision, not part of the graph.
    """
    if rule not in THRESHOLDS:
        raise ValueError(f"unknown threshold rule {rule!r}; known rules: {', '.join(sorted(THRESHOLDS))}")
    if not 0 <= min_fraction <= 1:
        raise ValueError(f"min_fraction must be in [0, 1], got {min_fraction}")
    if k_t < 1:
        raise ValueError(f"k_t must be at least 1, got {k_t}")
    if losses.ndim != 1:
        raise ValueError(f"losses must be one value per anchor (B,), got {tuple(losses.shape)}")
    losses = losses.detach()
    selected = losses < THRESHOLDS[rule](k_t)
    # The small slack keeps 0.3 * 10 = 3.0000000000000004 from rounding up to 4 anchors.
    minimum = math.ceil(min_fraction * losses.numel() - 1e-9)
    if int(selected.sum()) < minimum:
        selected = torch.zeros_like(selected)
        selected[torch.topk(losses, minimum, largest=False).indices] = True
    return selected


def self_paced_loss(losses: Tensor, selected: Tensor, k_t: int) -> tuple[Tensor, float]:
    """The loss to backpropagate, ``sum(s_i L_i) / max(1, sum(s_i))``, and for logging the self-paced
    objective of Eq. 3 without its weight-decay regulariser, ``(sum(s_i L_i) - sum(s_i) / K_t) / B``.

    Unselected anchors are masked out rather than multiplied by zero, so their gradient is exactly zero even
    when their loss is infinite.
    """
    if losses.ndim != 1 or selected.shape != losses.shape or selected.dtype != torch.bool:
        raise ValueError(
            f"losses must be (B,) and selected a bool mask of the same shape, got {tuple(losses.shape)} and "
            f"{tuple(selected.shape)} {selected.dtype}"
        )
    if k_t < 1:
        raise ValueError(f"k_t must be at least 1, got {k_t}")
    total = torch.where(selected, losses, torch.zeros_like(losses)).sum()
    count = int(selected.sum())
    objective = (float(total.detach()) - count / k_t) / max(1, losses.numel())
    return total / max(1, count), objective
