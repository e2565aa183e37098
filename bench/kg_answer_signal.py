#!/usr/bin/env python
"""Do the KG and its entity vectors point at answers? A check that needs no MRC training.

For each answerable CMedMRC dev question with ≥ 1 linked question entity (set Q), the candidates are the distinct
entities linked in its passage, outside Q; a candidate is a hit when one of its mentions overlaps a gold answer.
Each scorer ranks the candidates of a question:
  random      — every candidate alike;
  popularity  — the entity's degree in the KG;
  neighbour   — 1 when a triple joins the candidate to an entity of Q;
  NAME:fit    — max over q ∈ Q, relations r and both directions of the vectors' own triple score f(q, r, c)
              (TransE: −‖e_q + r − e_c‖; RotatE: −‖e_q ∘ r − e_c‖; ``KGEmbeddings.fit_scores``);
  NAME:named_relation — the same over the relations whose name appears in the question (症状, 并发症, …), all
              relations when none does: the ranking behind CMedBERT's KG-score feature (``fusion.entities``);
  NAME:cosine — max over q ∈ Q of cos(e_q, e_c);
  intent      — 1 when the candidate's index type maps to a category the question asks for (the answer-category
              labeller's question intents and type map, ``mrc.category_labels``: 症状/表现 → Symptom, 并发症 →
              Diagnosis, …; an intent of Other or none, or an untyped candidate: 0);
  NAME:named_relation+intent — the candidates the intent admits first, NAME:named_relation within each group;
  with ``--paths``, the training graph's path evidence (``kg.embeddings.path_scoring``, rules fitted on every
  triple of the KG): paths:named_relation — max over q ∈ Q, the named relations r and both directions of
              Σ_p Pr(r | p)·R(p | q, c) (0 when the question names no relation);
  NAME:named_relation+paths — NAME:named_relation + β·paths:named_relation, β the one the export's path-aware
              scoring chose on KG validation (``--path-aware``; nothing is tuned on the questions).
Per question: precision at 1, p@1 = |hits ∩ top| / |top| (``top``: the candidates tied at the best score), and
AUC = P(score(hit) > score(miss)) with ties ½ (questions with hits and misses); ``with_hit`` counts the questions
with a hit among their candidates (a perfect ranker's p@1 is with_hit / with_candidates). Means with 95% bootstrap
CIs over questions, each scorer's paired difference from ``random`` and, with several vector sets, each set's paired
difference from the first one under the same scorer (``vs_FIRST``). Writes ``bench/results/kg_answer_signal.json``
(``--name``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from bench.common import SHARED, write_result
from kg.embeddings.export import KGEmbeddings
from kg.embeddings.path_scoring import PathRules
from kg.snapshot import Snapshot
from kgutil.cli import setup_logging
from kgutil.stats import bootstrap_ci
from mrc.category_labels import LabelConfig, admitted, question_intent
from mrc.data import Example, read_dataset
from retrieval.index import EntityIndex
from retrieval.linker import EntityLinker, Link, LinkerConfig
from retrieval.relations import RelationLookup, named_relations


KINDS = ("fit", "named_relation", "cosine")  # the scorers of each vector set


def candidates(example: Example, question_links: list[Link], passage_links: list[Link]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(question entity ids, candidate entity ids, hit flags) of one question, as the module states."""
    question = np.unique([link.entity_id for link in question_links]).astype(np.int64)
    answers = [(a.start, a.start + len(a.text)) for a in example.answers]
    hit: dict[int, bool] = {}
    for link in passage_links:
        if link.entity_id in question:
            continue
        overlaps = any(link.start < end and start < link.end for start, end in answers)
        hit[link.entity_id] = hit.get(link.entity_id, False) or overlaps
    ids = np.fromiter(hit, dtype=np.int64, count=len(hit))
    return question, ids, np.fromiter(hit.values(), dtype=bool, count=len(hit))


def cosine_scores(emb: KGEmbeddings, question: np.ndarray, cands: np.ndarray) -> np.ndarray:
    """max_q cos(e_q, e_c) for each candidate (``[C]``)."""
    e = emb.entity.numpy()
    q, c = e[question], e[cands]
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    c = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    return (q @ c.T).max(axis=0)


def path_scores(rules: PathRules, question: np.ndarray, cands: np.ndarray, named: np.ndarray) -> np.ndarray:
    """max over q ∈ ``question``, r ∈ ``named`` and both directions (q as head: query r; q as tail: query r⁻¹) of
    the path evidence for each candidate (``[C]``; zeros when ``named`` is empty)."""
    if not len(named):
        return np.zeros(len(cands))
    num_relations = rules.graph.num_steps // 2
    anchors = np.repeat(question, 2 * len(named))
    queries = np.tile(np.concatenate([named, named + num_relations]), len(question))
    return rules.bonus(anchors, queries)[:, cands].toarray().max(axis=0)


def intent_scores(question: str, cands: np.ndarray, types: list[str | None], config: LabelConfig) -> np.ndarray:
    """1 for each candidate whose type's category the question's intent asks for, other than ``config.other``."""
    intent = question_intent(question, config)
    wanted = set(intent.categories or []) - {config.other} if intent is not None else set()
    categories = (config.type_map.get((types[c] or "").lower()) for c in cands)
    return np.fromiter((c is not None and admitted(c, intent, config) in wanted for c in categories),
                       dtype=float, count=len(cands))


def lexicographic(first: np.ndarray, then: np.ndarray) -> np.ndarray:
    """A score that orders by ``first`` (0/1), then by ``then`` within each group."""
    return then + first * (np.ptp(then) + 1.0)


def precision_at_1(scores: np.ndarray, hits: np.ndarray) -> float:
    top = scores == scores.max()
    return float(hits[top].mean())


def auc(scores: np.ndarray, hits: np.ndarray) -> float:
    """P(score(hit) > score(miss)), ties ½."""
    h, m = scores[hits][:, None], scores[~hits][None, :]
    return float(((h > m) + 0.5 * (h == m)).mean())


def summary(values: list[float], reference: list[float], first: tuple[str, list[float]] | None = None
            ) -> dict[str, Any]:
    """Mean with CI, the paired difference from ``reference`` (random) and, when given, from ``first``'s values."""
    v, diff = np.asarray(values), np.asarray(values) - np.asarray(reference)
    out: dict[str, Any] = {"mean": round(100 * v.mean(), 2), "ci95": [round(100 * x, 2) for x in bootstrap_ci(v)],
                           "diff_vs_random": round(100 * diff.mean(), 2),
                           "diff_ci95": [round(100 * x, 2) for x in bootstrap_ci(diff)]}
    if first is not None:
        paired = v - np.asarray(first[1])
        out[f"vs_{first[0]}"] = {"diff": round(100 * paired.mean(), 2),
                                 "ci95": [round(100 * x, 2) for x in bootstrap_ci(paired)]}
    return out


def summaries(values: dict[str, list[float]], vectors: dict[str, KGEmbeddings]) -> dict[str, dict[str, Any]]:
    """``summary`` of every scorer; a vector scorer NAME:KIND also against FIRST:KIND (the first vector set), and
    NAME:BASE+EXTRA against NAME:BASE (what the paths or the intent add)."""
    first = next(iter(vectors), None)
    out = {}
    for scorer, v in values.items():
        name, _, kind = scorer.partition(":")
        other = (first, values[f"{first}:{kind}"]) if kind and name != first else None
        if "+" in kind:
            base = f"{name}:{kind.partition('+')[0]}"
            other = (base, values[base])
        out[scorer] = summary(v, values["random"], other)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index", type=Path, required=True, help="entity index of the KG (scripts/build_entity_index.py)")
    p.add_argument("--kg", type=Path, required=True, help="the KG snapshot the index and vectors were built from")
    p.add_argument("--embeddings", nargs="*", default=[], metavar="NAME=DIR", help="exported entity vectors")
    p.add_argument("--data", type=Path, default=SHARED / "data/cmedmrc/dev.json")
    p.add_argument("--overlap", action="store_true", help="link by the overlap rule too (default: exact links)")
    p.add_argument("--paths", action="store_true", help="also score by path evidence (paths:named_relation)")
    p.add_argument("--name", default="kg_answer_signal", help="writes bench/results/NAME.json")
    args = p.parse_args()
    setup_logging("WARNING")
    snapshot = Snapshot.load(args.kg)
    vectors = {name: KGEmbeddings.load(Path(d), snapshot_checksum=snapshot.checksum)
               for name, d in (spec.split("=", 1) for spec in args.embeddings)}
    degree = np.bincount(snapshot.triples[:, [0, 2]].ravel(), minlength=snapshot.num_entities)
    lookup = RelationLookup.from_snapshot(snapshot)
    index = EntityIndex.load(args.index)
    linker = EntityLinker(index, LinkerConfig(overlap=args.overlap))
    label_config = LabelConfig()
    examples = [e for e in read_dataset(args.data) if e.answers]
    contexts = list(dict.fromkeys(e.context for e in examples))
    context_links = dict(zip(contexts, linker.link_many(contexts)))
    question_links = linker.link_many([e.question for e in examples])

    rules = PathRules.fit(snapshot.triples, snapshot.num_entities, snapshot.num_relations) if args.paths else None
    betas = {n: (e.metadata.get("path_aware") or {}).get("beta") for n, e in vectors.items()} if rules else {}
    scorers = ["random", "popularity", "neighbour", "intent",
               *(f"{n}:{kind}" for n in vectors for kind in (*KINDS, "named_relation+intent")),
               *(["paths:named_relation"] if rules else []),
               *(f"{n}:named_relation+paths" for n, beta in betas.items() if beta is not None)]
    p1: dict[str, list[float]] = {s: [] for s in scorers}
    aucs: dict[str, list[float]] = {s: [] for s in scorers}
    counts = {"questions": len(examples), "with_question_entity": 0, "with_candidates": 0, "with_hit_and_miss": 0,
              "with_named_relation": 0, "with_intent_candidate": 0, "with_hit": 0}
    for example, q_links in tqdm(list(zip(examples, question_links)), desc="questions"):
        question, cands, hits = candidates(example, q_links, context_links[example.context])
        counts["with_question_entity"] += bool(len(question))
        if not len(question) or not len(cands):
            continue
        counts["with_candidates"] += 1
        related = lookup.relation(np.repeat(cands, len(question)), np.tile(question, len(cands)))
        scores = {"random": np.zeros(len(cands)), "popularity": degree[cands].astype(float),
                  "neighbour": (related.reshape(len(cands), len(question)) >= 0).any(axis=1).astype(float),
                  "intent": intent_scores(example.question, cands, index.types, label_config)}
        named = named_relations(example.question, snapshot.relation_names)
        counts["with_named_relation"] += bool(len(named))
        counts["with_intent_candidate"] += bool(scores["intent"].any())
        for name, emb in vectors.items():
            scores[f"{name}:fit"] = emb.fit_scores(question, cands)
            scores[f"{name}:named_relation"] = emb.fit_scores(question, cands, named) if len(named) \
                else scores[f"{name}:fit"]  # a question that names no relation: all relations, as above
            scores[f"{name}:cosine"] = cosine_scores(emb, question, cands)
            scores[f"{name}:named_relation+intent"] = lexicographic(scores["intent"], scores[f"{name}:named_relation"])
        if rules is not None:
            scores["paths:named_relation"] = path_scores(rules, question, cands, named)
            for name, beta in betas.items():
                if beta is not None:
                    scores[f"{name}:named_relation+paths"] = (scores[f"{name}:named_relation"]
                                                              + beta * scores["paths:named_relation"])
        counts["with_hit"] += bool(hits.any())   # the questions a perfect ranker's top-1 could hit
        both = bool(hits.any() and not hits.all())
        counts["with_hit_and_miss"] += both
        for s in scorers:
            p1[s].append(precision_at_1(scores[s], hits))
            if both:
                aucs[s].append(auc(scores[s], hits))
    figures = {"kg": str(args.kg), "links": "exact+overlap" if args.overlap else "exact", **counts,
               "embeddings": {n: {"model": e.metadata["model"], "test_mrr": e.metadata["metrics"]["mrr"],
                                  "validation_mrr": (e.metadata.get("validation_metrics") or {}).get("mrr"),
                                  "path_aware_beta": betas.get(n)}
                              for n, e in vectors.items()},
               "p_at_1": summaries(p1, vectors), "auc": summaries(aucs, vectors)}
    write_result(args.name, figures)


if __name__ == "__main__":
    main()
