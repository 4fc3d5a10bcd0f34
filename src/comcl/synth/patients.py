"""How the synthetic generators give out patients, for the generators and for the workflow's load-time
checks (which know a synthetic dataset's patients before it exists). Standard library only: the
workflow imports this module while it parses."""

from __future__ import annotations


def eyeq_patients(images: int) -> int:
    """EyeQ patients of a split of ``images``: both eyes of each, the last one alone for an odd count."""
    return (images + 1) // 2


def chest_test_patients(patients: int, share: float) -> int:
    """ChestX-ray14 patients in the test list: about ``share``, at least one, and at least one left for training."""
    return min(patients - 1, max(1, round(share * patients)))
