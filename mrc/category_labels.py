"""Answer-category labels from the KG and the question: link every gold answer, map its entities' types to
categories, and keep the categories the question asks for.

For a question with gold answers A, the links L are the entity links inside the answers (``retrieval.linker``)
made by the exact rule or scoring at least ``min_score``, over at least ``min_chars`` characters, whose entity type
maps to a category (``type_map``, case-insensitive), and not inside a longer such link (the longest mention speaks:
"type 2 diabetes mellitus" is a Disease, whatever "diabetes mellitus" alone would be).

The question's intent is the first of ``question_intents`` whose pattern occurs in it: the categories C_q an answer
to it can hold, the first its default (症状/表现 → {Symptom}; 主治/适应症 → {Diagnosis, Symptom}; 部位/用量/产地 →
{Other}; …), or no restriction (为什么: an explanation). Each link votes for cat(l) when cat(l) ∈ C_q, for the
category of C_q in its ``confusable`` group otherwise (疾病 and 症状 overlap: 头痛 is a disease in the xywy term
list and a symptom in CMeKG's relations), or not at all, with the number of answer characters it covers:
n_c = Σ_{l votes for c} |l|. The soft label is y_c = n_c / max_c' n_c' (the dominant category gets 1); without
votes it is the intent's default (``other`` without an intent). When that default is ``other`` (no intent, an
explanation, a population), an answer whose links cover less than ``min_coverage`` of its content characters
(punctuation and spaces do not count) is ``other`` too: an explanation that mentions an entity in passing. The
gold set is {c : y_c ≥ 0.5} (``mrc.categories``). The defaults were tuned on ``examples/categories_tune.json``;
``examples/categories_check.json`` scores them (``examples/categories_check_second.json``: a second hand labelling
of the same answers, to tell label noise from rule errors).
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kgutil.stats import paired_ci
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


class QuestionIntent(BaseModel):
    """Questions matching ``pattern`` ask for an answer of ``categories`` (the first is the default); ``None``: they
    ask for no particular category (an explanation), and the answer's entities decide alone."""

    model_config = ConfigDict(extra="forbid")

    pattern: str = Field(description="regular expression searched in the question")
    categories: list[str] | None = Field(min_length=1)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"not a regular expression: {e}") from None
        return v


# Chinese question words (tuned on CMedMRC): an English question matches none and its entities decide alone
DEFAULT_QUESTION_INTENTS = [
    QuestionIntent(pattern=r"为什么|为何|原因|机制|记载", categories=None),
    QuestionIntent(pattern=r"(什么|哪些|哪类|哪种|何种|哪个)(人|患者)", categories=["Other", "Diagnosis", "Symptom"]),
    QuestionIntent(pattern=r"(什么|哪些|哪个|何)(部位|地区|地方|时候|时间|颜色|形状|因素|物品|类型)|哪里|多长时间|多久|"
                           r"怎么办|用法|用量|剂量|性味|功效|经络|分布|产于|位于|几次|多少天", categories=["Other"]),
    QuestionIntent(pattern=r"主治|适应症|治疗(什么|哪些)|用于(治疗)?(什么|哪些)", categories=["Diagnosis", "Symptom"]),
    QuestionIntent(pattern=r"症状|表现|体征|不良反应|副作用|异常", categories=["Symptom"]),
    QuestionIntent(pattern=r"疾病|并发症|病症|提示|见于", categories=["Diagnosis"]),
    QuestionIntent(pattern=r"检查|检测|试验|活检|化验|造影|确诊|诊断|正常值|阳性率|检出率|指检|指捡|测",
                   categories=["Lab"]),
    QuestionIntent(pattern=r"药物组成|(什么|哪些)药|稀释|同用|配伍|制作|制得|炮制", categories=["Medication"]),
    QuestionIntent(pattern=r"治疗|治|急救|手术|疗法|处理|拔", categories=["Procedure", "Medication"]),
]


class LabelConfig(BaseModel):
    """``scripts/label_categories.py`` settings."""

    model_config = ConfigDict(extra="forbid")

    categories: list[str] = Field(default_factory=lambda: list(DEFAULT_CATEGORIES))
    other: str = Field("Other", description="the category of answers without a typed entity")
    type_map: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_TYPE_MAP),
                                     description="entity type → category (case-insensitive)")
    min_score: float = Field(0.8, ge=0, le=1, description="overlap links below this score do not vote")
    min_chars: int = Field(2, ge=1, description="shorter links do not vote (肝, 水: typed noise in large KGs)")
    min_coverage: float = Field(0.5, ge=0, le=1, description="share of an answer's content characters the voting "
                                                              "links must cover when the question's default is other")
    question_intents: list[QuestionIntent] = Field(default_factory=lambda: list(DEFAULT_QUESTION_INTENTS),
                                                   description="what a question asks for; the first match wins")
    confusable: list[list[str]] = Field(default_factory=lambda: [["Diagnosis", "Symptom"]],
                                        description="categories the KG's types mix up: a vote for one counts for "
                                                    "another of its group when the question admits only that one")
    linker: LinkerConfig = Field(default_factory=LinkerConfig)
    sample: int = Field(50, ge=0, description="answers printed as a sample")
    seed: int = 0

    @model_validator(mode="after")
    def _known_categories(self) -> "LabelConfig":
        named = {*self.type_map.values(), self.other, *(c for g in self.confusable for c in g),
                 *(c for i in self.question_intents for c in i.categories or [])}
        unknown = sorted(named - set(self.categories))
        if unknown:
            raise ValueError(f"type_map/other/question_intents/confusable name categories {unknown} "
                             "that are not in categories")
        self.type_map = {k.lower(): v for k, v in self.type_map.items()}
        return self


def _content_chars(text: str) -> int:
    """Characters that can name something: punctuation, symbols and spaces (the 、 of a list) do not count."""
    return sum(unicodedata.category(ch)[0] not in "PZS" for ch in text)


def question_intent(question: str, config: LabelConfig) -> QuestionIntent | None:
    """The first intent whose pattern occurs in the question."""
    return next((i for i in config.question_intents if re.search(i.pattern, question)), None)


def admitted(category: str, intent: QuestionIntent | None, config: LabelConfig) -> str | None:
    """The category a vote for ``category`` counts for under the question's intent (see ``soft_label``); ``None``:
    the intent admits neither it nor a confusable one."""
    if intent is None or intent.categories is None or category in intent.categories:
        return category
    group = next((g for g in config.confusable if category in g), [])
    return next((c for c in intent.categories if c in group), None)


def soft_label(question: str, answers: Sequence[tuple[str, Sequence[Link]]], config: LabelConfig
               ) -> dict[str, float]:
    """y from the question and its answers, each with its links (see the module docstring)."""
    intent = question_intent(question, config)
    default = intent.categories[0] if intent and intent.categories else config.other
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
            chars.update(range(link.start, link.end))
            if (counted := admitted(category, intent, config)) is not None:
                votes[counted] += link.end - link.start
        covered, total = covered + _content_chars("".join(text[i] for i in chars)), total + _content_chars(text)
    if not votes or default == config.other and covered < config.min_coverage * total:
        return {default: 1.0}
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
        labels[e.id] = soft_label(e.question, answers, config)
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
    precision = |auto ∩ hand| / |auto|, recall = |auto ∩ hand| / |hand| (micro), exact-set agreement, and a 95%
    bootstrap CI of the precision over questions."""
    shared = [q for q in hand.labels if q in labels.labels]
    sets = [(gold_set(labels.labels[q]), gold_set(hand.labels[q])) for q in shared]
    tp = np.array([len(auto & gold) for auto, gold in sets], dtype=float)
    n_auto = np.array([len(auto) for auto, _ in sets], dtype=float)
    n_hand = np.array([len(gold) for _, gold in sets], dtype=float)
    lo, hi = paired_ci(tp, n_auto)[1] if shared else (0.0, 0.0)
    return {"questions": len(shared), "precision": round(100 * tp.sum() / max(1, n_auto.sum()), 2),
            "precision_ci95": [round(100 * lo, 2), round(100 * hi, 2)],
            "recall": round(100 * tp.sum() / max(1, n_hand.sum()), 2),
            "exact_set_agreement": round(100 * sum(auto == gold for auto, gold in sets) / max(1, len(shared)), 2)}
