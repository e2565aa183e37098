#!/usr/bin/env python
"""Does the KG ranking pick the right answer among the reader's own candidates?

``bench/kg_answer_signal.py`` shows that the KG vectors rank answer entities above other passage entities; this
bench asks whether that ranking adds anything to what a trained reader already knows. One run of the
cross-validation protocol (``bench/mrc_cv.py``: variant, fold, seed of ``--config``; trained here when its
directory holds no predictions) gives each validation and test question the reader's n-best spans c_i with scores
s_i (start + end logit). Each passage entity linked exactly and outside the question's entities is scored by
``retrieval.relations.question_fit_scores`` (how well the vectors fit a triple from a question entity, over the
relations the question names) and ranked per question (1 = best, ties share); a candidate's KG rank is the best
rank among the mentions it overlaps (none: unranked).

  lift   — over the reader's top-k candidates of the test questions with a ranked entity: the share of candidates
           that match a gold answer exactly, for those overlapping a rank-1 mention and for the others, by reader
           rank; and how often some top-k candidate is right (the ceiling of any reranker of the top k);
  rerank — ĉ = argmax_i s_i + w·[rank(c_i) = 1], w from a grid, chosen two ways and never on the questions it is
           applied to: on the fold's own validation questions (best F1, ties → the smaller w), and — with several
           ``--folds`` — on the test questions of the other folds (leave one fold out). Applied once to each fold's
           test questions and paired with w = 0 (the reader alone) question by question over all given folds:
           EM/F1 differences with 95% bootstrap CIs, answers changed. The pooled test figures at every w of the grid
           are listed too, as an exploration that chose nothing.

  python bench/kg_rerank.py --config configs/cv/fusion_cv.yaml --set base.epochs=4 --variant baseline --folds 0 1 \\
      --index /tmp/cmekg_idx --kg /tmp/cmekg_store/snapshot --embeddings /tmp/cmekg_emb_nssa

Writes ``bench/results/kg_rerank.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import parse_cv_args, write_result
from kg.embeddings.export import KGEmbeddings
from kg.snapshot import Snapshot
from kgutil.stats import bootstrap_ci
from mrc.crossval import run_config, run_hash
from mrc.data import Example
from mrc.metrics import dataset_metric, em_f1
from mrc.train import TrainConfig, load_examples, train_mrc
from retrieval.index import EntityIndex
from retrieval.linker import EntityLinker, Link, LinkerConfig
from retrieval.relations import question_fit_scores, score_ranks

log = logging.getLogger("kg_rerank")

GRID = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)


def mention_ranks(question: str, question_links: Sequence[Link], passage_links: Sequence[Link],
                  vectors: KGEmbeddings, relation_names: Sequence[str]) -> list[tuple[int, int, int]]:
    """(start, end, rank) of every passage mention of a scored entity (module docstring); [] when the question
    links no entity or the passage none outside it."""
    asked = {link.entity_id for link in question_links}
    mentions = [link for link in passage_links if link.entity_id not in asked]
    if not asked or not mentions:
        return []
    ids = np.unique([link.entity_id for link in mentions]).astype(np.int64)
    scores = question_fit_scores(vectors, relation_names, question, np.asarray(sorted(asked), dtype=np.int64), ids)
    rank = dict(zip(ids.tolist(), score_ranks(scores).tolist()))
    return [(link.start, link.end, rank[link.entity_id]) for link in mentions]


def kg_rank(start: int, end: int, mentions: Sequence[tuple[int, int, int]]) -> int | None:
    """The best rank among the mentions overlapping characters [start, end), None when it overlaps none."""
    ranks = [r for a, b, r in mentions if a < end and start < b]
    return min(ranks) if ranks else None


def rerank(nbest: Sequence[dict[str, Any]], mentions: Sequence[tuple[int, int, int]], weight: float) -> str:
    """The text of argmax_i s_i + w·[rank(c_i) = 1] (the first of equals, i.e. the reader's order); '' for none."""
    if not nbest:
        return ""
    bonus = [weight * (kg_rank(int(c["start"]), int(c["end"]), mentions) == 1) for c in nbest]
    best = max(range(len(nbest)), key=lambda i: (float(nbest[i]["score"]) + bonus[i], -i))
    return str(nbest[best]["text"])


class Scored:
    """Per-question EM/F1 of the reranked answers of one part (validation or test) at any weight, each weight
    scored once."""

    def __init__(self, examples: list[Example], predictions: dict[str, Any],
                 mentions: dict[str, list[tuple[int, int, int]]]) -> None:
        self.examples = [e for e in examples if e.id in predictions and e.gold_texts]
        self.predictions, self.mentions = predictions, mentions
        self.metric = dataset_metric(self.examples)
        self._scores: dict[float, np.ndarray] = {}

    def answers(self, weight: float) -> list[str]:
        return [rerank(self.predictions[e.id]["nbest"], self.mentions[e.id], weight) for e in self.examples]

    def scores(self, weight: float) -> np.ndarray:
        """``[Q, 2]``: EM and F1 (0–1) per question."""
        if weight not in self._scores:
            self._scores[weight] = np.asarray([em_f1(a, e.gold_texts, self.metric)
                                               for a, e in zip(self.answers(weight), self.examples)])
        return self._scores[weight]


def lift(parts: Sequence[Scored], k: int) -> dict[str, Any]:
    """Exact-match rate of the reader's top-k candidates overlapping a rank-1 mention vs the others, by reader
    rank, over the questions with a ranked entity; and the top-k ceiling over every question."""
    table: dict[str, dict[str, list[float]]] = {}
    ceiling = []
    for part, e in ((p, e) for p in parts for e in p.examples):
        top = part.predictions[e.id]["nbest"][:k]
        right = [em_f1(str(c["text"]), e.gold_texts, part.metric)[0] for c in top]
        ceiling.append(max(right, default=0.0))
        if not part.mentions[e.id]:
            continue
        for i, (c, r) in enumerate(zip(top, right), 1):
            kg_top = kg_rank(int(c["start"]), int(c["end"]), part.mentions[e.id]) == 1
            table.setdefault(str(i), {"kg_top": [], "other": []})["kg_top" if kg_top else "other"].append(r)
    every = {key: [v for row in table.values() for v in row[key]] for key in ("kg_top", "other")}
    rate = lambda v: {"candidates": len(v), "exact": round(100 * float(np.mean(v)), 2) if v else None}  # noqa: E731
    return {"k": k, "questions_with_ranked_entity": sum(bool(p.mentions[e.id]) for p in parts for e in p.examples),
            "top_k_ceiling_em": round(100 * float(np.mean(ceiling)), 2),
            "all_ranks": {key: rate(v) for key, v in every.items()},
            "by_reader_rank": {i: {key: rate(v) for key, v in row.items()} for i, row in table.items()}}


def paired(mine: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """EM and F1 (×100) of ``mine`` and its mean paired difference from ``reference`` with a 95% bootstrap CI."""
    out: dict[str, Any] = {}
    for j, name in enumerate(("em", "f1")):
        diff = mine[:, j] - reference[:, j]
        out[name] = round(100 * float(mine[:, j].mean()), 2)
        out[f"{name}_diff"] = round(100 * float(diff.mean()), 2)
        out[f"{name}_ci95"] = [round(100 * x, 2) for x in bootstrap_ci(diff)]
    return out


def trained_run(run: TrainConfig) -> Path:
    """The run's directory, trained first when it holds no predictions of this very config."""
    saved = run.out / "train_config.json"
    done = all((run.out / name).exists() for name in ("predictions.json", "test_predictions.json"))
    if not done or run_hash(TrainConfig.model_validate_json(saved.read_text(encoding="utf-8"))) != run_hash(run):
        log.info("training %s (no predictions of this config there)", run.out)
        train_mrc(run)
    return run.out


def fold_parts(run: TrainConfig, linker: EntityLinker, vectors: KGEmbeddings, relation_names: Sequence[str]
               ) -> dict[str, Scored]:
    """The validation and test questions of one trained run, with the reader's n-best and the KG ranks."""
    out = trained_run(run)
    split = load_examples(run)
    parts = {}
    for name, examples, file in (("validation", split.validation, "predictions.json"),
                                 ("test", split.test, "test_predictions.json")):
        predictions = json.loads((out / file).read_text(encoding="utf-8"))
        texts = sorted({t for e in examples for t in (e.question, e.context)})
        links = dict(zip(texts, linker.link_many(texts)))
        parts[name] = Scored(examples, predictions, {e.id: mention_ranks(e.question, links[e.question],
                                                                        links[e.context], vectors, relation_names)
                                                     for e in examples})
    return parts


def choose(parts: Sequence[Scored]) -> tuple[float, dict[str, float]]:
    """The weight of the grid with the best F1 over ``parts`` (ties → the smaller), and F1 (×100) by weight."""
    f1 = {w: float(np.concatenate([p.scores(w)[:, 1] for p in parts]).mean()) for w in GRID}
    return max(GRID, key=lambda w: (f1[w], -w)), {str(w): round(100 * v, 2) for w, v in f1.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", default="baseline", help="the protocol's variant whose runs are reranked")
    p.add_argument("--folds", type=int, nargs="+", default=[0], help="test folds (several: leave-one-fold-out too)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--index", type=Path, required=True, help="entity index of the KG (scripts/build_entity_index.py)")
    p.add_argument("--kg", type=Path, required=True, help="the KG snapshot the index and vectors were built from")
    p.add_argument("--embeddings", type=Path, required=True, help="exported KG vectors (a model KGEmbeddings.fit_scores knows)")
    p.add_argument("--overlap", action="store_true", help="link by the overlap rule too (default: exact links)")
    p.add_argument("--k", type=int, default=5, help="reader candidates in the lift table")
    args, config = parse_cv_args(p, argv)
    if config is None:
        return 2
    try:
        runs = {f: run_config(config, args.variant, f, args.seed) for f in dict.fromkeys(args.folds)}
        snapshot = Snapshot.load(args.kg)
        vectors = KGEmbeddings.load(args.embeddings, snapshot_checksum=snapshot.checksum)
        linker = EntityLinker(EntityIndex.load(args.index, snapshot_checksum=snapshot.checksum),
                              LinkerConfig(overlap=args.overlap))
    except (KeyError, ValueError, OSError) as err:
        log.error("%s", err)
        return 2
    parts = {f: fold_parts(run, linker, vectors, snapshot.relation_names) for f, run in runs.items()}
    tests = [parts[f]["test"] for f in runs]
    reader = np.concatenate([t.scores(0.0) for t in tests])
    rules = {"own_validation": {f: choose([parts[f]["validation"]]) for f in runs}}
    if len(runs) > 1:
        rules["other_folds"] = {f: choose([parts[g]["test"] for g in runs if g != f]) for f in runs}
    results = {}
    for rule, chosen in rules.items():
        weights = {f: w for f, (w, _) in chosen.items()}
        scores = np.concatenate([parts[f]["test"].scores(weights[f]) for f in runs])
        changed = sum(a != b for f in runs for a, b in zip(parts[f]["test"].answers(weights[f]),
                                                           parts[f]["test"].answers(0.0)))
        results[rule] = {"weights": {str(f): w for f, w in weights.items()},
                         "f1_by_weight": {str(f): by_w for f, (_, by_w) in chosen.items()},
                         **paired(scores, reader), "answers_changed": changed}
    figures = {
        "runs": [str(run.out) for run in runs.values()], "variant": args.variant, "folds": list(runs),
        "seed": args.seed,
        "embeddings": {"path": str(args.embeddings), "model": vectors.metadata["model"],
                       "test_mrr": vectors.metadata["metrics"]["mrr"]},
        "links": "exact+overlap" if args.overlap else "exact",
        "questions": {name: sum(len(parts[f][name].examples) for f in runs) for name in ("validation", "test")},
        "lift": lift(tests, args.k),
        "test": {"reader": paired(reader, reader), **results},
        "test_by_weight_exploratory": {str(w): paired(np.concatenate([t.scores(w) for t in tests]), reader)
                                       for w in GRID},
    }
    write_result("kg_rerank", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
