#!/usr/bin/env python
"""Benchmark the KG build on CMeKG (967k triples) into a fresh local ArcadeDB store.

Reports end-to-end triples/s (read + filter + load), peak RSS of Python and of the server, median and p95 of
1,000 one-hop neighbour lookups, and the snapshot export time. Targets (2 cores): ≥ 20,000 triples/s,
median lookup < 2 ms, export < 30 s.
"""

from __future__ import annotations

import argparse
import logging
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import SHARED, peak_rss_mb, process_peak_rss_mb, write_result
from kg import arcadedb
from kg.build import BuildConfig, load_triples
from kgutil.cli import read_config_file, setup_logging
from kg.snapshot import Snapshot, export_snapshot
from kg.store import GraphStore


def main() -> None:
    root = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--triples", type=Path, default=SHARED / "data/kg/cmekg_triples.tsv")
    p.add_argument("--config", type=Path, default=root / "configs/kg/cmekg.yaml")
    p.add_argument("--lookups", type=int, default=1000)
    args = p.parse_args()
    setup_logging("WARNING")
    work = Path(tempfile.mkdtemp(prefix="kgmrc-bench-"))
    try:
        config = BuildConfig.model_validate({**read_config_file(args.config), "triples": [args.triples],
                                             "store": work, "progress": False})
        with arcadedb.local_server(work / "arcadedb", heap="4g") as info:
            with GraphStore.connect(info.uri, info.auth, arcadedb.DATABASE,
                                    batch_size=config.connection.batch_size) as store:
                t0 = time.perf_counter()
                result = load_triples(store, config)
                load_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                export_snapshot(store, work / "snapshot", progress=False)
                export_s = time.perf_counter() - t0
                names = Snapshot.load(work / "snapshot").entity_names
                sample = random.Random(0).sample(names, min(args.lookups, len(names)))
                timings = []
                for name in sample:
                    t = time.perf_counter()
                    store.neighbours(name)
                    timings.append((time.perf_counter() - t) * 1000)
                server_rss = process_peak_rss_mb(info.pid)
        rows = result.summary["read"]
        write_result("kg_load", {
            "input": str(args.triples), "batch_size": config.connection.batch_size,
            "summary": result.summary, "load_seconds": round(load_s, 1),
            "rows_per_second": round(rows / load_s), "target_rows_per_second": 20000,
            "python_peak_rss_mb": round(peak_rss_mb()), "server_peak_rss_mb": round(server_rss),
            "lookup_ms": {"median": round(statistics.median(timings), 3),
                          "p95": round(statistics.quantiles(timings, n=20)[-1], 3), "target_median": 2.0},
            "export_seconds": round(export_s, 1), "target_export_seconds": 30,
        })
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.WARNING)
    main()
