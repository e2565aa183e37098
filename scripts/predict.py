#!/usr/bin/env python
"""Answer one question about one passage, or every question of a file, with a trained kgmrc model.

Examples:
  python scripts/predict.py --model runs/base1/best --question "..." --passage "..." [--plot out.png] [--json]
  python scripts/predict.py --model runs/base1/best --data questions.json --out predictions.json
One question: prints the answer, the support sentence(s), the score, the n-best list and, for CMedBERT, the linked
entities with their attention weights. A file (SQuAD / CMedMRC layout; answers may be absent): writes
{question_id: {"answer", "support", "score", "categories", …}}, which evaluate.py --predictions scores.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from kgutil.cli import add_common_args, add_field_args, parse_config
from kgutil.device import resolve_device
from kgutil.html import write_page
from kgutil.io import atomic_write_text
from mrc.data import DataError, read_dataset
from mrc.inference import InferenceConfig, predict_saved_model
from mrc.model import load_model
from mrc.predict import plot_probabilities, predict_one

log = logging.getLogger("predict")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--question")
    what.add_argument("--data", type=Path, help="answer every question of this dataset file (with --out)")
    p.add_argument("--out", type=Path, help="with --data: the predictions file to write (JSON)")
    p.add_argument("--passage", help="passage text (or --passage-file)")
    p.add_argument("--passage-file", type=Path)
    p.add_argument("--plot", type=Path, help="write the start/end probability plot here (PNG)")
    p.add_argument("--html", type=Path, help="write a self-contained HTML view of the prediction here")
    p.add_argument("--json", action="store_true")
    add_field_args(p, InferenceConfig, ["model", "max_passage_chars", "batch_size", "index", "device"])
    add_common_args(p)
    args, cfg = parse_config(p, InferenceConfig, argv)
    if cfg.model is None:
        p.error("need --model (or model: in --config)")
    if args.data:
        if args.out is None:
            p.error("--data needs --out")
        return predict_file(args.data, args.out, cfg)
    try:
        passage = args.passage or (args.passage_file.read_text(encoding="utf-8") if args.passage_file else None)
    except (OSError, UnicodeDecodeError) as err:
        log.error("%s: %s", args.passage_file, err)
        return 2
    if not passage or not passage.strip() or not args.question.strip():
        p.error("need a non-empty --question and --passage (or --passage-file)")
    if cfg.max_passage_chars and len(passage) > cfg.max_passage_chars:
        log.warning("the passage has %d characters, over --max-passage-chars %d: it is read in many windows "
                    "and takes correspondingly long", len(passage), cfg.max_passage_chars)
    try:
        model, tokenizer, saved = load_model(cfg.model, cfg.settings)
        device = resolve_device(cfg.device)
        model.to(device)
        result = predict_one(model, tokenizer, saved, args.question, passage, device)
    except (FileNotFoundError, ValueError) as err:  # SnapshotError included: an index of another snapshot
        log.error("%s", err)
        return 2
    log.info("read %d windows", result["windows"])
    if args.plot:
        plot_probabilities(result, args.plot)
    if args.html:
        from mrc.html import render_prediction

        write_page(args.html, render_prediction(args.question, passage, result))
    if args.json:
        keys = ("answer", "score", "start", "end", "support", "support_sentences", "categories", "nbest", "entities",
                "windows", "sentence_weight")
        print(json.dumps({k: result[k] for k in keys}, ensure_ascii=False, indent=2))
        return 0
    w = result["sentence_weight"]
    rescored = f"; chosen among the {len(result['nbest'])} best by score + {w:g}·log p(sentence)" if w else ""
    print(f"answer:  {result['answer']}  (score {result['score']:.3f}{rescored})")
    print(f"support: {result['support']}")
    if result["categories"]:
        ranked = sorted(result["categories"].items(), key=lambda kv: -kv[1])
        print("categories: " + ", ".join(f"{c} {p:.2f}" for c, p in ranked))
    print(f"windows: {result['windows']}")
    for e in result["entities"]:
        print(f"entity:  {e['span']} → {e['entity']} ({e.get('type') or '-'}, {e['rule']}) "
              f"local attention {e['attention']:.3f}")
    for label, path in (("plot", args.plot), ("html", args.html)):
        if path:
            print(f"{label}:{' ' * (8 - len(label))}{path}")
    return 0


def predict_file(data: Path, out: Path, cfg: InferenceConfig) -> int:
    """Answer every question of ``data`` in batches and write the predictions to ``out`` (atomically)."""
    try:
        examples = read_dataset(data, labelled=False)
        if not examples:
            raise DataError(f"{data}: the dataset holds no questions")
        predictions, _ = predict_saved_model(cfg.model, examples, batch_size=cfg.batch_size, device=cfg.device,
                                             settings=cfg.settings, progress=True)
    except (DataError, FileNotFoundError, ValueError) as err:  # SnapshotError is a ValueError
        log.error("%s", err)
        return 2
    atomic_write_text(out, json.dumps(predictions, ensure_ascii=False, indent=1))
    answered = sum(bool(p["answer"]) for p in predictions.values())
    print(f"{len(predictions)} questions, {answered} answered: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
