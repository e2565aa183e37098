#!/usr/bin/env python
"""Train an MRC model (baseline multi-task or CMedBERT). With no recipe flags it trains the recipe of record:
1 epoch of CMRC 2018 (intermediate stage), then 8 medical epochs, lr 1e-4, 30% answerless windows, λ = 0.25,
windows 384/128; epoch and support threshold are chosen on a validation share of the passages.

Examples:
  python scripts/train_mrc.py --train ../shared/data/cmedmrc/dev.json --out runs/base      # a final model
  python scripts/train_mrc.py --train ../shared/data/cmedmrc/dev.json --fold 0 --out runs/base_f0   # + test fold 0
  python scripts/train_mrc.py --model-type cmedbert --index idx/ --embeddings emb/transe \\
      --train ../shared/data/cmedmrc/dev.json --intermediate-cache runs/cmrc --out runs/cmed
  python scripts/train_mrc.py --train ../shared/data/cmedmrc/dev.json --category-head \\
      --categories dev.categories.json --out runs/joint           # + answer categories (label_categories.py)
  python scripts/train_mrc.py --train my_squad.json --intermediate-epochs 0 --metric squad --out runs/en
Every flag is a field of mrc.train.TrainConfig (see --config / --set for the others).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from pydantic import BaseModel

from kgutil.cli import FLAG_PREFIX, ConfigError, add_common_args, add_field_args, build_config, setup_logging
from kg.snapshot import SnapshotError
from mrc.data import DataError
from mrc.registry import family_names, model_class
from mrc.train import TrainConfig, train_mrc

log = logging.getLogger("train_mrc")

FLAGS = {
    "encoder": "encoder", "init_from": "init_from", "train": "train", "validation": "validation",
    "fold": "split.fold", "folds": "split.folds", "validation_share": "split.validation_share",
    "split_seed": "split.seed", "intermediate": "intermediate.data", "intermediate_epochs": "intermediate.epochs",
    "intermediate_cache": "intermediate.cache", "intermediate_mix": "intermediate.mix", "out": "out", "seed": "seed",
    "epochs": "epochs", "batch_size": "batch_size", "grad_accum": "grad_accum", "lr": "lr", "head_lr": "head_lr",
    "knowledge_lr": "knowledge_lr",
    "warmup_ratio": "warmup_ratio", "max_seq_length": "features.max_seq_length",
    "doc_stride": "features.doc_stride", "negative_windows": "negative_windows", "metric": "metric",
    "support_weight": "model.support_weight", "answer_weight": "model.answer_weight",
    "question_boundary": "model.question_boundary", "boundary_radius": "model.boundary_radius",
    "boundary_dropout": "model.boundary_dropout", "device": "device",
    "precision": "precision", "resume": "resume", "progress": "progress", "selection": "selection",
    "pvi": "pvi", "pvi_threshold": "pvi_threshold", "test": "test", "sentence_weights": "sentence_weights",
}
CATEGORY_FLAGS = {"categories": "categories", "category_weight": "model.category_weight",
                  "category_pooling": "model.category_pooling", "category_hidden": "model.category_hidden",
                  "category_lr": "category_lr", "category_oversample": "category_oversample"}


def add_family_args(p: argparse.ArgumentParser) -> None:
    """The settings of each registered model family with settings (CMedBERT's fusion), as flags."""
    for name in family_names():
        settings: type[BaseModel] | None = model_class(name).settings
        if settings is not None:
            group = p.add_argument_group(f"{name} (--model-type {name})")
            add_field_args(group, settings, [f for f, info in settings.model_fields.items()
                                             if "dict" not in str(info.annotation) and f != "snapshot_checksum"],
                           prefix="model.fusion.")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-type", dest=FLAG_PREFIX + "model.model_type", choices=family_names(),
                   help="model family (registry: mrc.registry)")
    add_field_args(p, TrainConfig, FLAGS)
    group = p.add_argument_group("answer categories (Clinical QA 2.0)")
    group.add_argument("--category-head", action="store_true",
                       help="train the answer-category head (needs --categories)")
    add_field_args(group, TrainConfig, CATEGORY_FLAGS)
    add_family_args(p)
    add_common_args(p)
    args = p.parse_args(argv)
    setup_logging(args.log_level)
    try:
        config = build_config(TrainConfig, args)
        if args.category_head and config.categories is None:
            raise ConfigError("--category-head needs --categories FILE (scripts/label_categories.py writes one)")
        result = train_mrc(config)
    except (ConfigError, DataError, SnapshotError, ValueError) as err:
        log.error("%s", err)
        return 2
    print(json.dumps({"out": str(result.out), "validation": result.best_metrics.get("overall"),
                      "test": (result.test_metrics or {}).get("overall")}, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
