#!/usr/bin/env python
r"""Train KG embeddings on a KG snapshot with PyKEEN (any model of its registry, or PTransE); evaluate and export them.

Examples:
  python scripts/train_kg_embeddings.py --kg kg_store/snapshot --model ptranse --dim 100 --epochs 50 --out emb/ptranse
  python scripts/train_kg_embeddings.py --kg kg_store/snapshot --model transe --config configs/emb/transe.yaml
  python scripts/train_kg_embeddings.py --kg kg_store/snapshot --model rotate --loss nssa --out emb/rotate
  python scripts/train_kg_embeddings.py --kg kg_store/snapshot --model complex --loss softplus --out emb/complex
  # 1-N scoring (every (h, r) against all entities, inverse relations for heads) with cross-entropy:
  python scripts/train_kg_embeddings.py --kg kg_store/snapshot --model complex --training-loop lcwa \
      --loss crossentropy --label-smoothing 0.1 --out emb/complex_1n
  # also path-aware scoring (the model plus the training graph's path evidence, β chosen on validation):
  python scripts/train_kg_embeddings.py --config configs/emb/ptranse_nssa.yaml --kg kg_store/snapshot --path-aware \
      --out emb/ptranse_nssa

OUT holds the export (test metrics beside the popularity baseline's, and validation metrics: compare exports by
those; per-triple ranks for paired comparisons: scripts/compare_embeddings.py) and a checkpoint per epoch: the same command resumes, and once every epoch is done it only evaluates and
exports again (e.g. an export made before validation metrics were recorded gains them).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from kgutil.cli import FLAG_PREFIX, ConfigError, add_common_args, add_field_args, build_config, setup_logging
from kg.embeddings import EmbeddingConfig, model_names, train_embeddings
from kg.snapshot import SnapshotError

log = logging.getLogger("train_kg_embeddings")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", dest=FLAG_PREFIX + "model", choices=model_names(), metavar="MODEL",
                   help="any PyKEEN model (transe, transr, rotate, complex, distmult, …) or ptranse")
    add_field_args(p, EmbeddingConfig, ["kg", "out", "training_loop", "loss", "label_smoothing", "dim", "epochs",
                                        "batch_size", "lr", "seed", "device", "eval_max_triples", "path_aware",
                                        "resume", "progress"])
    add_common_args(p)
    args = p.parse_args(argv)
    setup_logging(args.log_level)
    try:
        config = build_config(EmbeddingConfig, args)
        result = train_embeddings(config)
    except (ConfigError, SnapshotError) as err:
        log.error("%s", err)
        return 2
    print(json.dumps({"model": config.model, "metrics": result.metrics, "mrr_ci95": result.mrr_ci95,
                      "versus_popularity": result.versus_popularity, "validation_metrics": result.validation_metrics,
                      "path_aware": result.path_aware, "seconds_per_epoch": result.seconds_per_epoch,
                      "out": str(result.out)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
