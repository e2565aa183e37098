#!/usr/bin/env python
"""What a trained fusion model's knowledge contributes: each recorded cross-validation run of a CMedBERT variant
scored again on its own test fold with every entity masked (``fusion.knowledge: false``, the same model on an
empty KG), and paired with its recorded scores question by question.

  python bench/knowledge_ablation.py --config configs/cv/fusion_cv.yaml                 # every fusion variant
  python bench/knowledge_ablation.py --config configs/cv/fusion_cv.yaml --variants cmedbert_exact_links

Needs the runs' model directories (``OUT/VARIANT/foldF_seedS/best`` of the config) and their records
(``bench/results/NAME.runs.json``, NAME the config's stem). Writes ``bench/results/NAME_knowledge_ablation.json``:
per variant the figures with and without knowledge, the paired difference (with − without) with its 95% bootstrap
CI, and how many questions' answers changed; the masked runs' per-question scores go to
``NAME_knowledge_ablation.masked.json`` (a second invocation resumes; not ``*.runs.json``, so that no protocol takes
a masked run for the run of the same config). A difference near 0 with few changed answers says the model does not
read its entities.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from bench.common import RESULTS, parse_cv_args, write_result
from kgutil.io import atomic_write_text
from mrc.crossval import CVConfig, run_config, run_hash, summarize, verdicts
from mrc.inference import evaluate_saved_model
from mrc.train import load_examples

log = logging.getLogger("knowledge_ablation")


def output_paths(config_path: Path, results: Path = RESULTS) -> tuple[str, Path]:
    """The result name of the ablation of the protocol ``config_path`` and the file of its masked runs."""
    name = f"{config_path.stem}_knowledge_ablation"
    return name, results / f"{name}.masked.json"


def masked_run(config: CVConfig, variant: str, key: str) -> dict[str, Any] | None:
    """The per-question test scores of run ``key`` (fold/seed) of ``variant`` with every entity masked, or None
    when its model directory is gone."""
    fold, seed = map(int, key.split("/"))
    run = run_config(config, variant, fold, seed)
    if not (run.out / "best").exists():
        log.warning("%s, fold %d, seed %d: no model at %s; left out", variant, fold, seed, run.out / "best")
        return None
    metrics, _ = evaluate_saved_model(run.out / "best", load_examples(run).test, metric=run.metric,
                                      batch_size=run.eval_batch_size, device=run.device, per_question=True,
                                      settings={"knowledge": False})
    return {"config_hash": run_hash(run), "overall": metrics["overall"], "questions": metrics.pop("questions")}


def compare(recorded: dict[str, Any], masked: dict[str, Any], variant: str, config: CVConfig) -> dict[str, Any]:
    """Figures with and without knowledge on the runs both have, their paired difference, changed answers."""
    with_ = {key: recorded[key] for key in masked if key in recorded}
    without = f"{variant}_without_knowledge"
    summary = summarize({variant: with_, without: masked}, config.model_copy(update={"reference": without,
                                                                                     "pairs": []}))
    for line in verdicts(summary):
        print(line)
    changed = sum(abs(run["questions"][q]["f1"] - masked[key]["questions"][q]["f1"]) > 1e-9
                  for key, run in with_.items() for q in run["questions"])
    return {"with": summary["variants"][variant], "without": summary["variants"][without],
            "paired": summary["paired"][variant], "answers_changed": changed,
            "questions_scored": sum(len(run["questions"]) for run in with_.values())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", help="only these variants (default: every recorded CMedBERT variant)")
    args, config = parse_cv_args(p, argv)
    if config is None:
        return 2
    records_path = RESULTS / f"{args.config.stem}.runs.json"
    if not records_path.exists():
        log.error("%s: no recorded runs; run bench/mrc_cv.py --config %s first", records_path, args.config)
        return 2
    records = json.loads(records_path.read_text(encoding="utf-8"))
    fused = [v for v in config.variants if v in records and
             run_config(config, v, 0, config.seeds[0]).model.model_type != "baseline"]
    unknown = sorted(set(args.variants or []) - set(fused))
    if unknown:
        log.error("not a recorded fusion variant of %s: %s (recorded: %s)", args.config, ", ".join(unknown),
                  ", ".join(fused))
        return 2
    name, masked_path = output_paths(args.config)
    masked = json.loads(masked_path.read_text(encoding="utf-8")) if masked_path.exists() else {}
    for variant in args.variants or fused:
        done = masked.setdefault(variant, {})
        for key, run in records[variant].items():
            if done.get(key, {}).get("config_hash") != run["config_hash"]:
                log.info("%s, run %s: scoring with every entity masked", variant, key)
                if (scores := masked_run(config, variant, key)) is None:
                    continue
                done[key] = scores
                atomic_write_text(masked_path, json.dumps(masked, ensure_ascii=False))
    figures = {variant: compare(records[variant], masked[variant], variant, config)
               for variant in fused if masked.get(variant)}
    write_result(name, {"config": str(args.config), "variants": figures})
    return 0


if __name__ == "__main__":
    sys.exit(main())
