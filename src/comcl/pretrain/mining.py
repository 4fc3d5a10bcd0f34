"""Self-paced hard-negative mining: how many negatives each step keeps (Eq. 2) and which anchors it learns
from (Eq. 3).

Training starts with every negative and narrows to the hardest as ``K_t`` falls along a quarter cosine.
Which anchors a step learns from is a named rule:

- ``curriculum`` (the schema's default, ``spl.rule`` in ``workflow/schemas/variant.schema.yaml``; the
  caller always names the rule, so this module holds no default of its own): self-paced learning as Kumar et
  al. (2010) mean it. The lowest-loss anchors are selected, and their share rises along the ``K_t`` schedule
  from ``min_fraction`` at the first step to every anchor at the last, so training starts from the easy
  anchors and admits the harder ones until all count. The paper's threshold ``1 / K_t`` grows from
  ``1 / delta`` to 1 on the same schedule; this keeps its curriculum on the scale of shares, where the losses
  live.
- ``inverse_k``: Eq. 3 taken literally, ``loss < 1 / K_t``. A loss over ``K_t`` negatives stays far above
  ``1 / K_t`` until the very end of training (``docs/method.md``, "Self-paced hard-negative mining"), so the
  ``min_fraction`` guard (the lowest-loss anchors) decides nearly every step; it is kept to show that.
- ``none``: every anchor (CoMCL without self-paced learning).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor


def negatives_at(step: int, total_steps: int, delta: int) -> int:
    """``K_t = floor(delta * cos(pi * t / (2 * T_max)))``, at least 1, with ``t = step`` (0-based) clamped to
    ``[0, T_max]``: every negative at the first step, a single one at the last."""
    if total_steps < 1 or delta < 1:
        raise ValueError(f"total_steps and delta must be at least 1, got {total_steps} and {delta}")
    t = min(max(step, 0), total_steps)
    return max(1, math.floor(delta * math.cos(math.pi * t / (2 * total_steps))))


def curriculum_share(k_t: int, delta: int, min_fraction: float) -> float:
    """The share of anchors the curriculum selects at ``K_t``: ``min_fraction`` at ``K_t = delta``, 1 at ``K_t = 1``,
    linear in ``K_t`` between (so it rises along the quarter cosine of the schedule)."""
    if delta <= 1:
        return 1.0
    return 1.0 - (1.0 - min_fraction) * (min(k_t, delta) - 1) / (delta - 1)


def _inverse_k(k_t: int) -> float:
    """The paper's threshold: an anchor is easy enough when its loss is below ``1 / K_t``."""
    return 1.0 / k_t


def _none(k_t: int) -> float:
    """No threshold: every anchor is selected (CoMCL without self-paced learning)."""
    return math.inf


THRESHOLDS: dict[str, Callable[[int], float]] = {"inverse_k": _inverse_k, "none": _none}
RULES = ("curriculum", *THRESHOLDS)


class Selection(NamedTuple):
    """The self-paced weights ``s_i`` as a bool mask ``(B,)``, and whether the ``min_fraction`` guard chose them
    (the threshold rule let fewer anchors through than the guard's minimum)."""

    mask: Tensor
    guarded: bool


def _lowest(losses: Tensor, count: int) -> Tensor:
    selected = torch.zeros(losses.shape, dtype=torch.bool, device=losses.device)
    selected[torch.topk(losses, count, largest=False).indices] = True
    return selected


def _count(share: float, total: int) -> int:
    # The small slack keeps 0.3 * 10 = 3.0000000000000004 from rounding up to 4 anchors.
    return math.ceil(share * total - 1e-9)


def select_anchors(losses: Tensor, k_t: int, min_fraction: float, rule: str, delta: int | None = None) -> Selection:
    """The anchors a step learns from under ``rule`` (see the module's docstring).

    ``curriculum``: the ``ceil(curriculum_share(K_t, delta, min_fraction) * B)`` lowest-loss anchors (needs
    ``delta``, the number of negatives at the first step). A threshold rule: ``loss_i < threshold(K_t)``;
    when fewer than ``ceil(min_fraction * B)`` anchors pass, the guard selects that many lowest-loss anchors
    instead (a superset of those that passed), so with ``min_fraction > 0`` no step selects nothing. The
    losses are detached: selection is a decision, not part of the graph.
    """
    if rule not in RULES:
        raise ValueError(f"unknown anchor-selection rule {rule!r}; known rules: {', '.join(sorted(RULES))}")
    if not 0 <= min_fraction <= 1:
        raise ValueError(f"min_fraction must be in [0, 1], got {min_fraction}")
    if k_t < 1:
        raise ValueError(f"k_t must be at least 1, got {k_t}")
    if losses.ndim != 1:
        raise ValueError(f"losses must be one value per anchor (B,), got {tuple(losses.shape)}")
    losses = losses.detach()
    if rule == "curriculum":
        if delta is None or delta < 1:
            raise ValueError(f"the curriculum rule needs delta (the negatives at the first step) >= 1, got {delta}")
        return Selection(_lowest(losses, _count(curriculum_share(k_t, delta, min_fraction), losses.numel())), False)
    selected = losses < THRESHOLDS[rule](k_t)
    minimum = _count(min_fraction, losses.numel())
    if int(selected.sum()) < minimum:
        return Selection(_lowest(losses, minimum), True)
    return Selection(selected, False)


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
