#!/usr/bin/env python
"""Tune a trained model's post-processing on labelled validation data, as training does at every epoch.

Examples:
  python scripts/tune_postprocessing.py --model runs/base_f0/best --data runs/base_f0/validation.json
  python scripts/tune_postprocessing.py --model runs/old/best --data my_validation.json --no-write   # print only
The sentence weight w (the answer is the n-best candidate maximising its span score + w·log p̄ of its sentence,
p̄ the support head's probability; w from --sentence-weights) is chosen by answer F1, then the support threshold τ
by support F1 (mrc.postprocess). They are saved in the model directory's kgmrc_config.json, which predict.py and
evaluate.py read; the former values and the figures are appended to its "retuned" list. Use it for a model saved
before w existed (it answers with w = 0) or to fit a new domain. Tune on data you will not report: a run's
validation.json is the split its epoch was chosen on.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from kgutil.cli import FLAG_PREFIX, add_common_args, add_field_args, parse_config
from mrc.data import DataError, read_dataset
from mrc.inference import TuneConfig

log = logging.getLogger("tune_postprocessing")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", dest=FLAG_PREFIX + "model", type=Path, metavar="MODEL", required=True,
                   help="kgmrc model directory")
    p.add_argument("--data", type=Path, required=True, help="labelled validation data (SQuAD / CMedMRC layout)")
    add_field_args(p, TuneConfig, ["sentence_weights", "write", "metric", "batch_size", "index", "knowledge",
                                   "device"])
    add_common_args(p)
    args, cfg = parse_config(p, TuneConfig, argv)
    try:
        examples = read_dataset(args.data)
        if not any(ex.gold_texts for ex in examples):
            raise DataError(f"{args.data}: no question has an answer to tune on")
        from mrc.inference import tune_saved_model

        record = tune_saved_model(cfg.model, examples, sentence_weights=cfg.sentence_weights, metric=cfg.metric,
                                  batch_size=cfg.batch_size, device=cfg.device, settings=cfg.settings,
                                  write=cfg.write, source=str(args.data), progress=True)
    except (DataError, FileNotFoundError, ValueError) as err:  # SnapshotError is a ValueError
        log.error("%s", err)
        return 2
    log.info("w %g → %g, τ %.2f → %.2f on %d questions (answer F1 %.2f, support F1 %.2f)%s",
             record["former"]["sentence_weight"], record["tuned"]["sentence_weight"],
             record["former"]["support_threshold"], record["tuned"]["support_threshold"], record["questions"],
             record["figures"].get("f1", 0), record["figures"].get("support_f1", 0),
             "" if cfg.write else " (not written: --no-write)")
    print(json.dumps(record, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
