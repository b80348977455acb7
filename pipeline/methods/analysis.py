"""Class-similarity analysis: does IL's learned similarity match the data's structure?"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr


def off_diagonal(matrix: np.ndarray) -> np.ndarray:
    return matrix[~np.eye(len(matrix), dtype=bool)]


def partner_hits(matrix: np.ndarray, groups: list[int]) -> float:
    """Share of classes whose most similar *other* class is in the same group."""
    hits = []
    for c, row in enumerate(matrix):
        others = [o for o in range(len(row)) if o != c]
        best = max(others, key=lambda o: row[o])
        hits.append(groups[best] == groups[c])
    return float(np.mean(hits))


def similarity_report(il: np.ndarray, teacher: np.ndarray | None,
                      groups: list[int] | None) -> dict[str, float]:
    """Spearman correlation with the teacher (off-diagonal) and, with known groups, hit rates."""
    out: dict[str, float] = {"similarity_gt_mass": float(np.mean(np.diag(il)))}
    if teacher is not None:
        rho = spearmanr(off_diagonal(il), off_diagonal(teacher)).statistic
        out["similarity_rank_corr_teacher"] = float(np.nan_to_num(rho))
    if groups is not None and len(set(groups)) < len(groups):
        out["similarity_partner_hits"] = partner_hits(il, groups)
        if teacher is not None:
            out["teacher_partner_hits"] = partner_hits(teacher, groups)
    return out
