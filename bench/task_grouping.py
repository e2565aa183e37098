#!/usr/bin/env python
"""Joint vs single vs PVI-chosen task groups (Li et al.): each grouping's models, their test figures under the
config's protocol (5-fold cross-validation by passage, or a held-out test file) and their parameters.

  python scripts/group_tasks.py pvi/span pvi/support pvi/category --out pvi/groups.json
  python bench/mrc_cv.py --config configs/cv/task_combinations.yaml --seeds 1      # one model per task set
  python bench/task_grouping.py --groups pvi/groups.json                         → bench/results/task_grouping.json

A grouping is a partition of {span, support, category}; each part is one model (the task_combinations variant that
trains exactly those losses). Answer EM/F1 come from the part holding the span task, support EM/F1 from the part
holding support, category macro F1 from the part holding categories, each with its 95% bootstrap CI over questions
and, with several seeds, the mean over seeds with its 95% t-interval ("over_seeds"); parameters are the sum over
parts of the encoder and the heads each part trains. The config's reference variant, when it trains a known task
set, is a further grouping ("reference": the recipe's tasks only). Paired differences (95% bootstrap CIs over
questions and, with several seeds, over seeds × questions; for category macro F1 over the questions' category sets)
compare the PVI grouping's model of each task with each other grouping's on the same questions, folds and seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench.common import RESULTS, write_result
from kgutil.cli import read_config_file
from mrc.crossval import CVConfig, current_runs, paired_difference

TASKS = ("span", "support", "category")
VARIANT = {frozenset({"span", "support", "category"}): "all_tasks", frozenset({"span"}): "span_only",
           frozenset({"support"}): "support_only", frozenset({"category"}): "category_only",
           frozenset({"span", "support"}): "span_support", frozenset({"span", "category"}): "span_category",
           frozenset({"support", "category"}): "support_category"}
TASK_SET = {variant: [t for t in TASKS if t in tasks] for tasks, variant in VARIANT.items()}
HEADS = {"span": "span.", "support": "support.", "category": "category."}
PAIRED_SCORES = {"span": ("em", "f1"), "support": ("support_em", "support_f1"), "category": ("category_macro_f1",)}


def parameter_counts(encoder: str, categories: int) -> dict[str, int]:
    """Parameters of the encoder and of each task's head (the baseline family's shapes)."""
    from transformers import AutoConfig, AutoModel

    from mrc.model import BaselineMRC, ModelConfig

    model = BaselineMRC(AutoModel.from_config(AutoConfig.from_pretrained(encoder)),
                        ModelConfig(categories=[f"c{i}" for i in range(categories)]))
    counts = {"encoder": sum(p.numel() for p in model.encoder.parameters())}
    for task, prefix in HEADS.items():
        counts[task] = sum(p.numel() for n, p in model.named_parameters() if n.startswith(prefix))
    return counts


def grouping_figures(parts: list[list[str]], summary: dict[str, Any], counts: dict[str, int]) -> dict[str, Any]:
    """The figures of a grouping from the task_combinations summary: per task, its part's variant and scores."""
    variants = [VARIANT[frozenset(p)] for p in parts]
    owner = {t: VARIANT[frozenset(p)] for p in parts for t in p}
    figures: dict[str, Any] = {"parts": parts, "models": variants,
                               "parameters": sum(counts["encoder"] + sum(counts[t] for t in p) for p in parts)}
    for score, task in (("em", "span"), ("f1", "span"), ("support_em", "support"), ("support_f1", "support"),
                        ("category_macro_f1", "category")):
        if task not in owner:  # a task the grouping leaves out (e.g. PVI measured for span and support only)
            continue
        row = summary["variants"].get(owner[task], {})
        if score in row:
            figures[score], figures[f"{score}_ci95"] = row[score], row[f"{score}_ci95"]
        if score in (seeds := row.get("over_seeds", {})):  # several seeds: the mean over seeds, its t-interval
            figures.setdefault("over_seeds", {})[score] = {"mean": seeds[score], "ci95": seeds[f"{score}_ci95"],
                                                          "seeds": seeds["seeds"]}
    return figures


def comparisons(groupings: dict[str, list[list[str]]]) -> list[tuple[str, str, str]]:
    """(key, PVI grouping's model, other grouping's model) per task, where they differ."""
    def model(grouping: str, task: str) -> str | None:
        part = next((p for p in groupings[grouping] if task in p), None)
        return VARIANT[frozenset(part)] if part else None

    found = []
    for task in TASKS:
        mine = model("pvi", task)
        for other in (g for g in groupings if g != "pvi"):
            theirs = model(other, task)
            if mine and theirs and mine != theirs:
                found.append((f"{task}:pvi-vs-{other}", mine, theirs))
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--groups", type=Path, required=True, help="scripts/group_tasks.py output (JSON)")
    p.add_argument("--config", type=Path, default=Path("configs/cv/task_combinations.yaml"))
    p.add_argument("--encoder", default="../shared/models/m3e-small")
    args = p.parse_args(argv)
    groups = json.loads(args.groups.read_text(encoding="utf-8"))
    config = CVConfig.model_validate(read_config_file(args.config))
    summary = json.loads((RESULTS / f"{args.config.stem}.json").read_text(encoding="utf-8"))
    records, _ = current_runs(json.loads((RESULTS / f"{args.config.stem}.runs.json").read_text(encoding="utf-8")),
                              config)
    counts = parameter_counts(args.encoder, 6)
    pvi_parts = [[t for t in g if t in TASKS] for g in groups["groups"]]
    groupings = {"all_tasks": [list(TASKS)], "single_task": [[t] for t in TASKS], "pvi": pvi_parts}
    if config.reference in TASK_SET:
        groupings["reference"] = [TASK_SET[config.reference]]
    result: dict[str, Any] = {"config": str(args.config), "groups_file": str(args.groups),
                              "protocol": {k: summary[k] for k in ("folds", "test_file", "seeds") if k in summary},
                              "pvi_groups": groups["groups"], "pvi_tasks": groups["tasks"],
                              "welch": groups["welch"], "anova": groups["anova"], "parameter_counts": counts,
                              "groupings": {k: grouping_figures(v, summary, counts) for k, v in groupings.items()}}
    # the PVI grouping's model of each task against the others', paired on the same questions and runs
    paired: dict[str, Any] = {}
    for key, mine, theirs in comparisons(groupings):
        if mine in records and theirs in records:
            scores = PAIRED_SCORES[key.split(":")[0]]
            ends = ("_diff", "_ci95", "_ci95_seeds", "_ci95_components")
            keep = {"questions", "runs"} | {f"{s}{end}" for s in scores for end in ends}
            entry = paired_difference(records[mine], records[theirs], config.bootstrap) or {}
            paired[key] = {"models": [mine, theirs], **{k: v for k, v in entry.items() if k in keep}}
    result["paired"] = paired
    write_result("task_grouping", result)
    for name, g in result["groupings"].items():
        print(f"{name:12s} {g['parts']}  EM {g.get('em')} F1 {g.get('f1')}  support EM {g.get('support_em')}  "
              f"category macro F1 {g.get('category_macro_f1')}  parameters {g['parameters']:,}")
        for score, seeds in g.get("over_seeds", {}).items():
            print(f"{'':12s} {score} over seeds {seeds['seeds']}: {seeds['mean']} {seeds['ci95']}")
    for key, entry in paired.items():
        print(key, json.dumps(entry, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
