#!/usr/bin/env python
"""Train TransE, TransR or PTransE embeddings on a KG snapshot with PyKEEN; evaluate and export them.

Examples:
  python scripts/train_kg_embeddings.py --kg kg_store/snapshot --model ptranse --dim 100 --epochs 50 --out emb/ptranse
  python scripts/train_kg_embeddings.py --kg kg_store/snapshot --model transe --config configs/emb/transe.yaml
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from kgutil.cli import ConfigError, add_common_args, build_config, setup_logging
from kg.embeddings import EmbeddingConfig, model_names, train_embeddings
from kg.snapshot import SnapshotError

log = logging.getLogger("train_kg_embeddings")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kg", type=Path, help="snapshot directory")
    p.add_argument("--out", type=Path, help="output directory")
    p.add_argument("--model", choices=model_names(), metavar="MODEL",
                   help="any PyKEEN model (transe, transr, rotate, complex, distmult, …) or ptranse")
    p.add_argument("--loss", choices=["marginranking", "nssa"])
    p.add_argument("--dim", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto (default), cpu, cuda")
    p.add_argument("--eval-max-triples", type=int, help="evaluate on a seeded sample of the test split")
    p.add_argument("--no-resume", action="store_true", help="ignore OUT/checkpoint")
    p.add_argument("--no-progress", action="store_true")
    add_common_args(p)
    args = p.parse_args(argv)
    setup_logging(args.log_level)
    try:
        config = build_config(EmbeddingConfig, args, {
            "kg": args.kg, "out": args.out, "model": args.model, "loss": args.loss, "dim": args.dim, "epochs": args.epochs,
            "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed, "device": args.device,
            "eval_max_triples": args.eval_max_triples, "resume": False if args.no_resume else None,
            "progress": False if args.no_progress else None})
        result = train_embeddings(config)
    except (ConfigError, SnapshotError) as err:
        log.error("%s", err)
        return 2
    print(json.dumps({"model": config.model, "metrics": result.metrics,
                      "seconds_per_epoch": result.seconds_per_epoch, "out": str(result.out)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
