"""Answer-category labels from the KG: link every gold answer, map its entities' types to categories.

For a question with gold answers A, the links L are the entity links inside the answers (``retrieval.linker``)
made by the exact rule or scoring at least ``min_score``, over at least ``min_chars`` characters, whose entity type
maps to a category (``type_map``, case-insensitive), and not inside a longer such link (the longest mention speaks:
"type 2 diabetes mellitus" is a Disease, whatever "diabetes mellitus" alone would be). Each link votes for its category with the number of answer
characters it covers: n_c = Σ_{l ∈ L, cat(l) = c} |l|. The soft label is y_c = n_c / max_c' n_c' (the dominant
category gets 1). An answer whose voting links cover less than ``min_coverage`` of its characters (an explanation
that mentions an entity in passing) is ``other`` (y_other = 1). The gold set is {c : y_c ≥ 0.5} (``mrc.categories``).
The defaults were tuned on ``examples/categories_tune.json``; ``examples/categories_check.json`` scores them.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mrc.categories import DEFAULT_CATEGORIES, CategoryLabels, gold_set
from mrc.data import Example
from retrieval.linker import EntityLinker, Link, LinkerConfig

DEFAULT_TYPE_MAP = {
    # Chinese: index types from CMeKG relations, the xywy term lists and kbert_Medical.spo
    "疾病": "Diagnosis", "disease": "Diagnosis",
    "药物": "Medication", "药品": "Medication", "drug": "Medication",
    "症状": "Symptom", "symptom": "Symptom",
    "治疗": "Procedure", "手术": "Procedure",
    "检查": "Lab", "check": "Lab",
    # English: Hetionet node kinds (configs/kg/hetionet.yaml)
    "compound": "Medication", "pharmacologic class": "Medication", "side effect": "Symptom",
}


class LabelConfig(BaseModel):
    """``scripts/label_categories.py`` settings."""

    model_config = ConfigDict(extra="forbid")

    categories: list[str] = Field(default_factory=lambda: list(DEFAULT_CATEGORIES))
    other: str = Field("Other", description="the category of answers without a typed entity")
    type_map: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_TYPE_MAP),
                                     description="entity type → category (case-insensitive)")
    min_score: float = Field(0.8, ge=0, le=1, description="overlap links below this score do not vote")
    min_chars: int = Field(2, ge=1, description="shorter links do not vote (肝, 水: typed noise in large KGs)")
    min_coverage: float = Field(0.5, ge=0, le=1, description="share of answer characters the voting links must cover")
    linker: LinkerConfig = Field(default_factory=LinkerConfig)
    sample: int = Field(50, ge=0, description="answers printed as a sample")
    seed: int = 0

    @model_validator(mode="after")
    def _known_categories(self) -> "LabelConfig":
        unknown = sorted({*self.type_map.values(), self.other} - set(self.categories))
        if unknown:
            raise ValueError(f"type_map/other name categories {unknown} that are not in categories")
        self.type_map = {k.lower(): v for k, v in self.type_map.items()}
        return self


def soft_label(answers: Sequence[tuple[str, Sequence[Link]]], config: LabelConfig) -> dict[str, float]:
    """y from the answers of one question, each with its links (see the module docstring)."""
    votes: Counter[str] = Counter()
    covered = total = 0
    for text, links in answers:
        chars: set[int] = set()
        voting = [(link, category) for link in links
                  if (category := config.type_map.get((link.type or "").lower())) is not None
                  and link.end - link.start >= config.min_chars
                  and (link.rule == "exact" or link.score >= config.min_score)]
        spans = {(link.start, link.end) for link, _ in voting}
        for link, category in voting:
            if any(a <= link.start and link.end <= b and b - a > link.end - link.start for a, b in spans):
                continue
            votes[category] += link.end - link.start
            chars.update(range(link.start, link.end))
        covered, total = covered + len(chars), total + len(text)
    if not votes or covered < config.min_coverage * total:
        return {config.other: 1.0}
    top = max(votes.values())
    return {c: round(n / top, 4) for c, n in sorted(votes.items())}


def label_examples(examples: Sequence[Example], linker: EntityLinker, config: LabelConfig
                   ) -> tuple[CategoryLabels, dict[str, Any]]:
    """(labels of every answerable example, report: coverage per category and a sample of labelled answers)."""
    answerable = [e for e in examples if e.gold_texts]
    texts = [t for e in answerable for t in e.gold_texts]
    links_of = dict(zip(texts, linker.link_many(texts)))
    labels, sample_rows = {}, []
    for e in answerable:
        answers = [(t, links_of[t]) for t in dict.fromkeys(e.gold_texts)]
        labels[e.id] = soft_label(answers, config)
        links = [link for _, found in answers for link in found]
        sample_rows.append({"id": e.id, "question": e.question, "answer": e.gold_texts[0],
                            "categories": sorted(gold_set(labels[e.id])),
                            "entities": [f"{l.text}→{l.entity}/{l.type}" for l in links if l.type]})
    coverage = Counter(c for soft in labels.values() for c in gold_set(soft))
    report = {"questions": len(examples), "labelled": len(labels),
              "multi_label": sum(len(gold_set(s)) > 1 for s in labels.values()),
              "coverage": {c: {"questions": coverage[c], "share": round(coverage[c] / max(1, len(labels)), 4)}
                           for c in config.categories},
              "sample": random.Random(config.seed).sample(sample_rows, min(config.sample, len(sample_rows)))}
    return CategoryLabels(categories=list(config.categories), labels=labels, report=report), report


def check_against(labels: CategoryLabels, hand: CategoryLabels) -> dict[str, Any]:
    """Label precision/recall against hand labels, over the categories of the questions both label:
    precision = |auto ∩ hand| / |auto|, recall = |auto ∩ hand| / |hand| (micro), and exact-set agreement."""
    shared = [q for q in hand.labels if q in labels.labels]
    tp = fp = fn = exact = 0
    for q in shared:
        auto, gold = gold_set(labels.labels[q]), gold_set(hand.labels[q])
        tp, fp, fn = tp + len(auto & gold), fp + len(auto - gold), fn + len(gold - auto)
        exact += auto == gold
    return {"questions": len(shared), "precision": round(100 * tp / max(1, tp + fp), 2),
            "recall": round(100 * tp / max(1, tp + fn), 2), "exact_set_agreement": round(100 * exact / max(1, len(shared)), 2)}
