#!/usr/bin/env python
"""What a trained fusion model's knowledge contributes: each recorded cross-validation run of a CMedBERT variant
scored again on its own test fold with every entity masked (``fusion.knowledge: false``, the same model on an
empty KG), and paired with its recorded scores question by question. ``--control KEY=VALUE`` scores them again with
these fusion settings instead (e.g. ``entity_boundary_anchor=2``: the boundary head anchored on the second-ranked
entity instead of the top-ranked one — whether the KG's ranking, not any entity, is what the model reads).

  python bench/knowledge_ablation.py --config configs/cv/fusion_cv.yaml                 # every fusion variant
  python bench/knowledge_ablation.py --config configs/cv/fusion_cv.yaml --variants cmedbert_exact_links
  python bench/knowledge_ablation.py --config configs/cv/fusion_pvi_half.yaml --variants cmedbert_entity_boundary \
      --control entity_boundary_anchor=2                        → bench/results/fusion_pvi_half_control_…json

Needs the runs' model directories (``OUT/VARIANT/foldF_seedS/best`` of the config) and their records
(``bench/results/NAME.runs.json``, NAME the config's stem). Writes ``bench/results/NAME_knowledge_ablation.json``:
per variant the figures with and without knowledge, the paired difference (with − without) with its 95% bootstrap
CI, how many questions' answers changed, and the masked runs against the config's reference (``without_vs_reference``:
what the variant's training gives with its knowledge masked at inference); the masked runs' per-question scores go to
``NAME_knowledge_ablation.masked.json`` (a second invocation resumes; not ``*.runs.json``, so that no protocol takes
a masked run for the run of the same config); a control writes ``NAME_control_KEY-VALUE.json`` and its
``.masked.json``. A difference near 0 with few changed answers says the model does not read its entities.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bench.common import RESULTS, parse_cv_args, write_result
from kgutil.io import atomic_write_text
from mrc.crossval import CVConfig, paired_difference, run_config, run_hash, summarize
from mrc.cv_report import verdicts
from mrc.inference import evaluate_saved_model
from mrc.registry import model_class
from mrc.train import load_examples

log = logging.getLogger("knowledge_ablation")


MASKED = {"knowledge": False}


def output_paths(config_path: Path, results: Path = RESULTS, settings: dict[str, Any] = MASKED) -> tuple[str, Path]:
    """The result name of the ablation (``settings``: every entity masked, or a control) of the protocol
    ``config_path`` and the file of its runs scored again."""
    name = f"{config_path.stem}_knowledge_ablation" if settings == MASKED else \
        f"{config_path.stem}_control_" + "_".join(f"{k}-{v}" for k, v in sorted(settings.items()))
    return name, results / f"{name}.masked.json"


def parse_control(items: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` fusion settings (VALUE read as JSON, else a string); none: every entity masked."""
    if not items:
        return MASKED
    settings = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--control {item!r}: expected KEY=VALUE, e.g. entity_boundary_anchor=2")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    return settings


def masked_run(config: CVConfig, variant: str, key: str, settings: dict[str, Any] = MASKED
               ) -> dict[str, Any] | None:
    """The per-question test scores of run ``key`` (fold/seed) of ``variant`` with every entity masked (or other
    fusion ``settings``), or None when its model directory is gone."""
    fold, seed = map(int, key.split("/"))
    run = run_config(config, variant, fold, seed)
    if not (run.out / "best").exists():
        log.warning("%s, fold %d, seed %d: no model at %s; left out", variant, fold, seed, run.out / "best")
        return None
    metrics, _ = evaluate_saved_model(run.out / "best", load_examples(run).test, metric=run.metric,
                                      batch_size=run.eval_batch_size, device=run.device, per_question=True,
                                      settings=settings)
    return {"config_hash": run_hash(run), "overall": metrics["overall"], "questions": metrics.pop("questions")}


def compare(recorded: dict[str, Any], masked: dict[str, Any], variant: str, config: CVConfig,
            label: str = "without_knowledge", reference: dict[str, Any] | None = None) -> dict[str, Any]:
    """Figures with and without knowledge (or under a control) on the runs both have, their paired difference
    (as recorded − again), changed answers; with the ``reference`` variant's recorded runs, also the masked runs
    against it (what the variant's training gives without its knowledge at inference)."""
    with_ = {key: recorded[key] for key in masked if key in recorded}
    without = f"{variant}_{label}"
    summary = summarize({variant: with_, without: masked}, config.model_copy(update={"reference": without,
                                                                                     "pairs": []}))
    against = None   # paired on the runs and questions both have
    if reference is not None and config.reference != variant and (
            entry := paired_difference(masked, reference, config.bootstrap)):
        against = summary["paired"][without] = {**entry, "against": config.reference}
    for line in verdicts(summary):
        print(line)
    changed = sum(abs(run["questions"][q]["f1"] - masked[key]["questions"][q]["f1"]) > 1e-9
                  for key, run in with_.items() for q in run["questions"])
    figures = {"with": summary["variants"][variant], "without": summary["variants"][without],
               "paired": summary["paired"][variant], "answers_changed": changed,
               "questions_scored": sum(len(run["questions"]) for run in with_.values())}
    if against is not None:
        figures["without_vs_reference"] = against
    return figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", help="only these variants (default: every recorded CMedBERT variant)")
    p.add_argument("--control", nargs="+", metavar="KEY=VALUE",
                   help="score with these fusion settings instead of masking every entity")
    args, config = parse_cv_args(p, argv)
    if config is None:
        return 2
    try:
        settings = parse_control(args.control)
    except ValueError as err:
        log.error("%s", err)
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
    for variant in args.variants or fused:  # a control's settings must hold for each model before any scoring
        run = run_config(config, variant, 0, config.seeds[0])
        try:
            model_class(run.model.model_type).settings.model_validate({**run.model.fusion, **settings})
        except ValidationError as err:
            log.error("--control %s: not valid for %s: %s", settings, variant, err.errors()[0]["msg"])
            return 2
    name, masked_path = output_paths(args.config, settings=settings)
    masked = json.loads(masked_path.read_text(encoding="utf-8")) if masked_path.exists() else {}
    for variant in args.variants or fused:
        done = masked.setdefault(variant, {})
        for key, run in records[variant].items():
            if done.get(key, {}).get("config_hash") != run["config_hash"]:
                log.info("%s, run %s: scoring with %s", variant, key, settings)
                if (scores := masked_run(config, variant, key, settings)) is None:
                    continue
                done[key] = scores
                atomic_write_text(masked_path, json.dumps(masked, ensure_ascii=False))
    label = "without_knowledge" if settings == MASKED else "control"
    reference = records.get(config.reference)
    figures = {variant: compare(records[variant], masked[variant], variant, config, label, reference)
               for variant in fused if masked.get(variant)}
    write_result(name, {"config": str(args.config), "settings": settings, "variants": figures})
    return 0


if __name__ == "__main__":
    sys.exit(main())
