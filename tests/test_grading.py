import numpy as np
import pytest

from comcl.synth.grading import DR_GRADES, PROLIFERATIVE_HE, SEVERE_HE, grade_from_counts, sample_lesion_counts


@pytest.mark.parametrize("grade", DR_GRADES)
def test_sampled_counts_map_back_to_their_grade(grade):
    rng = np.random.default_rng(grade)
    for _ in range(200):
        assert grade_from_counts(sample_lesion_counts(grade, rng)) == grade


@pytest.mark.parametrize(
    ("counts", "grade"),
    [
        ({}, 0),
        ({"MA": 3}, 1),
        ({"MA": 1, "EX": 2}, 2),
        ({"HE": SEVERE_HE - 1}, 2),
        ({"HE": SEVERE_HE}, 3),
        ({"SE": 1, "HE": PROLIFERATIVE_HE - 1}, 3),
        ({"SE": 1, "HE": PROLIFERATIVE_HE}, 4),
        ({"HE": PROLIFERATIVE_HE + 5}, 3),
    ],
)
def test_rule_table(counts, grade):
    assert grade_from_counts(counts) == grade


def test_unknown_grade_raises():
    with pytest.raises(ValueError, match="DR grade"):
        sample_lesion_counts(5, np.random.default_rng(0))
