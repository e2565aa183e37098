"""The intent scorer of bench/kg_answer_signal.py: which candidates a question's intent asks for, and the
lexicographic order that puts them first, checked by hand."""

from __future__ import annotations

import numpy as np

from bench.kg_answer_signal import intent_scores, lexicographic, precision_at_1
from mrc.category_labels import LabelConfig

TYPES = ["症状", "疾病", None, "药物", "部位"]   # entity id → index type
CANDIDATES = np.arange(len(TYPES))


def test_intent_scores_by_hand() -> None:
    config = LabelConfig()
    # 症状 → {Symptom}; 疾病 counts too (Diagnosis and Symptom are confusable in the KG's types)
    assert intent_scores("糖尿病有哪些症状？", CANDIDATES, TYPES, config).tolist() == [1, 1, 0, 0, 0]
    # (什么|哪些)药 → {Medication}
    assert intent_scores("糖尿病用哪些药？", CANDIDATES, TYPES, config).tolist() == [0, 0, 0, 1, 0]
    # an explanation (no category), a place (Other only) and no intent at all: nothing is asked for
    for question in ("糖尿病为什么会多尿？", "胰腺位于什么部位？", "糖尿病"):
        assert intent_scores(question, CANDIDATES, TYPES, config).tolist() == [0, 0, 0, 0, 0]


def test_lexicographic_puts_the_admitted_first() -> None:
    first, then = np.array([0.0, 1.0, 0.0, 1.0]), np.array([5.0, -3.0, 2.0, -1.0])
    assert np.argsort(-lexicographic(first, then)).tolist() == [3, 1, 0, 2]
    assert lexicographic(np.zeros(4), then).tolist() == then.tolist()   # no intent: the base order
    hits = np.array([False, True, False, False])
    assert precision_at_1(then, hits) == 0.0 and precision_at_1(lexicographic(first, then), hits) == 0.0
    assert precision_at_1(lexicographic(first, np.zeros(4)), hits) == 0.5   # ties at the top share p@1
