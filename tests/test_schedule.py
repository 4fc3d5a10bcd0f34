"""The shared learning-rate schedule: constant, or a cosine from the rate towards zero."""

from __future__ import annotations

import itertools

import pytest

from comcl.schedule import learning_rate


def test_the_cosine_starts_at_the_rate_halves_it_halfway_and_falls_throughout():
    rates = [learning_rate(0.1, True, step, 10) for step in range(10)]
    assert rates[0] == 0.1 and rates[5] == pytest.approx(0.05) and all(a > b > 0 for a, b in itertools.pairwise(rates))


def test_without_the_cosine_the_rate_is_constant():
    assert {learning_rate(0.1, False, step, 10) for step in range(10)} == {0.1}
