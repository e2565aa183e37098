#!/usr/bin/env python
"""Label each gold answer with answer categories from the KG and the question (``mrc.category_labels``): link the
answer, map the types of its entities to Diagnosis / Medication / Symptom / Procedure / Lab / Other, and keep the
categories the question asks for (``labels.question_intents`` in a config file); soft multi-labels.

Examples:
  python scripts/label_categories.py --data ../shared/data/cmedmrc/dev.json --index idx/ --out dev.categories.json
  python scripts/label_categories.py --data dev.json --index idx/ --out c.json --check examples/categories_check.json
Prints the coverage per category and a sample of labelled answers; with --check, the labels' precision and
recall against hand labels (the same file layout).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from kg.snapshot import SnapshotError
from kgutil.cli import ConfigError, add_common_args, add_field_args, build_config, setup_logging
from mrc.categories import CategoryLabels
from mrc.category_labels import LabelConfig, check_against, label_examples
from mrc.data import DataError, read_dataset
from retrieval.index import EntityIndex
from retrieval.linker import EntityLinker

log = logging.getLogger("label_categories")


class LabelCLIConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: list[Path] = Field(min_length=1, description="SQuAD/CMedMRC-format dataset files")
    index: Path = Field(description="entity index directory (types come from it)")
    out: Path = Field(description="labels file to write (JSON)")
    check: Path | None = Field(None, description="hand labels to score the labels against")
    labels: LabelConfig = Field(default_factory=LabelConfig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_field_args(p, LabelCLIConfig, ["data", "index", "out", "check", "labels.min_score", "labels.min_chars",
                                       "labels.min_coverage", "labels.sample"])
    add_common_args(p)
    args = p.parse_args(argv)
    setup_logging(args.log_level)
    try:
        config = build_config(LabelCLIConfig, args)
        examples = [e for path in config.data for e in read_dataset(path)]
        linker = EntityLinker(EntityIndex.load(config.index), config.labels.linker)
        labels, report = label_examples(examples, linker, config.labels)
        if config.check is not None:
            report["check"] = check_against(labels, CategoryLabels.read(config.check))
        labels.write(config.out)
    except (ConfigError, DataError, SnapshotError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for row in report["sample"]:
        print(f"{row['id']}\t{'+'.join(row['categories'])}\t{row['answer'][:40]}\t{' '.join(row['entities'][:4])}")
    print(json.dumps({k: v for k, v in report.items() if k != "sample"}, ensure_ascii=False, indent=1))
    log.info("wrote %s: %d labelled answers", config.out, report["labelled"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
