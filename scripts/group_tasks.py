#!/usr/bin/env python
"""Propose task groups from per-example PVI (``mrc.task_groups``): Welch t-tests between task pairs, a one-way
ANOVA over all, groups of tasks whose PVI distributions are not significantly different.

Example:
  python scripts/group_tasks.py pvi/span pvi/support pvi/category pvi/cmrc_span --out pvi/groups.json
Each argument is a directory written by scripts/pvi.py (the task is named after it) or NAME=DIRECTORY.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from kgutil.cli import setup_logging
from kgutil.io import atomic_write_text
from mrc.data import DataError, read_pvi
from mrc.task_groups import group_tasks

log = logging.getLogger("group_tasks")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tasks", nargs="+", help="PVI directories (or NAME=DIRECTORY)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (the paper's 0.05)")
    p.add_argument("--out", type=Path, help="write the statistics and groups here (JSON)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = p.parse_args(argv)
    setup_logging(args.log_level)
    if len(args.tasks) < 2:
        p.error("need at least two tasks")
    try:
        pvi = {}
        for item in args.tasks:
            name, _, path = item.rpartition("=") if "=" in item else (Path(item).name, "", item)
            pvi[name] = list(read_pvi(Path(path)).values())
    except DataError as err:
        log.error("%s", err)
        return 2
    result = group_tasks(pvi, args.alpha)
    for name, t in result["tasks"].items():
        print(f"{name:<16} mean PVI {t['mean_pvi']:+.4f}  (n = {t['examples']})")
    for pair, t in result["welch"].items():
        print(f"{pair:<32} Welch t {t['t']:+.3f}, p {t['p']:.3g}{'  different' if t['different'] else ''}")
    if result["anova"]:
        print(f"ANOVA F {result['anova']['f']:.3f}, p {result['anova']['p']:.3g}")
    print("groups: " + "  ".join("{" + ", ".join(g) + "}" for g in result["groups"]))
    if args.out:
        atomic_write_text(args.out, json.dumps(result, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
