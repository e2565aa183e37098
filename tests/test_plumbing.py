"""Config precedence (file ← flags ← --set), flags generated from the config fields, post-processing and the
support threshold, tested directly."""

from __future__ import annotations

import argparse
from pathlib import Path

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kgutil.cli import ConfigError, add_common_args, add_field_args, build_config
from mrc.data import Example, sentence_of, sentence_spans
from mrc.features import Feature
from mrc.inference import InferenceConfig
from mrc.postprocess import (Prediction, WindowOutputs, postprocess, rescore_answer, tune_sentence_weight,
                             tune_support_threshold)
from mrc.train import TrainConfig


def _args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_common_args(p)
    return p.parse_args(argv)


def test_config_file_then_flags_then_set(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 7\nlr: 0.5\nsplit: {fold: 1}\nmodel: {support_weight: 0.2}\n", encoding="utf-8")
    args = _args(["--config", str(path), "--set", "lr=0.25", "--set", "split.validation_share=0.2"])
    config = build_config(TrainConfig, args, {"epochs": 3, "seed": None})
    assert (config.epochs, config.lr, config.seed) == (3, 0.25, 1)  # flag over file; --set over both; default
    assert (config.split.fold, config.split.validation_share, config.model.support_weight) == (1, 0.2, 0.2)
    with pytest.raises(ConfigError, match="epochz"):
        build_config(TrainConfig, _args(["--set", "epochz=2"]), {})
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        build_config(TrainConfig, _args(["--set", "epochs"]), {})
    assert build_config(InferenceConfig, _args(["--set", "index=idx"]), {"model": Path("m")}).settings == \
        {"index": "idx"}


def test_flags_are_generated_from_the_config_fields(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    p = argparse.ArgumentParser()
    add_field_args(p, TrainConfig, {"fold": "split.fold", "train": "train", "precision": "precision",
                                    "resume": "resume", "category_oversample": "category_oversample",
                                    "answer_weight": "model.answer_weight", "intermediate": "intermediate.data"})
    add_common_args(p)
    path = tmp_path / "c.yaml"
    path.write_text("split: {fold: 1}\nprecision: bf16\n", encoding="utf-8")
    args = p.parse_args(["--config", str(path), "--fold", "3", "--train", "a.json", "b.json", "--no-resume",
                         "--category-oversample", "--answer-weight", "0", "--set", "precision=fp32"])
    config = build_config(TrainConfig, args)
    assert config.split.fold == 3 and config.train == [Path("a.json"), Path("b.json")]  # flag over file
    assert (config.resume, config.category_oversample, config.model.answer_weight) == (False, True, 0.0)
    assert config.precision == "fp32"  # --set over the file
    untouched = build_config(TrainConfig, p.parse_args(["--config", str(path)]))
    assert (untouched.split.fold, untouched.resume, untouched.precision) == (1, True, "bf16")  # unset flags: no say
    with pytest.raises(SystemExit):
        p.parse_args(["--precision", "fp8"])  # choices from the Literal
    assert "invalid choice: 'fp8'" in capsys.readouterr().err
    help_text = " ".join(p.format_help().split())
    assert "--no-resume resume = false (default true)" in help_text  # the switch says which way it turns
    assert "(default ../shared/data/cmrc2018/cmrc2018_dev.json ../shared/data/cmrc2018/cmrc2018_trial.json)" in \
        help_text  # as one would type it
    assert "--no-resume" in help_text and "{fp32,bf16,fp16}" in help_text and "(default 0.1)" not in help_text


def _feature(context: str, example_index: int = 0) -> Feature:
    """One window over ``context``: [CLS], one token per character, [SEP]."""
    offsets = [None, *((i, i + 1) for i in range(len(context))), None]
    return Feature(example_index=example_index, input_ids=list(range(len(offsets))),
                   token_type_ids=[0] * len(offsets), offsets=offsets,
                   sequence_ids=[None, *([1] * len(context)), None])


def test_postprocess_best_span_support_and_threshold() -> None:
    context = "糖尿病会多饮。常见多尿！也会消瘦。"
    example = Example(id="q", question="症状？", context=context, passage_id="p",
                      answers=[{"text": "多尿", "start": 9}], gold_texts=["多尿"], support=[1])
    feature = _feature(context)
    n = len(feature.offsets)
    start, end = np.full(n, -5.0), np.full(n, -5.0)
    start[1 + 9], end[1 + 10] = 4.0, 4.0   # "多尿"
    start[1 + 4], end[1 + 5] = 3.0, 3.5    # "多饮": second best
    end[1 + 3] = 6.0                        # an end before every good start: never paired with a later start
    support = np.zeros(n)
    spans = sentence_spans(context)
    for s, (a, b) in enumerate(spans):
        support[1 + a:1 + b] = (0.9, 0.6, 0.2)[s]
    other = _feature("糖尿病会多")  # a second window, no good span: categories come from the answer window
    other.example_index = 0
    m = len(other.offsets)
    outputs = WindowOutputs([start, np.full(m, -9.0)], [end, np.full(m, -9.0)], [support, np.full(m, 0.9)],
                            categories=[np.array([0.8, 0.1]), np.array([0.1, 0.9])])
    preds = postprocess([example], [feature, other], outputs, category_names=["Symptom", "Other"], n_best=5,
                        max_answer_length=10, support_threshold=0.95)
    pred = preds["q"]
    assert (pred.answer, pred.start, pred.end) == ("多尿", 9, 11)
    assert pred.categories == pytest.approx({"Symptom": 0.8, "Other": 0.1})
    assert pred.nbest[1]["text"] in ("多饮", "多饮。常见多尿")
    assert pred.sentence_probs == pytest.approx([0.9, 0.6, 0.2])
    assert pred.support_sentences == [1]  # τ = 0.95: only the sentence holding the answer
    # τ is tuned on support F1: 0.9 ≥ τ keeps sentence 0 too, which costs precision; the best τ drops it
    tau = tune_support_threshold([example], preds, "cmrc")
    assert tau > 0.9 and preds["q"].support_sentences == [1] and preds["q"].support == context[spans[1][0]:spans[1][1]]
    max_len = postprocess([example], [feature], WindowOutputs([start], [end], [support]), max_answer_length=1)["q"]
    assert len(max_len.answer) <= 1


def test_sentence_weight_moves_the_answer_to_the_sentence_the_support_head_believes() -> None:
    context = "糖尿病会多饮。常见多尿！也会消瘦。"
    spans = sentence_spans(context)
    feature = _feature(context)
    n = len(feature.offsets)
    start, end = np.full(n, -5.0), np.full(n, -5.0)
    start[1 + 4], end[1 + 5] = 4.0, 4.0    # "多饮" (sentence 0): top span score 8
    start[1 + 9], end[1 + 10] = 3.0, 3.0   # "多尿" (sentence 1): score 6
    support = np.zeros(n)
    for s, (a, b) in enumerate(spans):
        support[1 + a:1 + b] = (0.1, 0.9, 0.2)[s]
    outputs = WindowOutputs([start], [end], [support])
    example = Example(id="q", question="常见症状？", context=context, passage_id="p",
                      answers=[{"text": "多尿", "start": 9}], gold_texts=["多尿"], support=[1])

    def answer(w: float) -> tuple[str, list[int], list[int]]:
        pred = postprocess([example], [feature], outputs, n_best=5, max_answer_length=10, support_threshold=0.95,
                           sentence_weight=w)["q"]
        return pred.answer, pred.answer_sentences, pred.support_sentences

    # 8 + w·log 0.1 against 6 + w·log 0.9: the sentence wins once w > 2 / log 9 ≈ 0.91
    assert answer(0.0) == ("多饮", [0], [0]) and answer(0.5) == ("多饮", [0], [0])
    assert answer(1.0) == ("多尿", [1], [1])  # the support sentences follow the answer
    preds = postprocess([example], [feature], outputs, n_best=5, max_answer_length=10)
    assert tune_sentence_weight([example], preds, "cmrc", grid=(4.0, 0.5, 0.0, 1.0)) == 1.0  # smallest that wins
    assert preds["q"].answer == "多尿" and preds["q"].score == pytest.approx(6.0)
    wrong = example.model_copy(update={"gold_texts": ["多饮"], "answers": [{"text": "多饮", "start": 4}]})
    preds = postprocess([wrong], [feature], outputs, n_best=5, max_answer_length=10, sentence_weight=4.0)
    assert tune_sentence_weight([wrong], preds, "cmrc") == 0.0 and preds["q"].answer == "多饮"
    unanswerable = example.model_copy(update={"gold_texts": [], "answers": []})
    assert tune_sentence_weight([unanswerable], preds, "cmrc") == 0.0  # nothing to tune on: the top span


@st.composite
def _ranked_candidates(draw: st.DrawFn) -> tuple[str, Prediction]:
    """A passage of 1–5 sentences, its sentence probabilities, and an n-best list sorted by span score."""
    sentences = draw(st.lists(st.text("甲乙丙丁戊", min_size=1, max_size=8), min_size=1, max_size=5))
    context = "".join(f"{t}。" for t in sentences)
    probs = draw(st.lists(st.floats(0, 1), min_size=len(sentences), max_size=len(sentences)))
    spans = draw(st.lists(st.tuples(st.integers(0, len(context) - 1), st.integers(1, 6)), min_size=1, max_size=8,
                          unique=True))
    scores = sorted(draw(st.lists(st.floats(-20, 20), min_size=len(spans), max_size=len(spans))), reverse=True)
    nbest = [{"text": context[a:min(a + n, len(context))], "score": sc, "start": a, "end": min(a + n, len(context))}
             for (a, n), sc in zip(spans, scores)]
    return context, Prediction("", 0.0, 0, 0, probs, [], nbest=nbest)


@settings(max_examples=200, deadline=None)
@given(_ranked_candidates(), st.sampled_from([0.0, 0.5, 3.0, 1e6]))
def test_rescoring_picks_the_best_rescored_candidate(case: tuple[str, Prediction], w: float) -> None:
    context, pred = case
    spans = sentence_spans(context)

    def rescored(c: dict) -> float:
        return c["score"] + w * math.log(max(pred.sentence_probs[sentence_of(spans, c["start"])], 1e-6))

    rescore_answer(pred, context, w)
    chosen = next(c for c in pred.nbest if (c["start"], c["end"]) == (pred.start, pred.end))
    assert pred.answer == chosen["text"] == context[pred.start:pred.end] and pred.score == chosen["score"]
    assert all(rescored(chosen) >= rescored(c) for c in pred.nbest)
    assert pred.answer_sentences == sorted({sentence_of(spans, pred.start), sentence_of(spans, pred.end - 1)})
    if w == 0:
        assert (pred.start, pred.end) == (pred.nbest[0]["start"], pred.nbest[0]["end"])  # the top span
    rescore_answer(pred, context, 0.0)  # any w can be undone: the n-best keeps the span scores
    assert (pred.start, pred.end) == (pred.nbest[0]["start"], pred.nbest[0]["end"])
