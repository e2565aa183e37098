#!/usr/bin/env python
"""Where does a KG variant gain and where does it lose? The recorded per-question differences of a cross-validation
protocol, split by what the KG offers the question — a diagnostic of the knowledge-fusion issue, needing no training.

Each question of the protocol's data falls in one group, from the variant's own linker, index and vectors
(``fusion.entities``: the passage entities scored by s(c) = max over question entities q and the relations r the
question names of the vectors' triple score; the boundary head's anchor is the top-ranked one, ties included):
  none — no passage entity is scored (no question entity, or no other entity in the passage): no anchor;
  hit  — a mention of a top-scored passage entity overlaps a gold answer;
  near — none overlaps, but one lies within the head's radius R (``entity_boundary_radius``) of a gold answer, in
         characters: where the head's offset bias can still point at the answer;
  miss — every top-scored mention is farther away.
(The model ranks per window and counts tokens; most passages fit one window, and m3e's tokens are mostly single
characters, so the passage's top and characters stand in for the window's and tokens.) For comparison the same
groups are counted for the text anchor (``mrc.boundary.question_anchor``: passage characters in a character bigram
that also occurs in the question), which needs no KG.
A second split, ``named_relation``: whether the question names a KG relation (症状, 并发症, …:
``retrieval.relations.named_relations``), where the scores read only those relations and the ranking is best.
Per comparison, split and group: questions, mean paired difference of EM, F1 and support EM with 95% bootstrap CIs
over questions (per question averaged over the runs both sides have), the EM sign test, and Cochran's Q test that two
groups share one difference (``kgutil.stats.heterogeneity``, with its permutation p): ``hit`` against ``miss`` (does
the variant do better where its anchor is right?), ``named`` against ``unnamed``. Comparisons: the variant against
the protocol's reference and against each variant it is paired with in the config (``*.runs.json``), and with
against without its entities at inference when ``knowledge_ablation.py`` has scored them
(``*_knowledge_ablation.masked.json``).
The groups are chosen after the runs: read the figures as where to look next, not as a claim.

  python bench/anchor_subgroups.py --config configs/cv/fusion_default.yaml --variant cmedbert_entity_boundary
      → bench/results/fusion_default_anchor_subgroups.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

import numpy as np
from tqdm import tqdm

from bench.common import RESULTS, parse_cv_args, write_result
from fusion.entities import EntityInputs
from kgutil.stats import bootstrap_ci, heterogeneity, sign_test
from mrc.crossval import CVConfig, per_question, run_config
from mrc.data import Example, read_dataset
from mrc.registry import model_class
from retrieval.linker import Link
from retrieval.relations import named_relations

log = logging.getLogger("anchor_subgroups")

GROUPS = ("none", "hit", "near", "miss")
SPLITS = {"anchor": (GROUPS, ("hit", "miss")),            # split → (its groups, the two its Q test compares)
          "named_relation": (("named", "unnamed"), ("named", "unnamed"))}
SCORES = ("em", "f1", "support_em")


def anchor_group(mentions: list[tuple[int, int]], example: Example, radius: int) -> str:
    """The question's group (module docstring) from its anchor's mentions ``[start, end)`` in the passage."""
    if not mentions:
        return "none"
    answers = [(a.start, a.start + len(a.text)) for a in example.answers]
    offset = min((0 if start < m_end and m_start < end else 1 + max(start - m_end, m_start - end)
                  for m_start, m_end in mentions for start, end in answers),   # 0: overlap; else 1 + characters between
                 default=radius + 1)                                          # no gold answer: a miss
    return "hit" if offset == 0 else "near" if offset <= radius else "miss"


def kg_anchor(passage_links: list[Link], scores: dict[int, float]) -> list[tuple[int, int]]:
    """The mentions of the top-scored passage entities (ties included); none without scores."""
    if not scores:
        return []
    best = max(scores.values())
    return [(link.start, link.end) for link in passage_links if scores.get(link.entity_id) == best]


def text_anchor(example: Example) -> list[tuple[int, int]]:
    """The passage characters inside a character bigram that also occurs in the question, as runs."""
    asked = {example.question[i:i + 2] for i in range(len(example.question) - 1)}
    marked = [False] * len(example.context)
    for i in range(len(example.context) - 1):
        if example.context[i:i + 2] in asked:
            marked[i] = marked[i + 1] = True
    runs, start = [], None
    for i, on in enumerate([*marked, False]):
        if on and start is None:
            start = i
        elif not on and start is not None:
            runs.append((start, i))
            start = None
    return runs


def question_groups(config: CVConfig, variant: str) -> tuple[dict[str, dict[str, str]], dict[str, Any]]:
    """Question id → group under each split (``SPLITS``) for every question of the protocol's data (its training
    files and test file), and per anchor (``kg``, ``text``) its questions by group and its mean number of mentions a
    passage."""
    run = run_config(config, variant, 0, config.seeds[0])
    fusion = model_class(run.model.model_type).settings.model_validate(run.model.fusion)
    inputs = EntityInputs(fusion)
    files = [*run.train, *([config.test] if config.test is not None else [])]   # a test-file protocol scores its test
    examples = [e for path in files for e in read_dataset(path, answer_policy=run.answer_policy)]
    links = inputs.link_examples(examples)
    mentions = {"kg": [kg_anchor(ex_links[1], inputs.kg_scores(ex.question, ex_links))
                       for ex, ex_links in tqdm(list(zip(examples, links)), desc="scoring passage entities", unit="q")],
                "text": [text_anchor(ex) for ex in examples]}
    radius = fusion.entity_boundary_radius
    anchors = {name: {ex.id: anchor_group(found, ex, radius) for ex, found in zip(examples, spans)}
               for name, spans in mentions.items()}
    stats = {name: {"questions": {g: sum(v == g for v in anchors[name].values()) for g in GROUPS},
                    "mentions_per_question": round(float(np.mean([len(found) for found in spans])), 2)}
             for name, spans in mentions.items()}
    names = inputs.snapshot.relation_names
    named = {ex.id: "named" if len(named_relations(ex.question, names)) else "unnamed" for ex in examples}
    stats["kg"]["questions_by_named_relation"] = {
        label: {g: sum(anchors["kg"][qid] == g for qid, v in named.items() if v == label) for g in GROUPS}
        for label in SPLITS["named_relation"][0]}
    return {"anchor": anchors["kg"], "named_relation": named}, stats


def per_question_differences(a: dict[str, Any], b: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Question id → score → a − b (×100), each side averaged over the runs (fold/seed keys) both have
    (``mrc.crossval.per_question``, as the protocol pairs them)."""
    keys = set(a) & set(b)
    mine, theirs = per_question(a, keys), per_question(b, keys)
    return {qid: {s: 100 * (mine[qid][s] - theirs[qid][s]) for s in SCORES}
            for qid in sorted(mine.keys() & theirs.keys())}   # a fixed order: the bootstrap draws repeat


def split_by_group(differences: dict[str, dict[str, float]], groups: dict[str, str], labels: tuple[str, ...],
                   contrast: tuple[str, str], rounds: int) -> dict[str, Any]:
    """Per group of ``labels``: questions, each score's mean difference with its CI and the EM sign test (questions
    better, worse, p); per score, whether the two groups of ``contrast`` share one difference (Cochran's Q; None
    where either has no spread)."""
    out: dict[str, Any] = {"groups": {}, "contrast": list(contrast), "contrast_agree": {}}
    columns = {g: {s: np.array([d[s] for qid, d in differences.items() if groups.get(qid) == g]) for s in SCORES}
               for g in labels}
    for g in labels:
        n = len(columns[g]["em"])
        out["groups"][g] = {"questions": n, **{
            f"{s}_diff": round(float(columns[g][s].mean()), 2) if n else None for s in SCORES}, **{
            f"{s}_ci95": [round(x, 2) for x in bootstrap_ci(columns[g][s], rounds)] if n > 1 else None
            for s in SCORES}, "em_sign_test": sign_test(columns[g]["em"])}
    for s in SCORES:
        out["contrast_agree"][s] = heterogeneity([columns[g][s] for g in contrast], rounds)
    return out


def comparisons(config: CVConfig, variant: str, records: dict[str, Any], masked: dict[str, Any]
                ) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Name → (the variant's runs, the other side's runs) of every comparison the records allow."""
    others = [config.reference] + [b for a, b in config.pairs if a == variant]
    found = {f"{variant}-vs-{other}": (records[variant], records[other]) for other in others if other in records}
    if variant in masked:
        found[f"{variant}-with-vs-without-knowledge"] = (records[variant], masked[variant])
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", required=True, help="the KG variant whose recorded runs are split")
    args, config = parse_cv_args(p, argv)
    if config is None:
        return 2
    stem = args.config.stem
    records_path = RESULTS / f"{stem}.runs.json"
    records = json.loads(records_path.read_text(encoding="utf-8")) if records_path.exists() else {}
    if args.variant not in records or args.variant not in config.variants:
        log.error("%s: no recorded runs of %s in %s; run bench/mrc_cv.py --config %s first", args.config,
                  args.variant, records_path, args.config)
        return 2
    masked_path = RESULTS / f"{stem}_knowledge_ablation.masked.json"
    masked = json.loads(masked_path.read_text(encoding="utf-8")) if masked_path.exists() else {}
    try:
        splits, anchors = question_groups(config, args.variant)
    except ValueError as err:
        log.error("%s", err)
        return 2
    for name, row in anchors.items():
        log.info("%s anchor: questions by group %s, %.2f mentions a passage", name, row["questions"],
                 row["mentions_per_question"])
    figures = {"config": str(args.config), "variant": args.variant, "anchors": anchors, "comparisons": {}}
    for name, (mine, theirs) in comparisons(config, args.variant, records, masked).items():
        differences = per_question_differences(mine, theirs)
        figures["comparisons"][name] = {}
        for split, (labels, contrast) in SPLITS.items():
            result = figures["comparisons"][name][split] = split_by_group(differences, splits[split], labels,
                                                                          contrast, config.bootstrap)
            for g, row in result["groups"].items():
                if row["questions"] > 1:
                    log.info("%s, %s (%d questions): EM %+.2f %s (%d better, %d worse), F1 %+.2f, support EM %+.2f",
                             name, g, row["questions"], row["em_diff"], row["em_ci95"],
                             row["em_sign_test"]["better"], row["em_sign_test"]["worse"], row["f1_diff"],
                             row["support_em_diff"])
            if (test := result["contrast_agree"]["em"]) is not None:
                log.info("%s: %s and %s share one EM difference? Cochran's Q p = %.3f, permutation p = %.3f", name,
                         *contrast, test["p"], test["p_permutation"])
    write_result(f"{stem}_anchor_subgroups", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
