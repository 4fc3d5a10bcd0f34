"""How many patients each split gets: the validation share the index holds out of the training patients, and how
the synthetic generators give out patients. One rule each for the stage that splits and for the workflow's
load-time checks, which know a split's patients before it exists. Standard library only: the workflow imports this
module while it parses."""

from __future__ import annotations

# The fewest values a label column must take on the validation split for fine-tuning to select a model there: two
# grades (multilabel: a finding present on some images and absent on others). On one, the validation kappa is 0 or
# undefined whatever the model predicts, so one image is never enough (comcl.index.build.check_selectable).
MIN_VALIDATION_VALUES = 2


def validation_count(patients: int, share: float) -> int:
    """Patients of a train split of ``patients`` that go to the validation split."""
    return round(share * patients)


def validation_problem(patients: int, share: float) -> tuple[str, str] | None:
    """Why ``share`` cannot split ``patients`` training patients into non-empty train and val splits, and
    what to do about it; ``None`` when it can."""
    count = validation_count(patients, share)
    if 0 < count < patients:
        return None
    empty = "validation" if count == 0 else "train"
    problem = (
        f"index.val_share {share} of the {patients} training patients leaves the {empty} split empty ({count} go to validation)"
    )
    if patients < 2:
        return problem, "the train split needs at least 2 patients, one for training and one for validation: use more data"
    return problem, f"set index.val_share between {1 / patients:.3g} and {(patients - 1) / patients:.3g}, or use more patients"


def eyeq_patients(images: int) -> int:
    """EyeQ patients of a split of ``images``: both eyes of each, the last one alone for an odd count."""
    return (images + 1) // 2


def chest_test_patients(patients: int, share: float) -> int:
    """ChestX-ray14 patients in the test list: about ``share``, at least one, and at least one left for training."""
    return min(patients - 1, max(1, round(share * patients)))
