"""A training killed from outside after a number of optimiser steps, for the resume tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch


class Killed(Exception):
    """What stops the run: raised where a kill would stop it."""


def kill_after_optimizer_steps(monkeypatch: pytest.MonkeyPatch, steps: int) -> Callable[..., Any]:
    """Make ``AdamW.step`` raise :class:`Killed` once it has run ``steps`` times; returns the real ``step``, to put
    back for the resumed run."""
    original, calls = torch.optim.AdamW.step, {"n": 0}

    def step_then_die(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > steps:
            raise Killed
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", step_then_die)
    return original
