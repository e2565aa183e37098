#!/usr/bin/env python
r"""Pointwise V-usable information of one task, per example and held out by passage (``mrc.pvi``).

Examples:
  python scripts/pvi.py --task span --data ../shared/data/cmedmrc/dev.json --encoder ../shared/models/m3e-small \
      --out pvi/span
  python scripts/pvi.py --task support --data ../shared/data/cmedmrc/dev.json --out pvi/support
  python scripts/pvi.py --task category --data ../shared/data/cmedmrc/dev.json --categories dev.categories.json \
      --out pvi/category
  python scripts/pvi.py --task span --data ../shared/data/cmrc2018/cmrc2018_dev.json --out pvi/cmrc_span
Writes OUT/pvi.jsonl (id, fold, log2 g(x)[y], log2 g'(null)[y], pvi), OUT/summary.json (V-information with a 95% CI)
and OUT/histogram.png; prints the lowest-PVI examples (likely label errors). g and g' follow the recipe of record
(--set training.epochs=2 …); rerunning resumes finished folds. --run-folds K runs one fold (a process per fold, sharing
--out, e.g. on a GPU); the process that finds every fold estimated writes the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from kgutil.cli import ConfigError, add_common_args, add_field_args, build_config, setup_logging
from mrc.data import DataError, read_dataset, read_pvi
from mrc.pvi import PVIConfig, compute_pvi

log = logging.getLogger("pvi")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_field_args(p, PVIConfig, ["task", "data", "categories", "out", "folds", "run_folds", "split_seed"])
    p.add_argument("--encoder", help="Hugging Face encoder of g and g' (training.encoder)")
    p.add_argument("--lowest", type=int, default=10, help="print this many lowest-PVI examples")
    add_common_args(p)
    args = p.parse_args(argv)
    setup_logging(args.log_level)
    try:
        config = build_config(PVIConfig, args, {"training.encoder": args.encoder})
        summary = compute_pvi(config)
    except (ConfigError, DataError, ValueError) as err:
        log.error("%s", err)
        return 2
    print(json.dumps(summary, ensure_ascii=False, indent=2))
    if "missing" in summary:  # other processes estimate the other folds; the last one writes the figures
        return 0
    values = read_pvi(config.out)
    examples = {e.id: e for path in config.data for e in read_dataset(path)}
    for qid in sorted(values, key=values.get)[: args.lowest]:
        e = examples[qid]
        support = ",".join(str(s + 1) for s in e.support) if e.support is not None else "-"
        print(f"{values[qid]:+.3f}\t{qid}\t{e.question}\t{(e.gold_texts or [''])[0][:40]}\tsupport {support}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
