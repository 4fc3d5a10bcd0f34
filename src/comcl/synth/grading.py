"""The rule that ties a synthetic fundus image's lesions to its DR grade.

It follows the international clinical DR severity scale as far as the four rendered lesion kinds
allow (neovascularisation is not rendered, so heavy haemorrhage plus soft exudates stands in for
the proliferative grade):

=====  =====================  ===============================================================
grade  EyePACS name           rule on the lesion counts
=====  =====================  ===============================================================
0      No DR                  no lesions at all
1      Mild NPDR              microaneurysms only
2      Moderate NPDR          haemorrhages and/or hard exudates, fewer than ``SEVERE_HE``
                              haemorrhages, no soft exudates
3      Severe NPDR            at least ``SEVERE_HE`` haemorrhages, or soft exudates with fewer
                              than ``PROLIFERATIVE_HE`` haemorrhages
4      Proliferative DR       soft exudates and at least ``PROLIFERATIVE_HE`` haemorrhages
=====  =====================  ===============================================================
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

DR_GRADES = (0, 1, 2, 3, 4)
SEVERE_HE = 8
PROLIFERATIVE_HE = 16


def grade_from_counts(counts: Mapping[str, int]) -> int:
    ma, he, ex, se = (int(counts.get(kind, 0)) for kind in ("MA", "HE", "EX", "SE"))
    if se > 0:
        return 4 if he >= PROLIFERATIVE_HE else 3
    if he >= SEVERE_HE:
        return 3
    if he > 0 or ex > 0:
        return 2
    return 1 if ma > 0 else 0


def sample_lesion_counts(grade: int, rng: np.random.Generator) -> dict[str, int]:
    """Draw lesion counts that :func:`grade_from_counts` maps back to ``grade``."""
    if grade == 0:
        return {"MA": 0, "HE": 0, "EX": 0, "SE": 0}
    if grade == 1:
        return {"MA": int(rng.integers(1, 7)), "HE": 0, "EX": 0, "SE": 0}
    if grade == 2:
        he = int(rng.integers(0, SEVERE_HE))
        ex = int(rng.integers(0 if he else 1, 9))
        return {"MA": int(rng.integers(1, 9)), "HE": he, "EX": ex, "SE": 0}
    if grade == 3:
        se = int(rng.integers(0, 3))
        he = int(rng.integers(SEVERE_HE, PROLIFERATIVE_HE))
        return {"MA": int(rng.integers(2, 11)), "HE": he, "EX": int(rng.integers(0, 11)), "SE": se}
    if grade == 4:
        return {
            "MA": int(rng.integers(4, 13)),
            "HE": int(rng.integers(PROLIFERATIVE_HE, PROLIFERATIVE_HE + 9)),
            "EX": int(rng.integers(0, 13)),
            "SE": int(rng.integers(1, 5)),
        }
    raise ValueError(f"DR grade must be one of {DR_GRADES}, got {grade!r}")
