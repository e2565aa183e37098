"""Task grouping by PVI (Li et al.): tasks whose PVI distributions are not significantly different train together.

Welch's t-test between every pair of tasks and a one-way ANOVA over all, at significance level α (0.05, the
paper's). Groups: tasks sorted by mean PVI are added to the current group while the new task differs significantly
from none of its members; otherwise it starts a new group (each group is a clique of "not different" pairs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np
from scipy import stats


def group_tasks(pvi: Mapping[str, Sequence[float]], alpha: float = 0.05) -> dict[str, Any]:
    """Statistics and proposed groups for ``pvi``: task → per-example PVI values."""
    names = sorted(pvi, key=lambda t: -float(np.mean(pvi[t])))
    tests = {}
    for a, b in combinations(names, 2):
        t, p = stats.ttest_ind(pvi[a], pvi[b], equal_var=False)
        tests[f"{a}|{b}"] = {"t": round(float(t), 4), "p": float(p), "different": bool(p < alpha)}
    anova = None
    if len(names) > 2:
        f, p = stats.f_oneway(*(pvi[t] for t in names))
        anova = {"f": round(float(f), 4), "p": float(p), "different": bool(p < alpha)}

    def different(a: str, b: str) -> bool:
        return (tests.get(f"{a}|{b}") or tests[f"{b}|{a}"])["different"]

    groups: list[list[str]] = []
    for name in names:
        if groups and not any(different(name, other) for other in groups[-1]):
            groups[-1].append(name)
        else:
            groups.append([name])
    return {"alpha": alpha,
            "tasks": {t: {"examples": len(pvi[t]), "mean_pvi": round(float(np.mean(pvi[t])), 4),
                          "std": round(float(np.std(pvi[t], ddof=1)), 4) if len(pvi[t]) > 1 else 0.0}
                      for t in names},
            "welch": tests, "anova": anova, "groups": groups}
