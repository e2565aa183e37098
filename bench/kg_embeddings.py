#!/usr/bin/env python
"""TransE vs TransR vs PTransE on one split of a KG snapshot (default: the xywy disease KG).

Same split, dim and epochs for every model, each trained in a fresh process so that its peak RSS is its own.
Reports filtered MRR (with a 95% bootstrap CI over test triples), Hits@1/3/10 beside the relation-conditional
popularity baseline on the same test triples (the MRR ratio with its paired CI; PTransE − TransE likewise),
the validation MRR (``best_by_validation``: the model a choice would take, the test split unread),
seconds per epoch, peak RSS, and PCRA path-extraction time and peak memory (a process that only extracts paths).
Targets (2 cores): TransE ≤ 40 s/epoch at dim 100; PTransE epoch ≤ 3× TransE; PTransE MRR ≥ TransE MRR; path
extraction and PTransE training under 4 GB on xywy, under 12 GB on CMeKG.

  python bench/kg_embeddings.py                                           # xywy: TransE, TransR, PTransE
  python bench/kg_embeddings.py --models transe ptranse ptranse3          # ptranse3: paths of up to 3 steps
  python bench/kg_embeddings.py --snapshot CMEKG/snapshot --epochs 6 --models transe ptranse --name kg_embeddings_cmekg
  python bench/kg_embeddings.py --models transe ptranse --model-config transe_nssa=configs/emb/transe_nssa.yaml
  python bench/kg_embeddings.py --snapshot CMEKG/snapshot --models --name kg_embeddings_cmekg --set batch_size=4096 \
      --model-config transe_nssa=configs/emb/transe_nssa.yaml ptranse_nssa=configs/emb/ptranse_nssa.yaml
  python bench/kg_embeddings.py … --set path_aware=true     # also each model's path-aware scoring (β on validation)

``--model-config NAME=FILE`` adds a model trained with a train_kg_embeddings.py config of its own (e.g. a tuned
``best.yaml``; its dimension and epochs, not ``--dim``/``--epochs``). ``--set KEY=VALUE`` overrides a setting of
every model (e.g. ``batch_size=4096`` on CMeKG, where a dense Adam step over its ~137k entities per batch of 1,024
makes an epoch 3× slower).
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.common import SHARED, build_snapshot, write_result
from kg import arcadedb
from kgutil.cli import read_config_file, setup_logging
from kg.embeddings import EmbeddingConfig, train_embeddings
from kg.embeddings.compare import compare_exports


ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {"ptranse3": ("ptranse", {"path_max_length": 3})}  # bench names beyond the registry's: (model, settings)


def paths_peak_rss_mb(snapshot: Path, max_length: int) -> int:
    """Peak RSS of a fresh process that loads the snapshot, splits it and extracts the PCRA paths."""
    code = ("import sys, resource\nfrom kg.snapshot import Snapshot\nfrom kg.embeddings import split_snapshot\n"
            "from kg.embeddings.pcra import extract_paths\ns = Snapshot.load(sys.argv[1])\n"
            "train = split_snapshot(s, (0.8, 0.1, 0.1), 42)[0]\n"
            "extract_paths(train.mapped_triples.numpy(), s.num_entities, s.num_relations, progress=False,\n"
            f"              max_length={max_length})\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)\n")
    out = subprocess.run([sys.executable, "-c", code, str(snapshot)], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    return int(out.stdout.split()[-1])


def train_in_fresh_process(config: EmbeddingConfig) -> dict:
    """Train one model in a new process (``--worker``, the config as JSON on stdin): its figures and peak RSS."""
    out = subprocess.run([sys.executable, "-m", "bench.kg_embeddings", "--worker"], input=config.model_dump_json(),
                         stdout=subprocess.PIPE, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.splitlines()[-1])


def worker() -> None:
    """Train the EmbeddingConfig read from stdin; print one JSON line of figures."""
    t0 = time.perf_counter()
    result = train_embeddings(EmbeddingConfig.model_validate_json(sys.stdin.read()))
    figures = {**{k: round(v, 4) for k, v in result.metrics.items()},
               "validation_mrr": round(result.validation_metrics["mrr"], 4),
               "seconds_per_epoch": round(result.seconds_per_epoch, 2),
               "total_seconds": round(time.perf_counter() - t0, 1), "final_loss": round(result.losses[-1], 4),
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
               "mrr_ci95": result.mrr_ci95, "popularity_ratio": result.versus_popularity["mrr_ratio"],
               "popularity_ratio_ci95": result.versus_popularity["mrr_ratio_ci95"],
               "popularity": {k: round(v, 4) for k, v in (result.popularity or {}).items()}}
    if result.path_aware:
        pa = result.path_aware
        figures["path_aware"] = {"beta": pa["beta"], "mrr": round(pa["metrics"]["mrr"], 4),
                                 "hits@10": round(pa["metrics"]["hits@10"], 4), "mrr_ci95": pa["mrr_ci95"],
                                 "validation_mrr": round(pa["validation_metrics"]["mrr"], 4),
                                 "minus_model_mrr": pa["versus_model"]["mrr_diff"],
                                 "minus_model_mrr_ci95": pa["versus_model"]["mrr_diff_ci95"],
                                 "popularity_ratio": pa["versus_popularity"]["mrr_ratio"],
                                 "popularity_ratio_ci95": pa["versus_popularity"]["mrr_ratio_ci95"]}
    if result.config.model == "ptranse":
        figures.update(path_seconds=round(result.path_seconds, 1),
                       path_stats={k: round(v, 4) for k, v in result.path_stats.items()})
    print(json.dumps(figures))


def ptranse_vs_transe(results: dict[str, dict], exports: Path) -> dict[str, dict]:
    """Each PTransE run against the TransE run of the same settings (ptranse, ptranse3 → transe; ptranse_X →
    transe_X): epoch-time ratio and the paired MRR difference on the same test triples, with its 95% CI; with
    path-aware scoring also PTransE's path-aware scoring against TransE alone."""
    pairs = {name: re.sub(r"^ptranse\d*", "transe", name) for name in results if name.startswith("ptranse")}
    pairs = {p: t for p, t in pairs.items() if t in results}
    versus = {p: compare_exports(exports / t, exports / p) for p, t in pairs.items()}
    figures = {"ptranse_epoch_ratio": {p: round(results[p]["seconds_per_epoch"] / results[t]["seconds_per_epoch"], 2)
                                       for p, t in pairs.items()},
               "ptranse_minus_transe_mrr": {p: v["mrr_diff"] for p, v in versus.items()},
               "ptranse_minus_transe_mrr_ci95": {p: v["mrr_diff_ci95"] for p, v in versus.items()}}
    aware = {p: compare_exports(exports / t, exports / p, path_aware=True) for p, t in pairs.items()
             if "path_aware" in results[p]}
    if aware:
        figures["ptranse_path_aware_minus_transe_mrr"] = {p: v["mrr_diff"] for p, v in aware.items()}
        figures["ptranse_path_aware_minus_transe_mrr_ci95"] = {p: v["mrr_diff_ci95"] for p, v in aware.items()}
    return figures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--snapshot", type=Path, help="existing snapshot (default: build one from --triples)")
    p.add_argument("--triples", type=Path, default=SHARED / "data/kg/xywy_triples.tsv")
    p.add_argument("--kg-config", type=Path, default=ROOT / "configs/kg/xywy.yaml")
    p.add_argument("--dim", type=int, default=100)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--eval-max-triples", type=int, default=5000)
    p.add_argument("--models", nargs="*", default=["transe", "transr", "ptranse"],
                   help="models at --dim/--epochs (none: only the --model-config ones)")
    p.add_argument("--model-config", nargs="+", default=[], metavar="NAME=FILE",
                   help="a model trained with its own train_kg_embeddings.py config")
    p.add_argument("--name", default="kg_embeddings", help="writes bench/results/NAME.json")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting of every model (repeatable, as in the scripts)")
    p.add_argument("--memory-target-mb", type=int, default=4096, help="peak RSS target of paths and PTransE")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one model, config on stdin
    args = p.parse_args()
    if args.worker:
        return worker()
    if bad := [item for item in [*args.model_config, *args.set] if "=" not in item]:
        p.error(f"--model-config takes NAME=FILE and --set KEY=VALUE, got {bad[0]!r}")
    if not args.models and not args.model_config:
        p.error("nothing to train: give --models or --model-config")
    setup_logging("INFO")
    work = Path(tempfile.mkdtemp(prefix="kgmrc-emb-bench-"))
    try:
        snapshot = args.snapshot or build_snapshot(args.triples, args.kg_config, work)
        results = {}
        configured = dict(item.split("=", 1) for item in args.model_config)
        overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
        for name in [*args.models, *configured]:
            if name in configured:
                settings = read_config_file(Path(configured[name]))
            else:
                model, extra = VARIANTS.get(name, (name, {}))
                settings = {"model": model, "dim": args.dim, "epochs": args.epochs, **extra}
            config = EmbeddingConfig(**{**settings, **overrides, "kg": snapshot, "out": work / name, "resume": False,
                                        "progress": False, "eval_max_triples": args.eval_max_triples})
            results[name] = train_in_fresh_process(config)
            popularity = results[name].pop("popularity")
            if config.model == "ptranse":
                results[name]["path_extraction_peak_rss_mb"] = paths_peak_rss_mb(snapshot, config.path_max_length)
        results["popularity"] = popularity  # the same test triples for every model
        figures = {"snapshot": str(snapshot), "dim": args.dim, "epochs": args.epochs, "model_configs": configured,
                   "overrides": overrides,
                   "eval_max_triples": args.eval_max_triples, "models": results,
                   "targets": {"transe_seconds_per_epoch_max": 40, "ptranse_epoch_ratio_max": 3.0,
                               "ptranse_mrr_at_least_transe": True, "peak_rss_mb_max": args.memory_target_mb}}
        figures.update(ptranse_vs_transe(results, work))
        figures["best_by_validation"] = max(args.models + list(configured), key=lambda n: results[n]["validation_mrr"])
        write_result(args.name, figures)
    finally:
        arcadedb.stop_server(work / "store" / "arcadedb")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
