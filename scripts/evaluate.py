#!/usr/bin/env python
"""Score an MRC model on a dataset, or score a predictions file like an official evaluation script.

Examples:
  python scripts/evaluate.py --model runs/base1/best --data held_out.json
  python scripts/evaluate.py --data held_out.json --predictions runs/base1/predictions.json [--metric cmrc]
  python scripts/evaluate.py --model runs/cmedbert/best --data held_out.json --no-knowledge   # entities masked
  python scripts/evaluate.py --model runs/cmedbert/best --data held_out.json --against baseline_predictions.json
Predictions: {question_id: answer_text} or {question_id: {"answer": ..., "support": ..., "categories": {...},
"start": ..., "end": ..., "nbest": [...]}} (the optional fields as predict.py writes them).
Prints answer EM/F1 and support EM/F1, overall and per question type and context type, and with --categories
the answer-category accuracy, micro/macro F1 and per-category figures. "errors" says where the answers go wrong
(mrc.error_profile): exact, too long, too short, crossing, the right sentence but other words, another sentence,
none; and, from the n-best candidates a model's predictions carry, how often an exact answer is among the k best.
One metric scores the whole dataset: CMRC 2018 (official script's logic) for a Chinese dataset, SQuAD for an
English one (--metric overrides).
--against REFERENCE (a predictions file, e.g. predict.py --data … --out of another model) adds "paired": the mean
per-question difference (this − reference, ×100) of each score with its 95% bootstrap CI over questions, and a
verdict line; one run a side holds no training-seed variance (bench/mrc_cv.py averages seeds before pairing).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from kgutil.cli import FLAG_PREFIX, add_common_args, add_field_args, parse_config
from kgutil.io import atomic_write_text
from kgutil.html import write_page
from mrc.categories import CategoryLabels, attach_labels
from mrc.crossval import paired_difference
from mrc.cv_report import verdicts
from mrc.data import DataError, read_dataset, read_predictions
from mrc.error_profile import error_profile, locate, summary_line
from mrc.inference import InferenceConfig
from mrc.metrics import evaluate_predictions

log = logging.getLogger("evaluate")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="dataset file (SQuAD / CMedMRC layout)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", dest=FLAG_PREFIX + "model", type=Path, metavar="MODEL", help="kgmrc model directory")
    src.add_argument("--predictions", type=Path, help="predictions JSON file")
    p.add_argument("--out", type=Path, help="also write the metrics (and predictions) here")
    p.add_argument("--html", type=Path, help="write an HTML report (scores by type, every question) here")
    p.add_argument("--against", type=Path, metavar="REFERENCE",
                   help="reference predictions file: paired per-question differences with 95%% CIs")
    add_field_args(p, InferenceConfig, ["metric", "categories", "batch_size", "index", "knowledge", "device"])
    add_common_args(p)
    args, cfg = parse_config(p, InferenceConfig, argv)
    try:
        examples = read_dataset(args.data)
        if not examples:
            raise DataError(f"{args.data}: the dataset holds no questions")
        if cfg.categories is not None:
            found = attach_labels(examples, CategoryLabels.read(cfg.categories))
            log.info("answer-category labels for %d of %d questions", found, len(examples))
        # the reference first: a bad one fails before a model is run
        reference = (evaluate_predictions(examples, read_predictions(args.against), cfg.metric, per_question=True)
                     if args.against else None)
        if reference is not None and reference["missing_predictions"] == len(examples):
            raise DataError(f"{args.against}: predicts none of the {len(examples)} questions of {args.data}")
        if args.predictions:
            predictions = read_predictions(args.predictions)
            metrics = evaluate_predictions(examples, predictions, cfg.metric, per_question=True)
        else:
            from mrc.inference import evaluate_saved_model

            metrics, predictions = evaluate_saved_model(cfg.model, examples, metric=cfg.metric,
                                                        batch_size=cfg.batch_size, device=cfg.device,
                                                        per_question=True, settings=cfg.settings)
    except (DataError, FileNotFoundError, ValueError) as err:  # SnapshotError is a ValueError
        log.error("%s", err)
        return 2
    if unknown := metrics["unknown_predictions"]:
        log.warning("%d prediction ids are not in %s (first: %s)", len(unknown), args.data, ", ".join(unknown[:5]))
    scores = metrics.pop("questions")
    metrics["errors"] = error_profile(examples, predictions, metrics["metric"])
    log.info("%s", summary_line(metrics["errors"]))
    if reference is not None:
        name = str(cfg.model or args.predictions)
        if missing := reference["missing_predictions"]:
            log.warning("%s has no prediction for %d questions: they score 0 there", args.against, missing)
        one_run = "0/0"  # fold/seed: one run a side
        metrics["paired"] = {**paired_difference({one_run: {"questions": scores}},
                                                 {one_run: {"questions": reference["questions"]}}, rounds=10_000),
                             "against": str(args.against)}
        for line in verdicts({"paired": {name: metrics["paired"]}}):
            log.info("%s", line)
    if args.html:
        from mrc.html import render_report

        located = {ex.id: locate(ex.context, predictions.get(ex.id, {})) for ex in examples}
        write_page(args.html, render_report(examples, located, {**metrics, "questions": scores},
                                            title=str(cfg.model or args.predictions)))
        log.info("wrote %s", args.html)
    print(json.dumps(metrics, ensure_ascii=False, indent=2))
    if args.out:
        atomic_write_text(args.out / "metrics.json", json.dumps(metrics, ensure_ascii=False, indent=2))
        if cfg.model:
            atomic_write_text(args.out / "predictions.json", json.dumps(predictions, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
