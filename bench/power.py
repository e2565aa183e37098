#!/usr/bin/env python
"""How many seeds a paired comparison needs to see an effect. From its recorded per-seed, per-question differences:
the variance components (``kgutil.stats.variance_components``: between training runs, between questions, and their
interaction; estimated within each fold or held-out file with two or more seeds on both sides, pooled over them);
the standard error they predict for the design they were measured on, beside those the recorded CIs over seeds ×
questions imply; and for a target design — k folds × S seeds over n questions — the 95% CI half-width and the
smallest true difference the variance-components interval of record (``kgutil.stats.components_ci``, Student's t
with Satterthwaite's degrees of freedom) finds with 80% power, for S = 2 … --max-seeds.

--at CONFIG projects at another config's scale (e.g. the recipe of record, where only one seed exists): the
per-question variance of the same pair's single-run differences there (= question + residual under the model)
rescales those two components, in their measured ratio; the run component is kept.

--looks S1 S2 … reads the target design sequentially, after S1, S2, … seeds on every fold (e.g. one lent GPU session
each), stopping early when the answer is clear: each look's repeated CI (``kgutil.stats.spending_bounds``, O'Brien–
Fleming-type spending of 5%, information fractions from the projection) claims a gain when its lower end is above
0 and stops for futility when its upper end is below --effect (non-binding: it spends no α). Printed per look: the
critical value, the CI level, the projected half-width; by simulation of the looks' joint normal statistics, the
chance to claim a gain with no true difference and with one of --effect, and the expected seeds. With --at, the
records of that config are read at the look they have reached (every fold with the same complete seeds).

  python bench/power.py --config configs/cv/fusion_pvi_half.yaml \\
      --pair cmedbert_entity_boundary_text baseline_question_boundary --at configs/cv/fusion_recipe.yaml \\
      --looks 2 3 4 5
Reads bench/results/NAME.runs.json (the runs each config describes now); writes the pair's entry into
bench/results/power_NAME.json (one file per config, an entry per pair).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from bench.common import RESULTS, parse_cv_args, write_result
from kgutil.cli import ConfigError, read_config_file
from kgutil.stats import VarianceComponents, components_ci, spending_bounds, variance_components
from mrc.crossval import CVConfig, current_runs, paired_difference, seed_difference_blocks

log = logging.getLogger("power")


def current_records(config_path: Path, config: CVConfig) -> dict[str, Any]:
    records_path = RESULTS / f"{config_path.stem}.runs.json"
    return current_runs(json.loads(records_path.read_text(encoding="utf-8")), config)[0]


def pooled_components(runs: dict[str, Any], reference: dict[str, Any], score: str
                      ) -> tuple[VarianceComponents, int, int, int] | None:
    """Components pooled within folds (``mrc.crossval.seed_difference_blocks``: the complete seeds both have) and
    the measured design: (components, fold runs, seeds, questions). None with fewer than two such seeds."""
    blocks = [b for b in seed_difference_blocks(runs, reference).get(score, []) if b.shape[1] >= 2]
    if not blocks:
        return None
    seeds = blocks[0].shape[0]
    return variance_components(blocks), seeds * len(blocks), seeds, sum(b.shape[1] for b in blocks)


def single_run_variance(runs: dict[str, Any], reference: dict[str, Any], score: str) -> float | None:
    """Variance (×100², ddof 1) of the per-question differences within each run both have, pooled over runs."""
    residuals = []
    for key in set(runs) & set(reference):
        mine, theirs = runs[key]["questions"], reference[key]["questions"]
        diffs = np.array([mine[q][score] - theirs[q][score] for q in mine
                          if q in theirs and score in mine[q] and score in theirs[q]]) * 100
        if len(diffs):
            residuals.append(diffs - diffs.mean())
    values = np.concatenate(residuals) if residuals else np.array([])
    return float((values ** 2).sum() / (len(values) - len(residuals))) if len(values) > len(residuals) else None


def projection(components: VarianceComponents, args: argparse.Namespace) -> dict[str, Any]:
    """Half-width and detectable difference per number of seeds on the target design, and the seeds needed."""
    rows = []
    for seeds in range(2, args.max_seeds + 1):
        runs, dof = args.folds * seeds, components.interval_dof(args.folds, seeds, args.questions)
        se = components.standard_error(runs, seeds, args.questions)
        rows.append({"seeds": seeds, "dof": round(dof, 1),
                     "ci95_half_width": round(float(stats.t.ppf(0.975, dof)) * se, 2),
                     "detectable": round(components.detectable(runs, seeds, args.questions, args.power, dof), 2)})
    return {"components": {k: round(v, 2) for k, v in vars(components).items()}, "by_seeds": rows,
            "seeds_needed": next((r["seeds"] for r in rows if r["detectable"] <= args.effect), None)}


def sequential(components: VarianceComponents, args: argparse.Namespace, draws: int = 200_000
               ) -> dict[str, Any]:
    """The looks of the target design: critical values from the projected information fractions, each look's CI
    level and half-width, and the operating characteristics of the rule (module docstring) by simulation: the
    statistic of look k is Z_k = δ/SE_k + W_k, with W a standard Brownian path read at the information fractions."""
    looks = sorted(set(args.looks))
    se = np.array([components.standard_error(args.folds * s, s, args.questions) for s in looks])
    fractions = (se[-1] / se) ** 2
    bounds = np.array(spending_bounds(fractions))
    steps = np.diff(fractions, prepend=0.0)
    paths = np.cumsum(np.random.default_rng(0).standard_normal((draws, len(looks))) * np.sqrt(steps), axis=1)
    noise = paths / np.sqrt(fractions)
    characteristics = {}
    for name, delta in (("if_no_difference", 0.0), ("if_effect", args.effect)):
        z = delta / se + noise
        gain, futile = z >= bounds, (z + bounds) * se < args.effect
        stop = gain | futile
        stop[:, -1] = True
        first = stop.argmax(axis=1)
        characteristics[name] = {"claims_gain": round(float(gain[np.arange(draws), first].mean()), 4),
                                 "expected_seeds": round(float(np.asarray(looks)[first].mean()), 2)}
    return {"looks": [{"seeds": s, "fraction": round(float(f), 3), "critical": round(float(c), 3),
                       "level": round(float(2 * stats.norm.cdf(c) - 1), 5), "half_width": round(float(c * e), 2)}
                      for s, f, c, e in zip(looks, fractions, bounds, se)], **characteristics}


def read_at_look(runs: dict[str, Any], reference: dict[str, Any], score: str, plan: dict[str, Any], folds: int
                 ) -> dict[str, Any]:
    """The records read by the rule: the look their complete seeds reach on every fold, its repeated CI
    (``components_ci`` at the look's level) and the decision — gain, futile, or continue."""
    blocks = seed_difference_blocks(runs, reference).get(score, [])
    seeds = blocks[0].shape[0] if blocks else 0
    look = next((row for row in plan["looks"] if row["seeds"] == seeds), None)
    if len(blocks) < folds or look is None:
        return {"seeds": seeds, "folds": len(blocks), "decision": "not at a look"}
    low, high = components_ci(blocks, look["level"])
    decision = "gain" if low > 0 else "futile" if high < plan["effect"] else "continue"
    if decision == "continue" and seeds == plan["looks"][-1]["seeds"]:
        decision = "no gain"
    return {"seeds": seeds, "folds": len(blocks), "mean": round((low + high) / 2, 2),
            "repeated_ci": [round(low, 2), round(high, 2)], "decision": decision}


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
    p.add_argument("--looks", type=int, nargs="+", metavar="SEEDS", help="read the target design after these "
                   "numbers of seeds (sequential rule, module docstring)")
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
        for kind in ("seeds", "components"):   # the SE each interval of record implies, beside the components'
            if f"{score}_ci95_{kind}" in observed:
                low, high = observed[f"{score}_ci95_{kind}"]
                measured[f"se_implied_by_ci95_{kind}"] = round((high - low) / (2 * 1.96), 3)
        entry = {"measured": measured, **projection(components, args)}
        if args.at:
            there = single_run_variance(at_records[variant], at_records[reference], score)
            here = components.item + components.residual
            if there is None:
                log.error("%s: %s and %s share no scored question", args.at, variant, reference)
                return 2
            factor = there / here
            scaled = replace(components, item=components.item * factor, residual=components.residual * factor)
            entry["at"] = {"per_question_variance": round(there, 1), "factor": round(factor, 2),
                           **projection(scaled, args)}
        if args.looks:
            plan = {"effect": args.effect, **sequential(scaled if args.at else components, args)}
            if args.at:
                plan["reading"] = read_at_look(at_records[variant], at_records[reference], score, plan, args.folds)
            entry["sequential"] = plan
            none, effect = plan["if_no_difference"], plan["if_effect"]
            looks = plan["looks"]
            print(f"{variant} − {reference}, {score}, looks at {[r['seeds'] for r in looks]} seeds: critical values "
                  f"{[r['critical'] for r in looks]}, half-widths {[r['half_width'] for r in looks]}; claims a gain "
                  f"{none['claims_gain']:.1%} of the time with no difference (expected seeds "
                  f"{none['expected_seeds']}), {effect['claims_gain']:.1%} with {args.effect:g} (expected seeds "
                  f"{effect['expected_seeds']})" + (f"; records: {plan['reading']}" if "reading" in plan else ""))
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
