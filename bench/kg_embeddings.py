#!/usr/bin/env python
"""TransE vs TransR vs PTransE on one split of a KG snapshot (default: the xywy disease KG).

Same split, dim and epochs for every model. Reports filtered MRR, Hits@1/3/10, seconds per epoch, and PCRA
path-extraction time and peak memory. Targets (2 cores): TransE ≤ 40 s/epoch at dim 100; PTransE epoch ≤ 3×
TransE; PTransE MRR ≥ TransE MRR.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import SHARED, build_snapshot, peak_rss_mb, write_result
from kg import arcadedb
from kg.cli import setup_logging
from kg.embeddings import EmbeddingConfig, train_embeddings


def main() -> None:
    root = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--snapshot", type=Path, help="existing snapshot (default: build one from --triples)")
    p.add_argument("--triples", type=Path, default=SHARED / "data/kg/xywy_triples.tsv")
    p.add_argument("--kg-config", type=Path, default=root / "configs/kg/xywy.yaml")
    p.add_argument("--dim", type=int, default=100)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--eval-max-triples", type=int, default=5000)
    p.add_argument("--models", nargs="+", default=["transe", "transr", "ptranse"])
    args = p.parse_args()
    setup_logging("INFO")
    work = Path(tempfile.mkdtemp(prefix="kgmrc-emb-bench-"))
    try:
        snapshot = args.snapshot or build_snapshot(args.triples, args.kg_config, work)
        results = {}
        for model in args.models:
            rss_before = peak_rss_mb()
            t0 = time.perf_counter()
            result = train_embeddings(EmbeddingConfig(
                kg=snapshot, out=work / model, model=model, dim=args.dim, epochs=args.epochs,
                eval_max_triples=args.eval_max_triples, resume=False, progress=False))
            results[model] = {
                **{k: round(v, 4) for k, v in result.metrics.items()},
                "seconds_per_epoch": round(result.seconds_per_epoch, 2),
                "total_seconds": round(time.perf_counter() - t0, 1),
                "final_loss": round(result.losses[-1], 4),
            }
            if model == "ptranse":
                results[model].update({"path_seconds": round(result.path_seconds, 1),
                                       "path_stats": {k: round(v, 4) for k, v in result.path_stats.items()},
                                       "peak_rss_mb_during_paths_and_training": round(max(rss_before,
                                                                                           peak_rss_mb()))})
        figures = {"snapshot": str(snapshot), "dim": args.dim, "epochs": args.epochs,
                   "eval_max_triples": args.eval_max_triples, "models": results,
                   "targets": {"transe_seconds_per_epoch_max": 40, "ptranse_epoch_ratio_max": 3.0,
                               "ptranse_mrr_at_least_transe": True}}
        if "transe" in results and "ptranse" in results:
            figures["ptranse_epoch_ratio"] = round(results["ptranse"]["seconds_per_epoch"]
                                                   / results["transe"]["seconds_per_epoch"], 2)
            figures["ptranse_minus_transe_mrr"] = round(results["ptranse"]["mrr"] - results["transe"]["mrr"], 4)
        write_result("kg_embeddings", figures)
    finally:
        arcadedb.stop_server(work / "store" / "arcadedb")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
