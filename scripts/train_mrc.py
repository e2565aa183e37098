#!/usr/bin/env python
"""Train an MRC model (baseline multi-task or CMedBERT). With no recipe flags it trains the recipe of record:
1 epoch of CMRC 2018 (intermediate stage), then 4 medical epochs, lr 1e-4, 30% answerless windows, λ = 0.5,
windows 384/128; epoch and support threshold are chosen on a validation share of the passages.

Examples:
  python scripts/train_mrc.py --train ../shared/data/cmedmrc/dev.json --out runs/base      # a final model
  python scripts/train_mrc.py --train ../shared/data/cmedmrc/dev.json --fold 0 --out runs/base_f0   # + test fold 0
  python scripts/train_mrc.py --model-type cmedbert --index idx/ --embeddings emb/transe \
      --train ../shared/data/cmedmrc/dev.json --intermediate-cache runs/cmrc --out runs/cmed
  python scripts/train_mrc.py --train my_squad.json --intermediate-epochs 0 --metric squad --out runs/en
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from kgutil.cli import ConfigError, add_common_args, build_config, setup_logging
from kg.snapshot import SnapshotError
from mrc.data import DataError
from mrc.registry import family_names
from mrc.train import TrainConfig, train_mrc

log = logging.getLogger("train_mrc")


def add_fusion_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("CMedBERT (--model-type cmedbert)")
    g.add_argument("--index", type=Path, help="entity index directory (build_entity_index.py)")
    g.add_argument("--embeddings", type=Path, help="KG embeddings directory (train_kg_embeddings.py)")
    g.add_argument("--tune-entities", action="store_true", help="fine-tune the entity embeddings")
    g.add_argument("--no-local", action="store_true", help="ablation: no local (token→entities) attention")
    g.add_argument("--no-global", action="store_true", help="ablation: no global ([CLS]→entities) attention")
    g.add_argument("--no-dynamic-lambda", action="store_true", help="ablation: fixed λ instead of dynamic λ")
    g.add_argument("--loops", type=int, help="gated-loop iterations L")


def fusion_flags(args: argparse.Namespace) -> dict[str, object]:
    return {"model.fusion.index": str(args.index) if args.index else None,
            "model.fusion.embeddings": str(args.embeddings) if args.embeddings else None,
            "model.fusion.tune_entities": args.tune_entities or None,
            "model.fusion.local": False if args.no_local else None,
            "model.fusion.global_": False if args.no_global else None,
            "model.fusion.dynamic_lambda": False if args.no_dynamic_lambda else None,
            "model.fusion.loops": args.loops}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-type", choices=family_names(), help="model family (registry: mrc.registry)")
    p.add_argument("--encoder", help="Hugging Face encoder name or path")
    p.add_argument("--init-from", type=Path, help="kgmrc model directory to start from")
    p.add_argument("--train", nargs="+", type=Path, help="training files (SQuAD / CMedMRC layout)")
    p.add_argument("--validation", type=Path, help="validation file (instead of a validation share)")
    p.add_argument("--fold", type=int, help="hold this fold out as the test part (cross-validation by passage)")
    p.add_argument("--folds", type=int, help="number of folds (default 5)")
    p.add_argument("--validation-share", type=float, help="share of the other passages that chooses epoch and τ")
    p.add_argument("--split-seed", type=int, help="seed of the passage split (default 0, the same for every --seed)")
    p.add_argument("--intermediate", nargs="+", type=Path, help="intermediate-stage data (default CMRC 2018)")
    p.add_argument("--intermediate-epochs", type=int, help="epochs of the intermediate stage (0: skip it)")
    p.add_argument("--intermediate-cache", type=Path, help="reuse the intermediate model kept here")
    p.add_argument("--out", type=Path, help="run directory")
    p.add_argument("--seed", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--max-seq-length", type=int)
    p.add_argument("--doc-stride", type=int)
    p.add_argument("--negative-windows", type=float, help="share of answerless windows kept for training")
    p.add_argument("--metric", choices=["auto", "cmrc", "squad"], help="auto: CMRC 2018 for Chinese data")
    p.add_argument("--support-weight", type=float, help="λ of the baseline")
    p.add_argument("--device", help="auto (default), cpu, cuda")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"],
                   help="bf16 autocast (GPUs, CPUs with AVX512-BF16/AMX); fp16 autocast + gradient scaler (CUDA)")
    p.add_argument("--grad-accum", type=int, help="micro-batches per optimiser step")
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    add_fusion_args(p)
    add_common_args(p)
    args = p.parse_args(argv)
    setup_logging(args.log_level)
    try:
        config = build_config(TrainConfig, args, {
            "model.model_type": args.model_type, "encoder": args.encoder, "init_from": args.init_from,
            "train": args.train, "validation": args.validation, "split.fold": args.fold, "split.folds": args.folds,
            "split.validation_share": args.validation_share, "split.seed": args.split_seed,
            "intermediate.data": args.intermediate, "intermediate.epochs": args.intermediate_epochs,
            "intermediate.cache": args.intermediate_cache, "negative_windows": args.negative_windows,
            "metric": args.metric,
            "out": args.out, "seed": args.seed, "epochs": args.epochs, "batch_size": args.batch_size,
            "grad_accum": args.grad_accum, "lr": args.lr, "features.max_seq_length": args.max_seq_length, "features.doc_stride": args.doc_stride,
            "model.support_weight": args.support_weight, "device": args.device, "precision": args.precision,
            "resume": False if args.no_resume else None, "progress": False if args.no_progress else None,
            **fusion_flags(args)})
        result = train_mrc(config)
    except (ConfigError, DataError, SnapshotError, ValueError) as err:
        log.error("%s", err)
        return 2
    print(json.dumps({"out": str(result.out), "validation": result.best_metrics.get("overall"),
                      "test": (result.test_metrics or {}).get("overall")}, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
