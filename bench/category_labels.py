#!/usr/bin/env python
"""Answer-category labels of the CMedMRC dev answers from the CMeKG index and the questions
(``mrc.category_labels``): coverage per category, multi-label share, a 50-answer sample, and precision/recall (95% CI
over questions) against the hand labels of ``examples/categories_check.json`` (110 answers; the rules were tuned on
the 178 of ``examples/categories_tune.json`` only), against its second, independent hand labelling
(``examples/categories_check_second.json``), and how far the two hand labellings agree; the same labeller without
question intents (entities alone) beside it. Target: label precision ≥ 90% on the hand-labelled set.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.common import SHARED, build_snapshot, write_result
from kgutil.cli import setup_logging
from kg.snapshot import Snapshot
from mrc.categories import CategoryLabels
from mrc.category_labels import LabelConfig, check_against, label_examples
from mrc.data import read_dataset
from retrieval.index import EntityIndex, IndexConfig, build_index
from retrieval.linker import EntityLinker

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--index", type=Path, help="CMeKG entity index (default: build the KG and the index)")
    p.add_argument("--data", type=Path, default=SHARED / "data/cmedmrc/dev.json")
    args = p.parse_args()
    setup_logging("WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        if args.index:
            index = EntityIndex.load(args.index)
        else:
            snapshot = build_snapshot(SHARED / "data/kg/cmekg_triples.tsv", ROOT / "configs/kg/cmekg.yaml", Path(tmp))
            index = build_index(Snapshot.load(snapshot), IndexConfig(dicts=sorted((SHARED / "data/dicts").iterdir()),
                                                                     progress=False), Path(tmp) / "idx")
        examples, linker = read_dataset(args.data), EntityLinker(index)
        labels, report = label_examples(examples, linker, LabelConfig())
        entities_only, _ = label_examples(examples, linker, LabelConfig(question_intents=[]))
    check = CategoryLabels.read(ROOT / "examples/categories_check.json")
    second = CategoryLabels.read(ROOT / "examples/categories_check_second.json")
    for row in report["sample"]:
        print(f"{'+'.join(row['categories']):<22} {row['answer'][:40]}")
    figures = {"questions": report["questions"], "multi_label": report["multi_label"],
               "coverage": {c: v["questions"] for c, v in report["coverage"].items()},
               "check": check_against(labels, check),
               "check_second": check_against(labels, second),
               "hand_agreement": check_against(second, check),
               "check_entities_only": check_against(entities_only, check),
               "tune": check_against(labels, CategoryLabels.read(ROOT / "examples/categories_tune.json")),
               "target_precision": 90.0}
    write_result("category_labels", figures)


if __name__ == "__main__":
    main()
