#!/usr/bin/env python
"""Build a medical KG from triples files into Neo4j or the local ArcadeDB store, and export its snapshot.

Examples:
  python scripts/build_kg.py --triples ../shared/data/kg/xywy_triples.tsv --store kg_store/
  python scripts/build_kg.py --triples a.tsv b.jsonl.gz --uri bolt://db:7687 --user neo4j --password-env NEO4J_PASSWORD
  python scripts/build_kg.py --store kg_store/ --stats
  python scripts/build_kg.py --store kg_store/ --neighbours 糖尿病 --hops 2
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from neo4j.exceptions import DriverError, Neo4jError

from kg import arcadedb
from kg.build import BuildConfig, build_kg, open_store
from kgutil.cli import ConfigError, add_common_args, add_field_args, build_config, setup_logging
from kg.reader import KGInputError, check_inputs
from kg.store import StoreUnavailable

log = logging.getLogger("build_kg")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_field_args(p, BuildConfig, {
        "triples": "triples", "store": "store", "uri": "connection.uri", "user": "connection.user",
        "password_env": "connection.password_env", "database": "connection.database",
        "batch_size": "connection.batch_size", "rejects": "rejects", "snapshot": "snapshot", "export": "export",
        "reset": "reset", "keep_server": "keep_server", "progress": "progress"})
    p.add_argument("--stop", action="store_true", help="stop the local server of --store and exit")
    p.add_argument("--stats", action="store_true", help="print counts per entity type and relation")
    p.add_argument("--neighbours", metavar="ENTITY", help="print the neighbourhood of ENTITY")
    p.add_argument("--hops", type=int, default=1, help="hops for --neighbours (1-3)")
    add_common_args(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    try:
        config = build_config(BuildConfig, args)
    except ConfigError as err:
        log.error("%s", err)
        return 2
    try:
        if args.stop:
            stopped = arcadedb.stop_server(config.store / "arcadedb")
            print("stopped" if stopped else "no server running")
            return 0
        check_inputs(config.triples)
        with open_store(config) as store:
            result = build_kg(store, config)
            if config.triples:
                print(json.dumps({"summary": result.summary, "rejects": str(result.rejects_file),
                                  "snapshot": str(config.snapshot_dir) if result.manifest else None,
                                  "load_seconds": round(result.load.seconds, 2) if result.load else None},
                                 ensure_ascii=False, indent=2))
            if args.stats or not config.triples and not args.neighbours:
                print(json.dumps(store.stats(), ensure_ascii=False, indent=2))
            if args.neighbours:
                entity = store.entity(args.neighbours)
                if entity is None:
                    print(f"no entity named {args.neighbours!r}")
                    return 1
                print(json.dumps(entity, ensure_ascii=False))
                for n in store.neighbours(args.neighbours, hops=args.hops):
                    arrow = f"-[{n.relation}]->" if n.direction == "out" else f"<-[{n.relation}]-"
                    print(f"  {n.hops} hop  {args.neighbours} {arrow} {n.name} ({n.type or '-'})")
    except (KGInputError, ValueError) as err:
        log.error("%s", err)
        return 2
    except (StoreUnavailable, arcadedb.StoreBusyError, arcadedb.StoreStartError, Neo4jError, DriverError) as err:
        log.error("%s", err)
        return 1
    except KeyboardInterrupt:
        log.warning("interrupted; committed batches are kept and a re-run resumes")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
