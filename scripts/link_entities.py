#!/usr/bin/env python
"""Link text to KG entities and show why: span, candidate, POS, entity, type, rule, score, KG neighbours.

Examples:
  python scripts/link_entities.py --index idx/ "血小板无力症的发病率约为多少？"
  python scripts/link_entities.py --index idx/ --data ../shared/data/cmedmrc/dev.json --id DEV_1_QUERY_0 --json
Neighbours come from the graph store when it is reachable (--store with a running local server, or --uri),
else from the snapshot the index was built from.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from kg import arcadedb
from kgutil.cli import ConfigError, add_common_args, add_field_args, build_config, setup_logging
from kg.snapshot import Snapshot, SnapshotError
from kg.store import GraphStore, StoreConfig
from kgutil.html import write_page
from mrc.data import DataError, read_dataset
from retrieval.index import EntityIndex
from retrieval.linker import EntityLinker, Link, LinkerConfig

log = logging.getLogger("link_entities")


class LinkCLIConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    index: Path
    linker: LinkerConfig = Field(default_factory=LinkerConfig)
    store: Path | None = Field(None, description="local store directory whose running server gives neighbours")
    connection: StoreConfig = Field(default_factory=StoreConfig)
    neighbours: int = Field(3, ge=0)


class Neighbourhood:
    """Up to n neighbours per entity: from a reachable store, else from the snapshot's triples."""

    def __init__(self, config: LinkCLIConfig, index: EntityIndex) -> None:
        self.store: GraphStore | None = None
        self.snapshot: Snapshot | None = None
        try:
            if config.connection.uri:
                self.store = GraphStore.from_config(config.connection)
            elif config.store and (info := arcadedb.read_state(config.store / "arcadedb")):
                self.store = GraphStore.connect(info.uri, info.auth, arcadedb.DATABASE)
        except Exception as err:  # unreachable store: fall back to the snapshot
            log.info("store not reachable (%s); neighbours from the snapshot", err)
        if self.store is None and index.snapshot_path and index.snapshot_path.exists():
            self.snapshot = Snapshot.load(index.snapshot_path, verify=False)
        self.source = "store" if self.store else "snapshot" if self.snapshot else "none"

    def __call__(self, entity_id: int, name: str, n: int) -> list[str]:
        if n == 0:
            return []
        if self.store is not None:
            return [f"{nb.relation}:{nb.name}" for nb in self.store.neighbours(name, limit=n)]
        if self.snapshot is None:
            return []
        tr = self.snapshot.triples
        rows = np.flatnonzero((tr[:, 0] == entity_id) | (tr[:, 2] == entity_id))[:n]
        names, rels = self.snapshot.entity_names, self.snapshot.relation_names
        return [f"{rels[r]}:{names[t if h == entity_id else h]}" for h, r, t in tr[rows]]


def print_sample(linker: EntityLinker, examples: list, n: int, seed: int) -> int:
    """Link every distinct passage; print the number of links per rule and ``n`` seeded random links of each."""
    passages = sorted({e.context for e in examples})
    by_rule: dict[str, list[tuple[str, Link]]] = {}
    for passage, links in zip(passages, linker.link_many(passages)):
        for link in links:
            by_rule.setdefault(link.rule, []).append((passage, link))
    rng = random.Random(seed)
    print("links per rule: " + ", ".join(f"{rule} {len(v)}" for rule, v in sorted(by_rule.items())))
    for rule, found in sorted(by_rule.items()):
        for passage, link in rng.sample(found, min(n, len(found))):
            context = passage[max(0, link.start - 6):link.end + 6].replace("\n", " ")
            print(f"{rule:<8} {passage[link.start:link.end]:<10} → {link.entity:<12} ({link.type or '-'})  …{context}…")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("text", nargs="?", help="free text to link")
    add_field_args(p, LinkCLIConfig, ["index"])
    p.add_argument("--data", type=Path, help="SQuAD/CMedMRC-format dataset file")
    p.add_argument("--id", help="question id in --data: links the question and its passage")
    add_field_args(p, LinkCLIConfig, {"store": "store", "uri": "connection.uri"})
    add_field_args(p, LinkCLIConfig, ["linker.segmenter", "linker.top_k", "linker.overlap", "linker.overlap_threshold"])
    p.add_argument("--sample", type=int, metavar="N", help="with --data: link every passage and print N random "
                   "links per rule (mention → entity, in context) to judge link precision by hand")
    p.add_argument("--seed", type=int, default=0, help="the --sample draw")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--html", type=Path, help="also write a self-contained HTML view of the links here")
    add_common_args(p)
    args = p.parse_args(argv)
    setup_logging(args.log_level)
    if (args.text is not None) + (args.id is not None) + (args.sample is not None) != 1:
        p.error("give TEXT, or --data FILE --id QUESTION_ID, or --data FILE --sample N")
    try:
        config = build_config(LinkCLIConfig, args)
        index = EntityIndex.load(config.index)
        if (args.id or args.sample) and args.data is None:
            p.error("--id and --sample need --data")
        if args.sample:
            return print_sample(EntityLinker(index, config.linker), read_dataset(args.data), args.sample, args.seed)
        if args.id:
            example = next((e for e in read_dataset(args.data) if e.id == args.id), None)
            if example is None:
                log.error("%s: no question with id %r", args.data, args.id)
                return 2
            segments = {"question": example.question, "passage": example.context}
        else:
            segments = {"text": args.text}
    except (ConfigError, SnapshotError, DataError) as err:
        log.error("%s", err)
        return 2
    linker = EntityLinker(index, config.linker)
    neighbourhood = Neighbourhood(config, index)
    results = {}
    for name, links in zip(segments, linker.link_many(list(segments.values()))):
        results[name] = [{**link.as_dict(), "neighbours": neighbourhood(link.entity_id, link.entity,
                                                                        config.neighbours)} for link in links]
    if args.html:
        from retrieval.html import render_links

        write_page(args.html, render_links(segments, results, index=str(config.index),
                                           neighbours_from=neighbourhood.source))
        log.info("wrote %s", args.html)
    if args.json:
        print(json.dumps({"neighbours_from": neighbourhood.source, "segments": segments, "links": results},
                         ensure_ascii=False, indent=2))
        return 0
    for name, rows in results.items():
        print(f"== {name}: {len(rows)} links (neighbours from {neighbourhood.source})")
        print(f"{'span':>9}  {'candidate':<12} {'POS':<4} {'entity':<16} {'type':<8} {'rule':<7} {'score':>5}  "
              "neighbours")
        for r in rows:
            print(f"{r['start']:>4}-{r['end']:<4}  {r['text']:<12} {r['pos']:<4} {r['entity']:<16} "
                  f"{r['type'] or '-':<8} {r['rule']:<7} {r['score']:>5.2f}  {'; '.join(r['neighbours'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
