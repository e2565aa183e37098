#!/usr/bin/env python
"""PVI figures from ``scripts/pvi.py`` outputs, in one place: per task the V-information with its 95% CI (the
task's ``summary.json``), the median and the shares below 0 and −1 bits, the budget of g (epochs, CMRC 2018 stage);
Spearman's ρ between tasks per question; the grouping (``mrc.task_groups``); for the category task, V-information by
gold category, and — on the answers hand-labelled in ``--check`` files — how often the automatic label equals the
hand label for questions below and at or above 0 bits (does low PVI find label errors? Fisher's exact test).

  python bench/pvi_figures.py runs/pvi_half/span runs/pvi_half/support runs/pvi_half/category \\
      --categories runs/categories/dev.categories.json \\
      --check examples/categories_check.json examples/categories_tune.json   → bench/results/pvi.json
"""

from __future__ import annotations

import argparse
import json
import sys
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from bench.common import write_result
from mrc.categories import CategoryLabels, gold_set
from mrc.data import read_pvi
from mrc.task_groups import group_tasks


def task_figures(out: Path, values: dict[str, float]) -> dict[str, Any]:
    """The summary scripts/pvi.py wrote, the distribution's shape and the budget of g (fold 0's training config)."""
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    training = json.loads((out / "runs" / "g_fold0" / "model" / "train_config.json").read_text(encoding="utf-8"))
    arr = np.array(list(values.values()))
    return {**summary, "median": round(float(np.median(arr)), 4), "share_below_0": round(float((arr < 0).mean()), 4),
            "share_below_minus_1": round(float((arr < -1).mean()), 4),
            "budget": {"encoder": training["encoder"], "epochs": training["epochs"],
                       "intermediate_epochs": training["intermediate"]["epochs"]}}


def by_category(values: dict[str, float], labels: CategoryLabels) -> dict[str, Any]:
    """Mean PVI of the questions whose gold set holds each category."""
    found: dict[str, list[float]] = {}
    for qid, value in values.items():
        for c in gold_set(labels.labels.get(qid, {})):
            found.setdefault(c, []).append(value)
    return {c: {"questions": len(v), "mean_pvi": round(float(np.mean(v)), 4)} for c, v in sorted(found.items())}


def label_agreement(values: dict[str, float], labels: CategoryLabels, checks: list[CategoryLabels]) -> dict[str, Any]:
    """Agreement of the automatic labels with hand labels, for hand-labelled questions below and at or above 0 bits."""
    agree = {"below_0": [], "at_or_above_0": []}
    for check in checks:
        for qid, hand in check.labels.items():
            if qid in values:
                side = "below_0" if values[qid] < 0 else "at_or_above_0"
                agree[side].append(gold_set(labels.labels.get(qid, {})) == gold_set(hand))
    table = [[sum(v), len(v) - sum(v)] for v in agree.values()]
    result: dict[str, Any] = {side: {"questions": len(v), "agreement": round(float(np.mean(v)), 4) if v else None}
                              for side, v in agree.items()}
    if all(len(v) for v in agree.values()):
        result["fisher_p"] = round(float(stats.fisher_exact(table)[1]), 4)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tasks", nargs="+", type=Path, help="scripts/pvi.py output directories (the task is named after "
                                                       "its summary)")
    p.add_argument("--categories", type=Path, help="the category labels the category task was trained on")
    p.add_argument("--check", type=Path, nargs="*", default=[], help="hand-labelled category files")
    p.add_argument("--alpha", type=float, default=0.05)
    args = p.parse_args(argv)
    values, figures = {}, {}
    for out in args.tasks:
        task = json.loads((out / "summary.json").read_text(encoding="utf-8"))["task"]
        values[task] = read_pvi(out)
        figures[task] = task_figures(out, values[task])
    ids = sorted(set.intersection(*(set(v) for v in values.values())))
    spearman = {f"{a}|{b}": round(float(stats.spearmanr([values[a][q] for q in ids], [values[b][q] for q in ids])[0]),
                                  4) for a, b in combinations(values, 2)}
    result: dict[str, Any] = {**figures, "spearman": spearman,
                              "grouping": group_tasks({t: list(v.values()) for t, v in values.items()}, args.alpha)}
    if "category" in values and args.categories is not None:
        labels = CategoryLabels.read(args.categories)
        result["category"]["by_gold_category"] = by_category(values["category"], labels)
        if args.check:
            result["category"]["hand_label_agreement"] = label_agreement(
                values["category"], labels, [CategoryLabels.read(path) for path in args.check])
    write_result("pvi", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
