#!/usr/bin/env python
"""How often each interval of a paired comparison covers the true difference, on data simulated from measured
variance components (``bench/power.py`` writes them): d_si = a_s + b_i + e_si per fold, true mean 0. Intervals:
the bootstrap over questions of seed-averaged differences, the multi-bootstrap over seeds × questions, and the
variance-components interval (``kgutil.stats.components_ci``); for each, the share of draws that cover 0 (with its
95% Wilson interval) and the median half-width.

  python bench/ci_coverage.py --power bench/results/power_fusion_pvi_half.json --seeds 3 4 --folds 1 5
Writes bench/results/ci_coverage.json.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from bench.common import write_result
from kgutil.cli import setup_logging
from kgutil.stats import VarianceComponents, bootstrap_ci, components_ci, multi_bootstrap_ci


def wilson(hits: int, n: int) -> list[float]:
    """95% Wilson interval of a proportion (×100)."""
    p, z = hits / n, 1.96
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (
        1 + z * z / n)
    return [round(100 * (centre - half), 1), round(100 * (centre + half), 1)]


def simulate(truth: VarianceComponents, folds: int, seeds: int, questions: int, draws: int, rounds: int,
             seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    per_fold = questions // folds
    hits: dict[str, int] = {"questions": 0, "multi_bootstrap": 0, "components": 0}
    widths: dict[str, list[float]] = {k: [] for k in hits}
    for draw in tqdm(range(draws), desc=f"{folds} folds × {seeds} seeds", leave=False):
        blocks = [rng.normal(0, math.sqrt(truth.run), (seeds, 1))
                  + rng.normal(0, math.sqrt(truth.item), (1, per_fold))
                  + rng.normal(0, math.sqrt(truth.residual), (seeds, per_fold)) for _ in range(folds)]
        matrix = np.concatenate(blocks, axis=1)
        for name, (low, high) in (("questions", bootstrap_ci(matrix.mean(axis=0), rounds, draw)),
                                  ("multi_bootstrap", multi_bootstrap_ci(matrix, rounds, draw)),
                                  ("components", components_ci(blocks))):
            hits[name] += low <= 0 <= high
            widths[name].append((high - low) / 2)
    return {name: {"coverage": round(100 * hits[name] / draws, 1), "coverage_ci95": wilson(hits[name], draws),
                   "half_width_median": round(float(np.median(widths[name])), 2)} for name in hits}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--power", type=Path, required=True, help="a bench/power.py result (its pairs' EM components)")
    p.add_argument("--seeds", type=int, nargs="+", default=[3, 4])
    p.add_argument("--folds", type=int, nargs="+", default=[1, 5])
    p.add_argument("--questions", type=int, default=593)
    p.add_argument("--draws", type=int, default=300)
    p.add_argument("--rounds", type=int, default=1000, help="bootstrap rounds per interval")
    args = p.parse_args(argv)
    setup_logging("WARNING")
    pairs = json.loads(args.power.read_text(encoding="utf-8"))["pairs"]
    results: dict[str, Any] = {}
    for name, entry in pairs.items():
        truth = VarianceComponents(**entry["scores"]["em"]["components"])
        for folds in args.folds:
            for seeds in args.seeds:
                figures = simulate(truth, folds, seeds, args.questions, args.draws, args.rounds, seed=seeds)
                results.setdefault(name, {"components": vars(truth), "designs": []})["designs"].append(
                    {"folds": folds, "seeds": seeds, "questions": args.questions, **figures})
                print(f"{name}, {folds} fold(s) × {seeds} seeds: " + ", ".join(
                    f"{k} {v['coverage']}% (±{v['half_width_median']})" for k, v in figures.items()))
    write_result("ci_coverage", {"draws": args.draws, "rounds": args.rounds, "pairs": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
