#!/usr/bin/env python
"""Entity linking over every CMedMRC dev passage and question with the CMeKG index.

Reports the index build time and resident memory, end-to-end chars/s of the fast and hybrid segmenters and of
the plain jieba-POS pipeline (each from a cold linker cache, one process), how often their linked spans agree
with the plain pipeline's, the share of questions with ≥ 1 linked entity, mean distinct entities per passage,
and prints a 50-link sample. Targets: ≥ 100,000 chars/s; ≥ 99% agreement; index < 2 GB resident.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from pathlib import Path

import psutil

from bench.common import SHARED, build_snapshot, write_result
from kg.cli import setup_logging
from kg.snapshot import Snapshot
from mrc.data import read_dataset
from retrieval.index import EntityIndex, IndexConfig, build_index
from retrieval.linker import EntityLinker, LinkerConfig


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def run_linker(index: EntityIndex, segmenter: str, texts: list[str]) -> tuple[list, float]:
    linker = EntityLinker(index, LinkerConfig(segmenter=segmenter))
    linker.link("预热")  # load jieba's dictionaries outside the timing
    t0 = time.perf_counter()
    links = linker.link_many(texts)
    return links, time.perf_counter() - t0


def main() -> None:
    root = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--snapshot", type=Path, help="CMeKG snapshot (default: build one)")
    p.add_argument("--triples", type=Path, default=SHARED / "data/kg/cmekg_triples.tsv")
    p.add_argument("--data", type=Path, default=SHARED / "data/cmedmrc/dev.json")
    p.add_argument("--dicts", type=Path, default=SHARED / "data/dicts")
    args = p.parse_args()
    setup_logging("WARNING")
    work = Path(tempfile.mkdtemp(prefix="kgmrc-link-bench-"))
    try:
        snapshot = Snapshot.load(args.snapshot or build_snapshot(args.triples, root / "configs/kg/cmekg.yaml", work))
        dicts = sorted(q for q in args.dicts.iterdir() if q.suffix in {".txt", ".spo"}) if args.dicts.exists() else []
        before = rss_mb()
        t0 = time.perf_counter()
        index = build_index(snapshot, IndexConfig(dicts=dicts, progress=False), work / "idx")
        build_s = time.perf_counter() - t0
        del snapshot
        examples = read_dataset(args.data)
        passages = sorted({e.context for e in examples})
        questions = [e.question for e in examples]
        texts = passages + questions
        chars = sum(len(t) for t in texts)
        fast, fast_s = run_linker(index, "fast", texts)
        resident = rss_mb() - before
        hybrid, hybrid_s = run_linker(index, "hybrid", texts)
        plain, plain_s = run_linker(index, "posseg", texts)

        def spans(links: list) -> set:
            return {(i, l.start, l.end, l.entity_id) for i, ls in enumerate(links) for l in ls}

        fast_spans, hybrid_spans, plain_spans = spans(fast), spans(hybrid), spans(plain)
        agree = len(fast_spans & plain_spans)
        q_links = fast[len(passages):]
        sample = random.Random(0).sample([l for ls in fast for l in ls], 50)
        for l in sample:
            print(f"{l.text:<12} → {l.entity:<20} {l.type or '-':<8} {l.rule:<7} {l.score:.2f}")
        write_result("linking", {
            "entities": len(index.names), "texts": len(texts), "chars": chars,
            "index_build_seconds": round(build_s, 1), "index_and_linker_resident_mb": round(resident),
            "fast": {"seconds": round(fast_s, 2), "chars_per_second": round(chars / fast_s)},
            "hybrid": {"seconds": round(hybrid_s, 2), "chars_per_second": round(chars / hybrid_s),
                       "agreement_with_plain": round(len(hybrid_spans & plain_spans) / max(1, len(plain_spans)), 4)},
            "plain_posseg": {"seconds": round(plain_s, 2), "chars_per_second": round(chars / plain_s)},
            "agreement_with_plain": round(agree / max(1, len(plain_spans)), 4),
            "fast_spans_also_in_plain": round(agree / max(1, len(fast_spans)), 4),
            "linked_spans": {"fast": len(fast_spans), "plain": len(plain_spans)},
            "questions_with_a_link": round(sum(bool(ls) for ls in q_links) / len(q_links), 4),
            "mean_entities_per_passage": round(sum(len({l.entity_id for l in ls}) for ls in fast[:len(passages)])
                                               / len(passages), 1),
            "rules": {r: sum(l.rule == r for ls in fast for l in ls) for r in ("exact", "overlap", "dense")},
            "targets": {"chars_per_second": 100_000, "agreement": 0.99, "resident_mb": 2048},
        })
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
