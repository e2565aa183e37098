#!/usr/bin/env python
"""Score an MRC model on a dataset, or score a predictions file like an official evaluation script.

Examples:
  python scripts/evaluate.py --model runs/base1/best --data held_out.json
  python scripts/evaluate.py --data held_out.json --predictions runs/base1/predictions.json
Predictions: {question_id: answer_text} or {question_id: {"answer": ..., "support": ...}}.
Prints answer EM/F1 (CMRC 2018 style for Chinese, SQuAD for English) and support EM/F1, overall and per
question type and context type.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from kg.cli import setup_logging
from kg.embeddings import resolve_device
from mrc.data import DataError, read_dataset
from mrc.features import FeatureConfig, prepare_features
from mrc.metrics import evaluate_predictions
from mrc.model import load_model
from mrc.train import TrainConfig, evaluate_model

log = logging.getLogger("evaluate")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="dataset file (SQuAD / CMedMRC layout)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", type=Path, help="kgmrc model directory")
    src.add_argument("--predictions", type=Path, help="predictions JSON file")
    p.add_argument("--out", type=Path, help="also write the metrics (and predictions) here")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="auto")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    setup_logging(args.log_level)
    try:
        examples = read_dataset(args.data)
        if args.predictions:
            try:
                predictions = json.loads(args.predictions.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise DataError(f"{args.predictions}: invalid JSON at line {err.lineno}: {err.msg}") from err
            if not isinstance(predictions, dict):
                raise DataError(f"{args.predictions}: expected an object keyed by question id")
            metrics = evaluate_predictions(examples, predictions)
        else:
            model, tokenizer, saved = load_model(args.model)
            device = resolve_device(args.device)
            model.to(device)
            features_cfg = FeatureConfig.model_validate(saved.get("features", {}))
            features = prepare_features(examples, tokenizer, features_cfg)
            model.attach_inputs(features, examples, tokenizer)
            config = TrainConfig(eval_batch_size=args.batch_size, features=features_cfg,
                                 max_answer_length=saved.get("max_answer_length", 100))
            metrics, predictions_obj, _ = evaluate_model(model, tokenizer, examples, features, config=config,
                                                         device=device,
                                                         support_threshold=saved.get("support_threshold", 0.5))
            predictions = {k: v.as_dict() for k, v in predictions_obj.items()}
    except (DataError, FileNotFoundError, ValueError) as err:
        log.error("%s", err)
        return 2
    print(json.dumps(metrics, ensure_ascii=False, indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "metrics.json").write_text(json.dumps(metrics, ensure_ascii=False, indent=2), encoding="utf-8")
        if args.model:
            (args.out / "predictions.json").write_text(json.dumps(predictions, ensure_ascii=False, indent=1),
                                                       encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
