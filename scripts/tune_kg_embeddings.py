#!/usr/bin/env python
"""Tune a KG embedding model with PyKEEN's HPO (optuna TPE, early stopping on validation MRR); resumable.

Writes OUT/trials.json (every trial beside the popularity baseline on the same validation triples) and
OUT/best.yaml, a train_kg_embeddings.py config of the best trial; the test split is never read. Trial MRRs are
filtered by all known triples, like the test figures and the popularity baseline; the early stopper's per-epoch
MRRs in the log filter by the training triples only (PyKEEN's stopper) and read lower: compare trials, not logs.

Examples:
  python scripts/tune_kg_embeddings.py --kg kg_store/snapshot --model transe --trials 20 --out emb/tune_transe
  python scripts/train_kg_embeddings.py --kg kg_store/snapshot --config emb/tune_transe/best.yaml --out emb/transe
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import get_args

from kgutil.cli import FLAG_PREFIX, ConfigError, add_common_args, add_field_args, build_config, setup_logging
from kg.embeddings import model_names
from kg.embeddings.pipeline import EmbeddingConfig
from kg.embeddings.tune import TuneConfig, tune_embeddings
from kg.snapshot import SnapshotError

log = logging.getLogger("tune_kg_embeddings")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", dest=FLAG_PREFIX + "fixed.model", choices=model_names(), metavar="MODEL",
                   help="any PyKEEN model (transe, transr, rotate, complex, …) or ptranse")
    p.add_argument("--training-loop", dest=FLAG_PREFIX + "fixed.training_loop",
                   choices=get_args(EmbeddingConfig.model_fields["training_loop"].annotation))
    p.add_argument("--loss", dest=FLAG_PREFIX + "fixed.loss",
                   choices=get_args(EmbeddingConfig.model_fields["loss"].annotation))
    add_field_args(p, TuneConfig, ["kg", "out", "trials", "max_epochs", "valid_max_triples", "stop_frequency",
                                   "patience"])
    add_common_args(p)
    args = p.parse_args(argv)
    setup_logging(args.log_level)
    try:
        summary = tune_embeddings(build_config(TuneConfig, args))
    except (ConfigError, SnapshotError) as err:
        log.error("%s", err)
        return 2
    print(json.dumps({"popularity_mrr": summary["popularity"]["mrr"], "best": summary.get("best")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
