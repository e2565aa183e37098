#!/usr/bin/env python
"""How many seeds a paired comparison needs to see an effect. From its recorded per-seed, per-question differences:
the variance components (``kgutil.stats.variance_components``: between training runs, between questions, and their
interaction; estimated within each fold or held-out file with two or more seeds on both sides, pooled over them);
the standard error they predict for the design they were measured on, beside the one the multi-bootstrap CI of
record implies (its ratio, the verdict's scale, carries to other designs); and for a target design — k folds × S
seeds over n questions — the 95% CI half-width and the smallest true difference a two-sided 5% test finds with 80%
power, by the components and by the multi-bootstrap verdict, for S = 1 … --max-seeds.

--at CONFIG projects at another config's scale (e.g. the recipe of record, where only one seed exists): the
per-question variance of the same pair's single-run differences there (= question + residual under the model)
rescales those two components, in their measured ratio; the run component is kept.

  python bench/power.py --config configs/cv/fusion_pvi_half.yaml \\
      --pair cmedbert_entity_boundary_text baseline_question_boundary --at configs/cv/fusion_recipe.yaml
Reads bench/results/NAME.runs.json (the runs each config describes now); writes the pair's entry into
bench/results/power_NAME.json (one file per config, an entry per pair).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RESULTS, parse_cv_args, write_result
from kgutil.cli import ConfigError, read_config_file
from kgutil.stats import VarianceComponents, variance_components
from mrc.crossval import CVConfig, current_runs, paired_difference, seed_differences

log = logging.getLogger("power")


def current_records(config_path: Path, config: CVConfig) -> dict[str, Any]:
    records_path = RESULTS / f"{config_path.stem}.runs.json"
    return current_runs(json.loads(records_path.read_text(encoding="utf-8")), config)[0]


def pooled_components(runs: dict[str, Any], reference: dict[str, Any], score: str
                      ) -> tuple[VarianceComponents, int, int, int] | None:
    """Components pooled over the folds (run keys ``fold/seed``) with ≥ 2 seeds on both sides, weighted by their
    questions, and the measured design: (components, fold runs, seeds, questions). None without such a fold."""
    by_fold: dict[str, dict[str, Any]] = defaultdict(dict)
    for key, run in runs.items():
        by_fold[key.split("/")[0]][key] = run
    parts = [m for fold_runs in by_fold.values() if (m := seed_differences(fold_runs, reference, score)) is not None]
    if not parts:
        return None
    weights = np.array([m.shape[1] for m in parts], dtype=float) / sum(m.shape[1] for m in parts)
    estimates = [variance_components(m) for m in parts]
    pooled = VarianceComponents(**{field: float(sum(w * getattr(e, field) for w, e in zip(weights, estimates)))
                                   for field in ("run", "item", "residual")})
    seeds = min(m.shape[0] for m in parts)
    return pooled, seeds * len(parts), seeds, sum(m.shape[1] for m in parts)


def single_run_variance(runs: dict[str, Any], reference: dict[str, Any], score: str) -> float | None:
    """Variance (×100², ddof 1) of the per-question differences within each run both have, pooled over runs."""
    residuals = []
    for key in set(runs) & set(reference):
        mine, theirs = runs[key]["questions"], reference[key]["questions"]
        diffs = np.array([mine[q][score] - theirs[q][score] for q in mine
                          if q in theirs and score in mine[q] and score in theirs[q]]) * 100
        residuals.append(diffs - diffs.mean())
    values = np.concatenate(residuals) if residuals else np.array([])
    return float((values ** 2).sum() / (len(values) - len(residuals))) if len(values) > len(residuals) else None


def projection(components: VarianceComponents, verdict_scale: float | None, args: argparse.Namespace
               ) -> dict[str, Any]:
    """Half-width and detectable difference per number of seeds on the target design, and the seeds needed."""
    rows = []
    for seeds in range(1, args.max_seeds + 1):
        runs = args.folds * seeds
        row = {"seeds": seeds,
               "ci95_half_width": round(1.96 * components.standard_error(runs, seeds, args.questions), 2),
               "detectable": round(components.detectable(runs, seeds, args.questions, args.power), 2)}
        if verdict_scale is not None:
            row["detectable_multi_bootstrap"] = round(row["detectable"] * verdict_scale, 2)
        rows.append(row)
    needed = {key: next((r["seeds"] for r in rows if r[key] <= args.effect), None)
              for key in ("detectable", "detectable_multi_bootstrap") if key in rows[0]}
    return {"components": {k: round(v, 2) for k, v in vars(components).items()}, "by_seeds": rows,
            "seeds_needed": needed}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pair", nargs=2, required=True, metavar=("VARIANT", "REFERENCE"))
    p.add_argument("--at", type=Path, metavar="CONFIG", help="project at this config's per-question variance")
    p.add_argument("--scores", nargs="+", default=["em", "f1"])
    p.add_argument("--folds", type=int, default=5, help="target design: folds (independent runs per seed)")
    p.add_argument("--questions", type=int, default=1199, help="target design: questions scored")
    p.add_argument("--max-seeds", type=int, default=10)
    p.add_argument("--effect", type=float, default=1.5, help="the difference to detect (points ×100)")
    p.add_argument("--power", type=float, default=0.8)
    args, config = parse_cv_args(p, argv)
    if config is None:
        return 2
    variant, reference = args.pair
    records = current_records(args.config, config)
    at_records: dict[str, Any] = {}
    if args.at:
        try:
            at_records = current_records(args.at, CVConfig.model_validate(read_config_file(args.at)))
        except (ConfigError, ValueError, OSError) as err:
            log.error("%s: %s", args.at, err)
            return 2
    for name in args.pair:
        for path, held in ((args.config, records), *(((args.at, at_records),) if args.at else ())):
            if name not in held:
                log.error("%s: no current runs of %s", path, name)
                return 2
    observed = paired_difference(records[variant], records[reference], config.bootstrap) or {}
    figures: dict[str, Any] = {"config": args.config.stem, "at": args.at.stem if args.at else None,
                               "design": {"folds": args.folds, "questions": args.questions},
                               "effect": args.effect, "power": args.power, "scores": {}}
    for score in args.scores:
        pooled = pooled_components(records[variant], records[reference], score)
        if pooled is None:
            log.error("%s vs %s: no fold or held-out file with two or more seeds on both sides", variant, reference)
            return 2
        components, fold_runs, seeds, questions = pooled
        measured: dict[str, Any] = {"fold_runs": fold_runs, "seeds": seeds, "questions": questions,
                                    "se_predicted": round(components.standard_error(fold_runs, seeds, questions), 3)}
        scale = None
        if f"{score}_ci95_seeds" in observed:
            low, high = observed[f"{score}_ci95_seeds"]
            measured["se_multi_bootstrap"] = round((high - low) / (2 * 1.96), 3)
            scale = round(measured["se_multi_bootstrap"] / measured["se_predicted"], 2)
            measured["verdict_scale"] = scale
        entry = {"measured": measured, **projection(components, scale, args)}
        if args.at:
            there = single_run_variance(at_records[variant], at_records[reference], score)
            here = components.item + components.residual
            if there is None:
                log.error("%s: %s and %s share no scored question", args.at, variant, reference)
                return 2
            factor = there / here
            scaled = replace(components, item=components.item * factor, residual=components.residual * factor)
            entry["at"] = {"per_question_variance": round(there, 1), "factor": round(factor, 2),
                           **projection(scaled, scale, args)}
        figures["scores"][score] = entry
        for label, block in (("", entry), (f" at {args.at.stem if args.at else ''}", entry.get("at"))):
            if block:
                print(f"{variant} − {reference}, {score}{label}: components {block['components']}; "
                      f"{args.effect:g} points found with power {args.power:g} on {args.folds} folds × S seeds "
                      f"({args.questions} questions) from S = {block['seeds_needed']}")
    path = RESULTS / f"power_{args.config.stem}.json"   # one file per config, one entry per pair
    pairs = json.loads(path.read_text(encoding="utf-8"))["pairs"] if path.exists() else {}
    write_result(path.stem, {"pairs": {**pairs, f"{variant}-vs-{reference}": figures}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
