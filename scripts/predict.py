#!/usr/bin/env python
"""Answer one question about one passage with a trained kgmrc model.

Example:
  python scripts/predict.py --model runs/base1/best --question "..." --passage "..." [--plot out.png] [--json]
Prints the answer, the support sentence(s), the score, the n-best list and, for CMedBERT, the linked entities
with their attention weights.
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
from mrc.inference import InferenceConfig
from mrc.model import load_model
from mrc.predict import plot_probabilities, predict_one

log = logging.getLogger("predict")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--question", required=True)
    p.add_argument("--passage", help="passage text (or --passage-file)")
    p.add_argument("--passage-file", type=Path)
    p.add_argument("--plot", type=Path, help="write the start/end probability plot here (PNG)")
    p.add_argument("--html", type=Path, help="write a self-contained HTML view of the prediction here")
    p.add_argument("--json", action="store_true")
    add_field_args(p, InferenceConfig, ["model", "max_passage_chars", "index", "device"])
    add_common_args(p)
    args, cfg = parse_config(p, InferenceConfig, argv)
    try:
        passage = args.passage or (args.passage_file.read_text(encoding="utf-8") if args.passage_file else None)
    except (OSError, UnicodeDecodeError) as err:
        log.error("%s: %s", args.passage_file, err)
        return 2
    if not passage or not passage.strip() or not args.question.strip():
        p.error("need a non-empty --question and --passage (or --passage-file)")
    if cfg.model is None:
        p.error("need --model (or model: in --config)")
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
                "windows")
        print(json.dumps({k: result[k] for k in keys}, ensure_ascii=False, indent=2))
        return 0
    print(f"answer:  {result['answer']}  (score {result['score']:.3f})")
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


if __name__ == "__main__":
    sys.exit(main())
