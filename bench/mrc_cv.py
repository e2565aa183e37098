#!/usr/bin/env python
"""Cross-validation by passage for accuracy figures of record (``mrc.crossval``): every question held out once
per seed, the same folds and seeds for every variant, paired differences with 95% bootstrap CIs.

  python bench/mrc_cv.py --config configs/cv/mrc_baseline.yaml               # the recipe of record
  python bench/mrc_cv.py --config configs/cv/fusion_cv.yaml                  # knowledge fusion vs baseline
  python bench/mrc_cv.py --config configs/cv/fusion_cv.yaml --run-folds 0 --seeds 1    # one-fold screening
  python bench/mrc_cv.py --config configs/cv/fusion_cv.yaml --workers 15      # (seed, fold) groups in parallel (GPU)
Prints a verdict per paired comparison and the comparison as a Markdown table (--table FILE.md keeps it).
Writes bench/results/NAME.json (NAME = the config's file name; the reference variant's figures also as "test",
every variant's also at the top level under its name) and NAME.runs.json (every run's per-question scores, the
epoch it kept and the w and τ it chose); a second invocation resumes from the latter. The figures are those of the runs the config describes now: runs
recorded under former settings or labels stay in NAME.runs.json and are named, not summarised.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from bench.common import RESULTS, parse_cv_args, write_result
from kgutil.io import atomic_write_text
from mrc.crossval import add_hashes, current_runs, recorded_elsewhere, run_cv, summarize
from mrc.cv_report import markdown_table, verdicts

log = logging.getLogger("mrc_cv")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-folds", type=int, nargs="+", help="only these folds (screening)")
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--variants", nargs="+", help="only these variants (the reference is always run)")
    p.add_argument("--summary-only", action="store_true", help="summarise the recorded runs, train nothing")
    p.add_argument("--table", type=Path, metavar="FILE.md", help="also write the comparison as a Markdown table "
                   "(the paper's Table 5: scores and paired differences with their CIs; it is printed either way)")
    p.add_argument("--workers", type=int, default=1, help="run the (seed, fold) groups in this many processes "
                   "(one GPU holds ~15 m3e-small runs at once; on a CPU, one per core at most)")
    args, config = parse_cv_args(p, argv, lambda args: {"run_folds": args.run_folds, "seeds": args.seeds})
    if config is None:
        return 2
    protocol = config  # the figures: every variant of the config; the runs: those asked for
    if args.variants:
        keep = set(args.variants) | {config.reference}
        config = config.model_copy(update={"variants": {k: v for k, v in config.variants.items() if k in keep}})
    name = args.config.stem
    records_path = RESULTS / f"{name}.runs.json"
    if args.summary_only:
        records = json.loads(records_path.read_text(encoding="utf-8"))
        add_hashes(records, config, recorded_elsewhere(records_path))
        atomic_write_text(records_path, json.dumps(records, ensure_ascii=False))
    else:
        try:
            records = run_cv(config, records_path, workers=args.workers)
        except RuntimeError as err:  # a failed worker: the others' runs are recorded, a second call resumes
            log.error("%s", err)
            return 1
    records, stale = current_runs(records, protocol)
    if stale:
        log.warning("%d recorded run(s) not of this config (former settings or labels) left out of the figures: %s",
                    len(stale), ", ".join(stale))
    summary = summarize(records, protocol)
    summary["test"] = summary["variants"].get(protocol.reference, {})
    summary.update({k: v for k, v in summary["variants"].items() if k not in summary})
    summary["settings"] = protocol.model_dump(mode="json")
    write_result(name, summary)
    for line in verdicts(summary):
        print(line)
    table = markdown_table(summary, protocol.reference)
    print(table)
    if args.table:
        atomic_write_text(args.table, table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
