"""Answer metrics by hand: CMRC 2018 (official script's logic) for Chinese datasets, SQuAD for English ones."""

from __future__ import annotations

import json

import pytest

from conftest import ROOT
from mrc.data import Answer, DataError, Example, read_dataset, read_predictions
from mrc.error_profile import error_profile, summary_line
from mrc.metrics import cmrc_clean, cmrc_em_f1, cmrc_tokens, dataset_metric, em_f1, evaluate_predictions, squad_em_f1


def test_cmrc_segmentation_drops_punctuation_without_splitting() -> None:
    # ASCII "!" is not in the official punctuation list: NLTK splits it off the Latin run
    assert cmrc_tokens("CT检查，显示 ok!") == ["ct", "检", "查", "显", "示", "ok", "!"]
    assert cmrc_tokens("8～10cm") == ["810cm"]  # "～" is dropped and does not split the run
    assert cmrc_tokens("50%") == ["50", "%"]
    assert cmrc_tokens("12.6-13.3千帕") == ["12.613.3", "千", "帕"]
    assert cmrc_clean(" A、B ") == "ab" and cmrc_clean("a b") == "a b"


def test_cmrc_metric_by_hand() -> None:
    assert cmrc_em_f1("多饮、多尿。", "多饮多尿") == (1.0, 1.0)
    em, f1 = cmrc_em_f1("北京大学", "北京大学附属医院")  # LCS 4: P = 1, R = 1/2
    assert em == 0.0 and f1 == pytest.approx(2 / 3)
    assert cmrc_em_f1("尿多", "多尿")[1] == pytest.approx(0.5)  # substring, not bag of characters
    assert cmrc_em_f1("", "多尿") == (0.0, 0.0)
    # a Latin-only gold is still scored CMRC style: tokens [810cm, 并, 且] vs [810cm] → P 1/3, R 1
    assert cmrc_em_f1("8～10cm，并且", "8～10cm") == (0.0, pytest.approx(0.5))
    assert cmrc_em_f1("8~10cm", "8～10cm") == (1.0, 1.0)  # both tildes are in the list
    assert cmrc_em_f1("50%", "50") == (0.0, pytest.approx(2 / 3))  # [50, %] vs [50]
    # a range is one Latin run once "/" and "～" are dropped: a part of it shares no token
    assert cmrc_em_f1("1/4000", "1/4000～1/8000") == (0.0, 0.0)
    assert cmrc_tokens("12.6-13.3千帕（95-100mmHg）") == ["12.613.3", "千", "帕", "95100mmhg"]
    em, f1 = cmrc_em_f1("12.6-13.3千帕", "12.6-13.3千帕（95-100mmHg）")  # LCS 3: P = 1, R = 3/4
    assert em == 0.0 and f1 == pytest.approx(2 * 0.75 / 1.75)


def test_best_over_golds_with_one_metric() -> None:
    assert em_f1("百万分之一", ["约百万分之一", "百万分之一"], "cmrc") == (1.0, 1.0)
    assert em_f1("8～10cm，并且", ["8～10cm"], "squad") == (0.0, 0.0)  # why the choice is per dataset


def test_squad_metric_by_hand() -> None:
    assert squad_em_f1("The Cat!", "cat") == (1.0, 1.0)
    assert squad_em_f1("cat sat", "a cat sat on the mat")[1] == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert em_f1("cat sat", ["dog", "cat sat on mat"], "squad")[1] == pytest.approx(2 / 3)


def _example(qid: str, context: str, gold: str) -> Example:
    return Example(id=qid, question="q?", context=context, passage_id=qid, gold_texts=[gold])


def test_metric_is_chosen_per_dataset() -> None:
    zh = [_example("a", "患者体温升高到三十八度。", "8～10cm"), _example("b", "糖尿病的症状是多饮多尿。", "多饮")]
    en = [_example("c", "The patient had a fever of 38 degrees.", "38 degrees")]
    assert dataset_metric(zh) == "cmrc" and dataset_metric(en) == "squad" and dataset_metric(en, "cmrc") == "cmrc"
    report = evaluate_predictions(zh, {"a": "8～10cm，并且", "b": "多饮", "x": "?"})
    assert report["metric"] == "cmrc"
    assert report["overall"]["f1"] == pytest.approx(75.0)  # (0.5 + 1) / 2, the CMRC way for the Latin gold
    assert report["unknown_predictions"] == ["x"]
    assert evaluate_predictions(zh, {"a": "8～10cm，并且"}, "squad")["overall"]["f1"] == 0.0


def test_predictions_file_checked(tmp_path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"a": None, "b": {"answer": None, "support": "句子"}, "c": "x"}), encoding="utf-8")
    assert read_predictions(path) == {"a": {"answer": ""}, "b": {"answer": "", "support": "句子"},
                                      "c": {"answer": "x"}}
    for bad, words in (({"q1": 5}, "question q1: answer is int"), ({"q2": ["a"]}, "question q2: answer is list"),
                       ({"q3": {"answer": float("nan")}}, "question q3: answer is float"), ([1], "expected an object")):
        path.write_text(json.dumps(bad), encoding="utf-8")
        with pytest.raises(DataError, match=words):
            read_predictions(path)
    with pytest.raises(DataError, match="is a directory"):
        read_predictions(tmp_path)
    # the optional fields predict.py writes are kept (categories are scored, offsets and n-best profiled) …
    full = {"answer": "多尿", "categories": {"Symptom": 0.9}, "start": 3, "end": 5, "nbest": [{"text": "多尿"}],
            "entities": []}
    path.write_text(json.dumps({"q": full}), encoding="utf-8")
    assert read_predictions(path) == {"q": {k: v for k, v in full.items() if k != "entities"}}
    # … and a malformed one is named
    for bad, words in (({"categories": {"Symptom": 2}}, "categories is .* expected an object of probabilities"),
                       ({"start": -1}, "start is -1, expected a character offset"),
                       ({"end": True}, "end is true, expected a character offset"),
                       ({"nbest": [{"score": 1}]}, "nbest is .* expected a list of candidates")):
        path.write_text(json.dumps({"q9": {"answer": "a", **bad}}), encoding="utf-8")
        with pytest.raises(DataError, match=f"question q9: {words}"):
            read_predictions(path)


def test_error_profile_sorts_each_prediction_by_where_it_lies() -> None:
    context = "糖尿病的典型症状是多饮、多尿。患者还可出现视物模糊、多尿。治疗以控制血糖为主。"
    gold = Answer(text="多饮、多尿", start=context.index("多饮、多尿"))
    second = context.rindex("多尿")  # the second 多尿, in sentence 2
    ex = lambda qid: Example(id=qid, question="糖尿病有什么症状？", context=context, passage_id="p",  # noqa: E731
                             answers=[gold], gold_texts=[gold.text])
    predictions = {
        "exact": {"answer": "多饮、多尿。", "nbest": [{"text": "多饮、多尿。"}]},  # EM 1: punctuation is dropped
        "long": {"answer": "典型症状是多饮、多尿",
                 "nbest": [{"text": "典型症状是多饮、多尿"}, {"text": "多饮"}, {"text": "多饮、多尿"}]},
        "short": {"answer": "多尿"},  # no offsets: its first occurrence, inside the gold span
        "short_elsewhere": {"answer": "多尿", "start": second, "end": second + 2},  # its own offsets
        "cross": {"answer": "多尿。患者"},
        "same_sentence": {"answer": "糖尿病"},
        "other_sentence": {"answer": "控制血糖"},
        "empty": {"answer": ""},
    }
    examples = [ex(q) for q in [*predictions, "missing"]]
    examples.append(Example(id="unaligned", question="q?", context=context, passage_id="p", gold_texts=["胰岛素"]))
    examples.append(Example(id="impossible", question="q?", context=context, passage_id="p", is_impossible=True))
    profile = error_profile(examples, predictions, "cmrc")
    assert profile["questions"] == 9 and profile["unlocated"] == 1
    assert {k: v["count"] for k, v in profile["kinds"].items()} == {
        "exact": 1, "no_answer": 2, "contains_gold": 1, "inside_gold": 1, "overlaps_gold": 1,
        "elsewhere_gold_sentence": 1, "elsewhere_other_sentence": 2}
    assert profile["kinds"]["no_answer"]["share"] == pytest.approx(22.22)
    # 2 predictions carry candidates, 3 at most: an exact one first for one, third for the other
    assert profile["nbest_questions"] == 2 and profile["nbest_em_at"] == {"1": 50.0, "3": 100.0}
    assert profile["median_chars"] == {"predicted": 4, "gold": 5}  # of the 7 answered
    assert summary_line(profile).startswith("answers on 9 questions: exact 11.1%, no answer 22.2%")
    assert summary_line(profile).endswith("an exact answer among the 3 best candidates: 100.0%")


@pytest.mark.parametrize("data, where", [
    ({"data": [1]}, r"data\[0\] is int"),
    ({"data": [{"paragraphs": [{"context": "上下文。", "qas": [5]}]}]}, r"qas\[0\] is int"),
    ({"data": [{"paragraphs": [{"context": "上下文。", "qas": [{"id": "q", "question": "问？", "answers": "abc"}]}]}]},
     r"answers \(question q\) is str"),
    ({"data": [{"paragraphs": [{"context": "上下文。", "qas": [{"id": "q", "question": "问？",
                                                             "answers": [{"text": "上", "answer_start": 1e999}]}]}]}]},
     "answer_start inf is not a number"),
    ({"data": [{"paragraphs": "x"}]}, r"data\[0\].paragraphs is str"),
])
def test_malformed_dataset_is_an_error_with_its_json_path(tmp_path, data, where) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(DataError, match=where):
        read_dataset(path)


def test_sample_dataset_is_chinese() -> None:
    assert dataset_metric(read_dataset(ROOT / "examples" / "sample_mrc.json")) == "cmrc"
