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

from pydantic import BaseModel, ConfigDict, Field

from kgutil.cli import ConfigError, add_common_args, add_field_args, build_config, setup_logging
from kgutil.io import atomic_write_text
from mrc.data import DataError, read_pvi
from mrc.task_groups import group_tasks

log = logging.getLogger("group_tasks")


class GroupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tasks: list[str] = Field(min_length=2, description="PVI directories (or NAME=DIRECTORY)")
    alpha: float = Field(0.05, gt=0, lt=1, description="significance level (the paper's)")
    out: Path | None = Field(None, description="write the statistics and groups here (JSON)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tasks", nargs="*", help="PVI directories (or NAME=DIRECTORY)")
    add_field_args(p, GroupConfig, ["alpha", "out"])
    add_common_args(p)
    args = p.parse_args(argv)
    setup_logging(args.log_level)
    try:
        config = build_config(GroupConfig, args, {"tasks": args.tasks or None})
        pvi = {}
        for item in config.tasks:
            name, _, path = item.rpartition("=") if "=" in item else (Path(item).name, "", item)
            pvi[name] = list(read_pvi(Path(path)).values())
    except (ConfigError, DataError) as err:
        log.error("%s", err)
        return 2
    result = group_tasks(pvi, config.alpha)
    for name, t in result["tasks"].items():
        print(f"{name:<16} mean PVI {t['mean_pvi']:+.4f}  (n = {t['examples']})")
    for pair, t in result["welch"].items():
        print(f"{pair:<32} Welch t {t['t']:+.3f}, p {t['p']:.3g}{'  different' if t['different'] else ''}")
    if result["anova"]:
        print(f"ANOVA F {result['anova']['f']:.3f}, p {result['anova']['p']:.3g}")
    print("groups: " + "  ".join("{" + ", ".join(g) + "}" for g in result["groups"]))
    if config.out:
        atomic_write_text(config.out, json.dumps(result, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
