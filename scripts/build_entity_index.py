#!/usr/bin/env python
"""Build the entity index (exact table, jieba user dictionary, FAISS n-gram and optional dense indexes).

Examples:
  python scripts/build_entity_index.py --kg kg_store/snapshot --dicts ../shared/data/dicts --out idx/
  python scripts/build_entity_index.py --kg kg_store/snapshot --out idx/ --dense-encoder ../shared/models/m3e-small
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from kgutil.cli import ConfigError, add_common_args, add_field_args, build_config, setup_logging
from kg.snapshot import Snapshot, SnapshotError
from retrieval.index import IndexConfig, build_index

log = logging.getLogger("build_entity_index")


class BuildIndexConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kg: Path = Field(description="snapshot directory")
    out: Path = Field(description="index directory")
    index: IndexConfig = Field(default_factory=IndexConfig)


def expand_dicts(paths: list[Path]) -> list[Path]:
    """Directories stand for the term lists inside them (*.txt, *.spo, *.tsv)."""
    out: list[Path] = []
    for p in paths:
        out.extend(sorted(q for q in p.iterdir() if q.suffix in {".txt", ".spo", ".tsv"}) if p.is_dir() else [p])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_field_args(p, BuildIndexConfig, ["kg", "out"])
    p.add_argument("--dicts", nargs="+", type=Path, help="term-list files or directories")
    add_field_args(p, BuildIndexConfig, ["index.dense_encoder", "index.language", "index.progress"])
    add_common_args(p)
    args = p.parse_args(argv)
    setup_logging(args.log_level)
    try:
        config = build_config(BuildIndexConfig, args,
                              {"index.dicts": expand_dicts(args.dicts) if args.dicts else None})
        index = build_index(Snapshot.load(config.kg), config.index, config.out)
    except (ConfigError, SnapshotError, OSError) as err:
        log.error("%s", err)
        return 2
    print(json.dumps({"out": str(config.out), "entities": len(index.names), "language": index.language,
                      "typed": sum(t is not None for t in index.types), "dense": index.dense is not None},
                     ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
