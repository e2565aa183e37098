#!/usr/bin/env python
r"""Compare KG-embedding exports on the same test triples: paired MRR differences and ratios with 95% CIs.

Examples:
  python scripts/compare_embeddings.py --reference emb/transe --others emb/ptranse emb/rotate
  python scripts/compare_embeddings.py --reference emb/transe --others emb/ptranse --split validation --out cmp.json
  # the others' path-aware scoring (train_kg_embeddings.py --path-aware) against the reference model alone, and
  # path-aware against path-aware:
  python scripts/compare_embeddings.py --reference emb/transe --others emb/ptranse --path-aware
  python scripts/compare_embeddings.py --reference emb/transe --others emb/ptranse --path-aware --reference-path-aware

Each export keeps its per-triple filtered ranks (train_kg_embeddings.py writes OUT/ranks.safetensors); with
rr = (1/rank_head + 1/rank_tail) / 2 per triple, every other export is compared with the reference by
Δ = mean(rr_other − rr_reference) and the ratio of MRRs, each with a 95% bootstrap CI over the triples (pairs
resampled together), and with the popularity baseline on the same triples. The CI covers the choice of test
triples, not training noise: a second seed is a second model.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from kgutil.cli import ConfigError, add_common_args, add_field_args, build_config, setup_logging
from kgutil.io import atomic_write_text
from kg.embeddings.compare import compare_exports, load_ranks, paired, ranks_of

log = logging.getLogger("compare_embeddings")


class CompareConfig(BaseModel):
    """``scripts/compare_embeddings.py`` settings."""

    model_config = ConfigDict(extra="forbid")

    reference: Path = Field(description="the export every other is compared with")
    others: list[Path] = Field(min_length=1, description="exports to compare with the reference")
    split: Literal["test", "validation"] = Field("test", description="whose scored triples to compare on")
    path_aware: bool = Field(False, description="compare the others' path-aware ranks (train_kg_embeddings.py "
                             "--path-aware), not their models' alone")
    reference_path_aware: bool = Field(False, description="the reference's path-aware ranks, not its model's alone")
    rounds: int = Field(10_000, ge=100, description="bootstrap resamples")
    seed: int = 0
    out: Path | None = Field(None, description="also write the comparison as JSON here")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_field_args(p, CompareConfig, ["reference", "others", "split", "path_aware", "reference_path_aware", "rounds",
                                          "seed", "out"])
    add_common_args(p)
    args = p.parse_args(argv)
    setup_logging(args.log_level)
    try:
        config = build_config(CompareConfig, args)
        reference = load_ranks(config.reference)
        figures = {"reference": str(config.reference), "split": config.split,
                   "reference_versus_popularity": paired(
                       ranks_of(config.reference, reference, "test", config.reference_path_aware),
                       reference["popularity_test"], config.rounds, config.seed)
                   if config.split == "test" and "popularity_test" in reference else None,
                   "path_aware": config.path_aware, "reference_path_aware": config.reference_path_aware,
                   "others": {str(o): compare_exports(config.reference, o, config.split, config.rounds, config.seed,
                                                      path_aware=config.path_aware,
                                                      reference_path_aware=config.reference_path_aware)
                              for o in config.others}}
    except (ConfigError, FileNotFoundError, ValueError) as err:
        log.error("%s", err)
        return 2
    for name, row in figures["others"].items():
        low, high = row["mrr_diff_ci95"]
        log.info("%s: MRR %.4f vs %.4f, Δ %+.4f [%+.4f, %+.4f]%s, ratio %.3f %s", name, row["mrr"], row["other_mrr"],
                 row["mrr_diff"], low, high, " (CI excludes 0)" if row["ci_excludes_zero"] else "",
                 row["mrr_ratio"], row["mrr_ratio_ci95"])
    if config.out:
        atomic_write_text(config.out, json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
