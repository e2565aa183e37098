"""PVI: the per-task log-probabilities, out-of-fold estimates, V-information, task grouping, the PVI filter."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from mrc.data import DataError, Example, read_dataset, read_pvi
from mrc.features import Feature
from mrc.model import ModelConfig
from mrc.postprocess import WindowOutputs
from mrc.pvi import PVIConfig, _category, _span, _support, compute_pvi, null_examples, pvi_values, v_information
from mrc.task_groups import group_tasks
from mrc.train import TrainConfig, load_examples

SAMPLE = ROOT / "examples" / "sample_mrc.json"


def _window(context: str) -> Feature:
    offsets = [None, *((i, i + 1) for i in range(len(context))), None]
    return Feature(example_index=0, input_ids=list(range(len(offsets))), token_type_ids=[0] * len(offsets),
                   offsets=offsets, sequence_ids=[None, *([1] * len(context)), None])


def test_label_probabilities_of_each_task_by_hand() -> None:
    context = "多饮多尿。乏力。"
    ex = Example(id="q", question="症状？", context=context, passage_id="p", answers=[{"text": "多尿", "start": 2}],
                 gold_texts=["多尿"], support=[0], categories={"Symptom": 1.0})
    f = _window(context)
    n = len(f.offsets)
    start, end = np.zeros(n), np.zeros(n)
    start[1 + 2], end[1 + 3] = math.log(3.0), math.log(5.0)  # p_start = 3/(n+2), p_end = 5/(n+4)
    support = np.array([0.0, *([0.8] * 5), *([0.1] * 3), 0.0])
    out = WindowOutputs([start], [end], [support], categories=[np.array([0.9, 0.2])])
    assert _span(ex, [f], out, [0], None)[0] == pytest.approx(math.log2(3 / (n + 2) * 5 / (n + 4)))
    # sentence 0 is support (p 0.8), sentence 1 is not (p 0.1 → p(label) 0.9)
    assert _support(ex, [f], out, [0], None) == pytest.approx([math.log2(0.8), math.log2(0.9)])

    class Model:
        config = ModelConfig(categories=["Symptom", "Other"])

    assert _category(ex, [f], out, [0], Model())[0] == pytest.approx(math.log2(0.9) + math.log2(0.8))
    assert _span(ex.model_copy(update={"answers": []}), [f], out, [0], None) is None
    nulled = null_examples([ex], "span")[0]
    assert nulled.question == "？" and nulled.context == context
    assert null_examples([ex], "category")[0].context == "？"


def test_pvi_values_and_v_information() -> None:
    pvi = pvi_values({"a": [-1.0], "b": [-0.5, -2.0], "c": [-3.0]}, {"a": [-2.0], "b": [-1.5, -1.0]})
    assert pvi == {"a": 1.0, "b": pytest.approx(0.0)}  # b: mean(+1, −1); c has no null estimate
    v = v_information([1.0, 2.0, 3.0])
    assert v["v_information"] == 2.0 and v["ci95"] == pytest.approx([2 - 4.303 / math.sqrt(3), 2 + 4.303 /
                                                                     math.sqrt(3)], abs=1e-3)


def test_grouping_puts_indistinguishable_tasks_together(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pvi = {"span": rng.normal(0.0, 1.0, 300), "cmrc_span": rng.normal(0.05, 1.0, 300),
           "support": rng.normal(2.0, 1.0, 300)}
    result = group_tasks({k: list(v) for k, v in pvi.items()})
    assert result["groups"] == [["support"], ["cmrc_span", "span"]]
    assert result["welch"]["cmrc_span|span"]["different"] is False and result["anova"]["different"] is True
    for name, values in pvi.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "pvi.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "pvi": v}) + "\n"
                                                           for i, v in enumerate(values)), encoding="utf-8")
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "group_tasks.py"),
                          *(str(tmp_path / n) for n in pvi), "--out", str(tmp_path / "groups.json")],
                         capture_output=True, text=True, check=True)
    assert "groups: {support}  {cmrc_span, span}" in out.stdout
    assert json.loads((tmp_path / "groups.json").read_text())["groups"] == result["groups"]
    (tmp_path / "bad.jsonl").write_text('{"id": "q1"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="bad.jsonl:1: not a PVI row"):
        read_pvi(tmp_path / "bad.jsonl")


def test_out_of_fold_pvi_on_the_sample_and_the_pvi_filter(tiny_encoder: Path, tmp_path: Path) -> None:
    config = PVIConfig(task="span", data=[SAMPLE], out=tmp_path / "pvi", folds=2,
                       training={"encoder": str(tiny_encoder), "epochs": 2, "batch_size": 4, "lr": 3e-3,
                                 "progress": False, "intermediate": {"epochs": 0},
                                 "features": {"max_seq_length": 160, "doc_stride": 64}})
    # one process per fold (as on a GPU): the figures wait for the last fold; a rerun reuses the estimates
    waiting = compute_pvi(config.model_copy(update={"run_folds": [1]}))
    assert waiting["missing"] == ["g_fold0", "null_fold0"] and not (tmp_path / "pvi" / "pvi.jsonl").exists()
    summary = compute_pvi(config.model_copy(update={"run_folds": [0]}))
    kept = (tmp_path / "pvi/runs/g_fold1/model/best").stat().st_mtime_ns
    assert compute_pvi(config) == summary and (tmp_path / "pvi/runs/g_fold1/model/best").stat().st_mtime_ns == kept
    with pytest.raises(ValueError, match="not one of the 2 folds"):
        compute_pvi(config.model_copy(update={"run_folds": [2]}))
    rows = [json.loads(line) for line in (tmp_path / "pvi" / "pvi.jsonl").read_text().splitlines()]
    ids = sorted(e.id for e in read_dataset(SAMPLE))
    assert sorted(r["id"] for r in rows) == ids  # every example, out of fold, once
    for r in rows:
        assert r["log2_g"][0] <= 0 and r["log2_g_null"][0] <= 0
        assert r["pvi"] == pytest.approx(r["log2_g"][0] - r["log2_g_null"][0], abs=1e-4)
    assert {r["fold"] for r in rows} == {0, 1}
    assert summary["examples"] == len(ids) and summary["ci95"][0] <= summary["v_information"] <= summary["ci95"][1]
    assert (tmp_path / "pvi" / "histogram.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "pvi/runs/null_fold0/model/train_config.json").read_text())
    assert saved["model"]["support_weight"] == 0.0 and saved["model"]["answer_weight"] == 1.0
    # the filter: training questions below the threshold are left out
    values = read_pvi(tmp_path / "pvi")
    threshold = float(np.median(list(values.values())))
    split = load_examples(TrainConfig(train=[SAMPLE], split={"validation_share": 0.0}, pvi=tmp_path / "pvi",
                                      pvi_threshold=threshold))
    assert sorted(e.id for e in split.train) == sorted(q for q, v in values.items() if v >= threshold)


def test_category_pvi_runs_with_null_passages(tiny_encoder: Path, tmp_path: Path) -> None:
    from mrc.categories import CategoryLabels
    from test_categories import CATEGORIES, SAMPLE_LABELS

    labels = tmp_path / "c.json"
    CategoryLabels(categories=CATEGORIES, labels=SAMPLE_LABELS).write(labels)
    summary = compute_pvi(PVIConfig(task="category", data=[SAMPLE], categories=labels, out=tmp_path / "pvi",
                                    folds=2, training={"encoder": str(tiny_encoder), "epochs": 1, "progress": False,
                                                       "intermediate": {"epochs": 0},
                                                       "features": {"max_seq_length": 160, "doc_stride": 64}}))
    assert summary["examples"] == len(SAMPLE_LABELS) and summary["task"] == "category"
    null_train = read_dataset(tmp_path / "pvi/runs/null_fold0/train_data.json")
    assert {e.context for e in null_train} == {"？"}
    with pytest.raises(ValueError, match="needs categories"):
        compute_pvi(PVIConfig(task="category", data=[SAMPLE], out=tmp_path / "x"))


def test_grouping_figures_take_each_task_from_its_model(tiny_encoder: Path) -> None:
    from bench.task_grouping import grouping_figures, parameter_counts

    counts = parameter_counts(str(tiny_encoder), 6)
    hidden = json.loads((tiny_encoder / "config.json").read_text())["hidden_size"]
    assert (counts["span"], counts["support"]) == (2 * hidden + 2, hidden + 1)
    assert counts["category"] == hidden * 256 + 256 + 256 * 6 + 6
    summary = {"variants": {"span_support": {"em": 20.0, "em_ci95": [18, 22], "f1": 37.0, "f1_ci95": [35, 39],
                                             "support_em": 60.0, "support_em_ci95": [58, 62]},
                            "category_only": {"category_macro_f1": 58.0, "category_macro_f1_ci95": [50, 66]}}}
    summary["variants"]["span_support"]["over_seeds"] = {"seeds": [1, 2, 3], "f1": 36.0, "f1_ci95": [30.0, 42.0]}
    pvi = grouping_figures([["span", "support"], ["category"]], summary, counts)
    assert pvi["models"] == ["span_support", "category_only"]
    assert pvi["over_seeds"] == {"f1": {"mean": 36.0, "ci95": [30.0, 42.0], "seeds": [1, 2, 3]}}
    assert (pvi["em"], pvi["support_em"], pvi["category_macro_f1"]) == (20.0, 60.0, 58.0)
    assert pvi["parameters"] == 2 * counts["encoder"] + counts["span"] + counts["support"] + counts["category"]
    single = grouping_figures([["span"], ["support"], ["category"]], summary, counts)
    partial = grouping_figures([["span"], ["support"]], summary, counts)  # PVI measured for two tasks only
    assert "category_macro_f1" not in partial and partial["parameters"] == 2 * counts["encoder"] + counts["span"] + \
        counts["support"]
    assert "em" not in single and single["parameters"] == 3 * counts["encoder"] + sum(
        counts[t] for t in ("span", "support", "category"))


def test_category_figures_by_gold_category_and_hand_label_agreement() -> None:
    from bench.pvi_figures import by_category, label_agreement
    from mrc.categories import CategoryLabels

    cats = ["Diagnosis", "Lab", "Other"]
    auto = CategoryLabels(categories=cats, labels={"a": {"Diagnosis": 1.0}, "b": {"Lab": 1.0, "Diagnosis": 0.3},
                                                   "c": {"Other": 1.0}, "d": {"Lab": 1.0}})
    values = {"a": -1.0, "b": 2.0, "c": -0.5, "d": 0.0, "e": 5.0}
    assert by_category(values, auto) == {"Diagnosis": {"questions": 1, "mean_pvi": -1.0},
                                         "Lab": {"questions": 2, "mean_pvi": 1.0},
                                         "Other": {"questions": 1, "mean_pvi": -0.5}}
    hand = CategoryLabels(categories=cats, labels={"a": {"Diagnosis": 1.0}, "c": {"Lab": 1.0}, "b": {"Lab": 1.0},
                                                   "d": {"Other": 1.0}, "z": {"Other": 1.0}})
    found = label_agreement(values, auto, [hand])  # below 0: a agrees, c not; at or above: b agrees (0.3 < ½), d not
    assert found["below_0"] == {"questions": 2, "agreement": 0.5}
    assert found["at_or_above_0"] == {"questions": 2, "agreement": 0.5} and found["fisher_p"] == 1.0


def test_comparisons_pair_the_pvi_models_with_each_other_groupings() -> None:
    from bench.task_grouping import comparisons

    groupings = {"all_tasks": [["span", "support", "category"]], "single_task": [["span"], ["support"], ["category"]],
                 "pvi": [["span"], ["support"], ["category"]], "reference": [["span", "support"]]}
    assert comparisons(groupings) == [("span:pvi-vs-all_tasks", "span_only", "all_tasks"),
                                      ("span:pvi-vs-reference", "span_only", "span_support"),
                                      ("support:pvi-vs-all_tasks", "support_only", "all_tasks"),
                                      ("support:pvi-vs-reference", "support_only", "span_support"),
                                      ("category:pvi-vs-all_tasks", "category_only", "all_tasks")]
    groupings["pvi"] = [["span", "support"]]  # PVI measured for two tasks only, which it groups
    assert ("span:pvi-vs-single_task", "span_support", "span_only") in comparisons(groupings)
    assert not [c for c in comparisons(groupings) if c[0].endswith("reference")]
