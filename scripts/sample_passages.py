#!/usr/bin/env python
"""Draw a reproducible share of a dataset's passages (``mrc.train.sample_passages``): the questions of COUNT distinct
passage texts, drawn with ``random.Random(SEED)`` from the sorted texts, to OUT, and the other questions to REST.

Example (the half of the CMedMRC dev passages on which the README's PVI figures were measured, and its other half):
  python scripts/sample_passages.py --data ../shared/data/cmedmrc/dev.json --count 149 --seed 0 \\
      --out runs/pvi_half/dev_half.json --rest runs/pvi_half/dev_other_half.json
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from kgutil.cli import add_common_args, add_field_args, parse_config
from mrc.data import DataError, read_dataset
from mrc.train import sample_passages, write_squad

log = logging.getLogger("sample_passages")


class SampleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: Path = Field(description="dataset file (SQuAD / CMedMRC layout)")
    count: int = Field(ge=1, description="distinct passage texts to draw")
    seed: int = 0
    out: Path = Field(description="the drawn passages' questions (SQuAD layout)")
    rest: Path | None = Field(None, description="the other questions (SQuAD layout)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_field_args(p, SampleConfig, ["data", "count", "seed", "out", "rest"])
    add_common_args(p)
    _, config = parse_config(p, SampleConfig, argv)
    try:
        sample, rest = sample_passages(read_dataset(config.data), config.count, config.seed)
    except (DataError, ValueError) as err:
        log.error("%s", err)
        return 2
    write_squad(sample, config.out)
    log.info("%s: %d questions on %d passage texts", config.out, len(sample), config.count)
    if config.rest is not None:
        write_squad(rest, config.rest)
        log.info("%s: %d questions", config.rest, len(rest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
