"""MRC pipeline: metrics by hand, reader errors and repairs, windows, a tiny model that overfits, CLIs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import ROOT, shared_path
from mrc.data import DataError, ReadReport, parse_support, read_dataset, sentence_spans
from mrc.features import Feature, FeatureConfig, check_coverage, prepare_features, recover_answer
from mrc.metrics import evaluate_predictions
from mrc.train import (SplitConfig, TrainConfig, load_examples, mix_schedule, sample_passages, split_passages,
                       train_mrc, write_squad)

SAMPLE = ROOT / "examples" / "sample_mrc.json"


def test_evaluate_predictions_by_type_and_support() -> None:
    examples = read_dataset(SAMPLE)
    preds = {e.id: {"answer": e.answers[0].text, "support": ""} for e in examples}
    first = examples[0]
    preds[first.id] = {"answer": "错误", "support": sentence_spans(first.context) and
                       first.context[slice(*sentence_spans(first.context)[first.support[0]])]}
    report = evaluate_predictions(examples, preds)
    n = len(examples)
    assert report["overall"]["em"] == pytest.approx(100 * (n - 1) / n, abs=1e-3)
    assert report["overall"]["support_em"] == pytest.approx(100 / n, abs=1e-3)
    assert set(report["by_question_type"]) == {"How", "Number", "What", "When", "Why"}
    assert report["by_context_type"]["药物"]["em"] == 100.0
    assert evaluate_predictions(examples, {})["missing_predictions"] == n


def test_evaluate_against_a_reference_pairs_the_questions(tmp_path: Path) -> None:
    """13 questions: all right against every other one right (0, 2, …, 12: 7 right) — EM +6/13 on each question
    that differs, CI by bootstrap over questions; a file against itself differs by exactly 0."""
    examples = read_dataset(SAMPLE)
    files = {"all": {e.id: e.answers[0].text for e in examples},
             "odd": {e.id: e.answers[0].text if i % 2 == 0 else "" for i, e in enumerate(examples)}}
    for name, preds in files.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(preds, ensure_ascii=False), encoding="utf-8")

    def paired(mine: str, reference: str) -> tuple[dict, str]:
        done = subprocess.run([sys.executable, str(ROOT / "scripts" / "evaluate.py"), "--data", str(SAMPLE),
                               "--predictions", str(tmp_path / mine), "--against", str(tmp_path / reference)],
                              capture_output=True, text=True, check=True)
        return json.loads(done.stdout)["paired"], done.stderr

    better, log = paired("all.json", "odd.json")
    assert better["questions"] == 13 and better["em_diff"] == better["f1_diff"] == round(100 * 6 / 13, 2)
    low, high = better["em_ci95"]
    assert 0 < low < 100 * 6 / 13 < high < 100 and better["em_ci_excludes_zero"]
    assert "EM +46.15" in log and "on 13 questions × 1 run — above" in log
    same, _ = paired("odd.json", "odd.json")
    assert same["em_diff"] == 0 and same["em_ci95"] == [0, 0] and not same["em_ci_excludes_zero"]


def test_support_labels_parsed_repaired_and_reported() -> None:
    assert parse_support("21,22") == [20, 21] and parse_support(7.0) == [6] and parse_support("x") is None
    assert parse_support(float("inf")) is None and parse_support([float("nan")]) is None
    report = ReadReport()
    examples = read_dataset(shared_path("data", "cmedmrc", "dev.json"), report=report)
    assert len(examples) == 1199 and len({e.passage_id for e in examples}) == 301
    assert report.support == {"kept": 935, "repaired": 264}
    dropped = ReadReport()
    read_dataset(shared_path("data", "cmedmrc", "dev.json"), support_policy="drop", report=dropped)
    assert dropped.support == {"kept": 935, "dropped": 264}


def test_bad_files_give_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [', encoding="utf-8")
    with pytest.raises(DataError, match="invalid JSON at line 1"):
        read_dataset(bad)
    para = {"context": "糖尿病患者多尿。", "qas": [{"id": "Q9", "question": "症状？"}]}
    bad.write_text(json.dumps({"data": [{"paragraphs": [para]}]}), encoding="utf-8")
    with pytest.raises(DataError, match="question Q9: missing field 'answers'"):
        read_dataset(bad)
    para["qas"][0]["answers"] = [{"text": "高血压", "answer_start": 2}]
    bad.write_text(json.dumps({"data": [{"paragraphs": [para]}]}), encoding="utf-8")
    with pytest.raises(DataError, match="question Q9: answer '高血压' at 2 is outside the context"):
        read_dataset(bad, answer_policy="strict")
    report = ReadReport()
    (example,) = read_dataset(bad, report=report)
    assert example.answers == [] and report.answers_dropped == 1 and example.gold_texts == ["高血压"]
    para["qas"].append({"id": "Q10", "question": "  ", "answers": []})  # an empty question: skipped, counted
    bad.write_text(json.dumps({"data": [{"paragraphs": [para]}]}), encoding="utf-8")
    report = ReadReport()
    assert [e.id for e in read_dataset(bad, report=report)] == ["Q9"] and report.questions_skipped == 1
    para["qas"].pop(0)
    bad.write_text(json.dumps({"data": [{"paragraphs": [para]}]}), encoding="utf-8")
    with pytest.raises(DataError, match="question Q10: the question is empty"):
        read_dataset(bad, answer_policy="strict")
    para["qas"] = [{"id": "Q9", "question": "症状？"}]
    para["qas"][0]["answers"] = [{"text": "多尿", "answer_start": 0}]  # misaligned: realigned to 5
    bad.write_text(json.dumps({"data": [{"paragraphs": [para]}]}), encoding="utf-8")
    (example,) = read_dataset(bad)
    assert example.answers[0].start == 5


def test_windows_that_leave_part_of_a_passage_uncovered_are_refused() -> None:
    """tokenizers 0.23.1–0.23.2 stop the overflow windows early: training would see truncated passages."""
    (ex,) = read_dataset(SAMPLE)[:1]
    n = len(ex.context)

    def window(start: int, end: int) -> Feature:
        offsets = [(i, i + 1) for i in range(start, end)]
        return Feature(0, [], [], [None, *offsets, None], [None, *[1] * len(offsets), None])

    ends = {ex.context: n}
    check_coverage([window(0, n // 2 + 5), window(n // 2 - 5, n)], [ex], ends)  # overlapping windows: whole
    with pytest.raises(ValueError, match=f"only up to character {n // 2} of {n}"):
        check_coverage([window(0, n // 2)], [ex], ends)  # the last window is missing
    with pytest.raises(ValueError, match="only up to character 10"):
        check_coverage([window(0, 10), window(20, n)], [ex], ends)  # a gap inside


def test_every_training_answer_is_recoverable_from_its_window_labels() -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(shared_path("models", "m3e-small")))
    examples = read_dataset(shared_path("data", "cmedmrc", "dev.json"))
    features = prepare_features(examples, tokenizer, FeatureConfig(max_seq_length=256, doc_stride=64))
    with_answer = [f for f in features if f.has_answer]
    assert {f.example_index for f in with_answer} == set(range(len(examples)))
    mismatched = []
    for f in with_answer:
        ex = examples[f.example_index]
        text = recover_answer(f, ex.context)
        a = ex.answers[0]
        boundary_inside_token = any(o and (o[0] < a.start < o[1] or o[0] < a.end < o[1]) for o in f.offsets)
        if boundary_inside_token:  # e.g. "1.2" inside the word piece "1.2cm": the token span covers it
            assert a.text in text
            mismatched.append(ex.id)
        else:
            assert text == a.text, ex.id
    assert len(set(mismatched)) <= 0.01 * len(examples)
    assert all(s in (0, 1, -100) for f in features for s in f.support)


def test_split_by_passage_never_splits_a_passage() -> None:
    examples = read_dataset(SAMPLE)
    examples = [e.model_copy(update={"passage_id": f"p{i % 7}", "id": f"q{i}"})
                for i in range(5) for e in examples]  # 65 questions on 7 passages
    tests = []
    for fold in range(3):
        split = split_passages(examples, SplitConfig(folds=3, fold=fold, validation_share=0.25))
        parts = [{e.passage_id for e in part} for part in (split.train, split.validation, split.test)]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert len(split.train) + len(split.validation) + len(split.test) == len(examples)
        assert split.validation and split.test
        tests += [e.id for e in split.test]
    assert sorted(tests) == sorted(e.id for e in examples)  # every question is tested exactly once
    again = split_passages(examples, SplitConfig(folds=3, fold=1, validation_share=0.25))
    assert [e.id for e in again.test] == [e.id for e in split_passages(examples, SplitConfig(
        folds=3, fold=1, validation_share=0.25)).test]
    other = split_passages(examples, SplitConfig(folds=3, fold=1, validation_share=0.25, seed=5))
    assert {e.passage_id for e in other.test} != {e.passage_id for e in again.test}  # the seed is used
    final = split_passages(examples, SplitConfig(validation_share=0.25))
    assert not final.test and len(final.train) + len(final.validation) == len(examples)
    with pytest.raises(ValueError, match="not one of the 3 folds"):
        split_passages(examples, SplitConfig(folds=3, fold=3))


def test_sampled_passages_are_reproducible_and_keep_a_text_on_one_side(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    examples = read_dataset(SAMPLE)
    twin = examples[0].model_copy(update={"passage_id": "twin", "id": "twin_q"})  # the same text under another id
    examples.append(twin)
    texts = sorted({e.context for e in examples})
    sample, rest = sample_passages(examples, 2, seed=3)
    assert len({e.context for e in sample}) == 2 and not {e.context for e in sample} & {e.context for e in rest}
    assert sorted(e.id for e in sample + rest) == sorted(e.id for e in examples)
    assert (examples[0] in sample) == (twin in sample)
    assert [e.id for e in sample] == [e.id for e in sample_passages(examples, 2, seed=3)[0]]
    assert {e.context for e in sample_passages(examples, 2, seed=4)[0]} != {e.context for e in sample}
    with pytest.raises(ValueError, match=f"cannot draw {len(texts)} of {len(texts)}"):
        sample_passages(examples, len(texts))
    # a test file is the run's test part; with a test fold as well the run refuses to guess
    write_squad(rest, tmp_path / "rest.json")
    write_squad(sample, tmp_path / "sample.json")
    split = load_examples(TrainConfig(train=[tmp_path / "sample.json"], test=tmp_path / "rest.json"))
    assert sorted(e.id for e in split.test) == sorted(e.id for e in rest)
    assert sorted(e.id for e in split.train + split.validation) == sorted(e.id for e in sample)
    with caplog.at_level("WARNING", logger="mrc.train"):
        load_examples(TrainConfig(train=[tmp_path / "sample.json"], test=tmp_path / "sample.json"))
    assert "2 passages of the test file" in caplog.text  # a test file that overlaps training is named
    with pytest.raises(ValueError, match="both name a test part"):
        load_examples(TrainConfig(train=[tmp_path / "sample.json"], test=tmp_path / "rest.json",
                                  split=SplitConfig(folds=2, fold=0)))


def test_sample_passages_cli_writes_both_sides_and_refuses_bad_counts(tmp_path: Path) -> None:
    script = [sys.executable, str(ROOT / "scripts" / "sample_passages.py"), "--data", str(SAMPLE)]
    done = subprocess.run([*script, "--count", "2", "--out", str(tmp_path / "a.json"), "--rest",
                           str(tmp_path / "b.json")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    a, b = read_dataset(tmp_path / "a.json"), read_dataset(tmp_path / "b.json")
    assert len({e.context for e in a}) == 2 and len(a) + len(b) == len(read_dataset(SAMPLE))
    bad = subprocess.run([*script, "--count", "99", "--out", str(tmp_path / "c.json")], capture_output=True, text=True)
    assert bad.returncode == 2 and "cannot draw 99" in bad.stderr and "Traceback" not in bad.stderr


@given(count=st.integers(0, 40), passes=st.integers(1, 3), epochs=st.integers(1, 9), seed=st.integers(0, 5))
def test_mixed_questions_are_each_trained_once_per_pass_spread_evenly(count: int, passes: int, epochs: int,
                                                                       seed: int) -> None:
    shares = mix_schedule(count, passes, epochs, seed)
    assert len(shares) == epochs and shares == mix_schedule(count, passes, epochs, seed)
    assert sum(shares, start=type(shares[0])()) == {q: passes for q in range(count)}
    sizes = [sum(share.values()) for share in shares]
    assert max(sizes) - min(sizes) <= 1


def test_mixing_the_intermediate_stage_trains_its_steps_inside_the_medical_epochs(tiny_encoder: Path,
                                                                                  tmp_path: Path) -> None:
    """One window per sample question and one example a step: 2 medical epochs train 2·n steps; mixing one pass
    over the same n questions adds n steps to them, and no stage model is trained first."""
    def steps(out: str, **intermediate: object) -> int:
        config = TrainConfig(encoder=str(tiny_encoder), train=[SAMPLE], validation=SAMPLE, out=tmp_path / out,
                             epochs=2, batch_size=1, progress=False, negative_windows=1.0,
                             intermediate={"data": [SAMPLE], "cache": tmp_path / "stage", **intermediate},
                             features=FeatureConfig(max_seq_length=256, doc_stride=64))
        train_mrc(config)
        return json.loads((tmp_path / out / "checkpoint" / "state.json").read_text())["state"]["step"]

    n = len(read_dataset(SAMPLE))
    assert steps("plain", epochs=0) == 2 * n
    assert steps("mixed", epochs=1, mix=True) == 3 * n
    assert not (tmp_path / "stage").exists()
    assert len(read_dataset(tmp_path / "mixed" / "train.json")) == n  # the mixed questions train, and stay apart


def test_tiny_model_overfits_and_resumes(tiny_encoder: Path, tmp_path: Path) -> None:
    config = TrainConfig(encoder=str(tiny_encoder), train=[SAMPLE], validation=SAMPLE, out=tmp_path / "run",
                         epochs=12, batch_size=4, lr=3e-3, warmup_ratio=0.0, progress=False, seed=3,
                         intermediate={"epochs": 0}, negative_windows=1.0, sentence_weights=[2.0],
                         features=FeatureConfig(max_seq_length=160, doc_stride=64))
    result = train_mrc(config)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.5 * losses[0]
    ems = [h["validation"]["overall"]["em"] for h in result.history]
    assert max(ems) >= 50 and max(ems) > ems[0]
    best = tmp_path / "run" / "best"
    assert {p.name for p in best.iterdir()} >= {"config.json", "kgmrc_config.json", "model.safetensors",
                                               "tokenizer.json"}
    saved = json.loads((best / "kgmrc_config.json").read_text(encoding="utf-8"))
    assert saved["sentence_weight"] == result.best_metrics["sentence_weight"] == 2.0  # inference rescores the same
    trained = saved["trained"]  # where it came from
    assert trained["validation"] == result.best_metrics["overall"] and trained["train_config"]["seed"] == 3
    assert result.history[trained["epoch"] - 1]["validation"]["overall"] == trained["validation"]
    resumed = train_mrc(config.model_copy(update={"epochs": 13}))
    assert len(resumed.history) == 13 and resumed.history[:12] == result.history
    # The CLIs: score the saved model, score its predictions file, predict one question.
    run = [sys.executable, str(ROOT / "scripts" / "evaluate.py"), "--data", str(SAMPLE), "--log-level", "WARNING"]
    by_model = json.loads(subprocess.run(run + ["--model", str(best)], capture_output=True, text=True,
                                         check=True).stdout)
    by_file = json.loads(subprocess.run(run + ["--predictions", str(tmp_path / "run" / "predictions.json"),
                                               "--html", str(tmp_path / "report.html")],
                                        capture_output=True, text=True, check=True).stdout)
    assert read_dataset(SAMPLE)[0].question in (tmp_path / "report.html").read_text(encoding="utf-8")
    assert by_model["overall"]["em"] == by_file["overall"]["em"] == result.best_metrics["overall"]["em"]
    assert by_model["sentence_weight"] == 2.0 and by_model["overall"] == result.best_metrics["overall"]
    # Tune the saved model's post-processing again, as training does: print only, then write.
    tune = [sys.executable, str(ROOT / "scripts" / "tune_postprocessing.py"), "--model", str(best), "--data",
            str(SAMPLE), "--sentence-weights", "0", "2", "--log-level", "WARNING"]
    printed = json.loads(subprocess.run(tune + ["--no-write"], capture_output=True, text=True, check=True).stdout)
    assert printed["former"]["sentence_weight"] == 2.0 and printed["tuned"]["sentence_weight"] in (0.0, 2.0)
    assert json.loads((best / "kgmrc_config.json").read_text(encoding="utf-8")) == saved  # --no-write wrote nothing
    written = json.loads(subprocess.run(tune, capture_output=True, text=True, check=True).stdout)
    assert written == printed
    retuned = json.loads((best / "kgmrc_config.json").read_text(encoding="utf-8"))
    assert retuned["retuned"] == [written] and retuned["sentence_weight"] == written["tuned"]["sentence_weight"]
    rescored = json.loads(subprocess.run(run + ["--model", str(best)], capture_output=True, text=True,
                                         check=True).stdout)
    assert rescored["overall"] == written["figures"] and rescored["sentence_weight"] == retuned["sentence_weight"]
    assert rescored["overall"]["f1"] >= by_model["overall"]["f1"]  # the grid holds the former w
    (best / "kgmrc_config.json").write_text(json.dumps(saved, ensure_ascii=False), encoding="utf-8")
    assert by_model["errors"] == by_file["errors"] and by_model["errors"]["nbest_questions"] == 13  # offsets, n-best
    assert by_model["errors"]["kinds"]["exact"]["share"] == pytest.approx(by_model["overall"]["em"], abs=0.01)
    # Every question of a file without answers, in batches: the same predictions as the model's evaluation.
    unlabelled = json.loads(SAMPLE.read_text(encoding="utf-8"))
    for qa in (qa for d in unlabelled["data"] for para in d["paragraphs"] for qa in para["qas"]):
        del qa["answers"]
    (tmp_path / "questions.json").write_text(json.dumps(unlabelled, ensure_ascii=False), encoding="utf-8")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "predict.py"), "--model", str(best), "--data",
                    str(tmp_path / "questions.json"), "--out", str(tmp_path / "batch.json"), "--batch-size", "3"],
                   capture_output=True, text=True, check=True)
    by_batch = json.loads(subprocess.run(run + ["--predictions", str(tmp_path / "batch.json")], capture_output=True,
                                         text=True, check=True).stdout)
    assert by_batch["overall"] == by_model["overall"]
    ex = read_dataset(SAMPLE)[1]
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "predict.py"), "--model", str(best), "--question",
                          ex.question, "--passage", ex.context, "--json", "--plot", str(tmp_path / "p.png"),
                          "--html", str(tmp_path / "p.html")],
                         capture_output=True, text=True, check=True)
    answer = json.loads(out.stdout)
    assert answer["answer"] and answer["support"] and (tmp_path / "p.png").stat().st_size > 1000
    assert answer["windows"] == 1 and answer["sentence_weight"] == 2.0  # the saved w, applied
    page = (tmp_path / "p.html").read_text(encoding="utf-8")
    assert f'<span id="answer">{answer["answer"]}</span>' in page
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "predict.py"), "--model", str(best), "--question",
                          ex.question, "--passage", ex.context * 12, "--max-passage-chars", "500"],
                         capture_output=True, text=True, check=True)
    assert "over --max-passage-chars 500" in out.stderr and int(out.stdout.split("windows: ")[1].split()[0]) > 5
