"""The subgroups of bench/anchor_subgroups.py: which questions the KG's top-ranked entity answers, and the recorded
differences split by them, checked by hand."""

from __future__ import annotations

import pytest

from bench.anchor_subgroups import GROUPS, anchor_group, kg_anchor, per_question_differences, split_by_group, text_anchor
from mrc.data import Answer, Example
from retrieval.linker import Link

PASSAGE = "糖尿病的症状有多饮多尿，可用二甲双胍治疗。"


def link(text: str, entity_id: int) -> Link:
    start = PASSAGE.index(text)
    return Link(start, start + len(text), text, "n", entity_id, text, None, "exact", 1.0)


def example(answer: str) -> Example:
    return Example(id="q", question="糖尿病用什么药治疗？", context=PASSAGE, passage_id="p",
                   answers=[Answer(text=answer, start=PASSAGE.index(answer))])


def test_anchor_groups_by_hand() -> None:
    links = [link("多饮", 1), link("多尿", 2), link("二甲双胍", 3)]
    drug = example("二甲双胍")
    assert kg_anchor(links, {}) == []                                          # nothing scored: no anchor
    assert anchor_group(kg_anchor(links, {}), drug, 16) == "none"
    assert anchor_group(kg_anchor(links, {1: -3.0, 3: -1.0}), drug, 16) == "hit"     # the top entity is the answer
    assert kg_anchor(links, {1: -1.0, 3: -1.0}) == [(7, 9), (14, 18)]           # ties share the top
    assert anchor_group(kg_anchor(links, {1: -1.0, 3: -3.0}), drug, 16) == "near"    # 5 characters between: offset 6
    assert anchor_group(kg_anchor(links, {1: -1.0, 3: -3.0}), drug, 6) == "near"
    assert anchor_group(kg_anchor(links, {1: -1.0, 3: -3.0}), drug, 5) == "miss"     # … beyond a radius of 5
    assert anchor_group([(14, 18)], example("多饮多尿"), 16) == "near"
    assert anchor_group([(7, 9)], example("多饮多尿"), 16) == "hit"              # a mention inside the answer
    assert anchor_group([(14, 18)], example("二甲"), 16) == "hit"                # an answer inside the mention
    assert anchor_group([(14, 18)], example("治疗"), 1) == "near"                # adjacent: offset 1
    unanswered = example("治疗").model_copy(update={"answers": []})
    assert anchor_group([(14, 18)], unanswered, 16) == "miss"                   # nothing to be near


def test_text_anchor_marks_bigrams_shared_with_the_question() -> None:
    # question 糖尿病用什么药治疗？: shared bigrams 糖尿, 尿病 (0–3) and 治疗 (18–20); 二甲双胍 shares none
    assert text_anchor(example("二甲双胍")) == [(0, 3), (18, 20)]
    assert anchor_group(text_anchor(example("二甲双胍")), example("二甲双胍"), 16) == "near"


def test_differences_average_the_runs_both_sides_have() -> None:
    def run(**scores: tuple[float, float, float]) -> dict:
        return {"questions": {q: dict(zip(("em", "f1", "support_em"), s)) for q, s in scores.items()}}

    a = {"0/1": run(x=(1, 1, 1), y=(0, 0.5, 1)), "0/2": run(x=(0, 0.5, 0)), "1/1": run(z=(1, 1, 1))}
    b = {"0/1": run(x=(0, 0, 1), y=(1, 1, 1)), "0/2": run(x=(0, 0.25, 1))}     # no 1/1: z is not compared
    got = per_question_differences(a, b)
    assert set(got) == {"x", "y"}
    assert got["x"] == pytest.approx({"em": 50.0, "f1": 62.5, "support_em": -50.0})   # (100 + 0) / 2, …
    assert got["y"] == pytest.approx({"em": -100.0, "f1": -50.0, "support_em": 0.0})


def test_split_by_group_by_hand() -> None:
    groups = {"a": "hit", "b": "hit", "c": "miss", "d": "miss", "e": "miss", "f": "none"}   # no "near" question
    values = {"a": 100, "b": 0, "c": 0, "d": 0, "e": -100, "f": 0}
    differences = {q: {"em": v, "f1": v / 2, "support_em": 0.0} for q, v in values.items()}
    split = split_by_group(differences, groups, GROUPS, ("hit", "miss"), 1000)
    hit, miss, none = (split["groups"][g] for g in ("hit", "miss", "none"))
    assert (hit["questions"], hit["em_diff"], hit["f1_diff"]) == (2, 50.0, 25.0)
    assert (miss["em_sign_test"]["better"], miss["em_sign_test"]["worse"]) == (0, 1)
    assert (miss["questions"], miss["em_diff"]) == (3, pytest.approx(-33.33))
    assert none["questions"] == 1 and none["em_ci95"] is None         # one question has no interval
    assert hit["em_ci95"][0] <= 50.0 <= hit["em_ci95"][1]
    assert split["groups"]["near"] == {"questions": 0, "em_diff": None, "f1_diff": None, "support_em_diff": None,
                                       "em_ci95": None, "f1_ci95": None, "support_em_ci95": None,
                                       "em_sign_test": {"better": 0, "worse": 0, "p": 1.0}}
    assert split["contrast_agree"]["em"]["df"] == 1                     # hit against miss only
    assert split["contrast_agree"]["support_em"] is None                # no spread: no test
