"""Answer categories: labels from KG types (Chinese and English), the labels file, metrics, the category head in
both model families, training, prediction and evaluation with categories."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, shared_path
from kg.records import Triple
from kg.snapshot import Snapshot, snapshot_from_records
from mrc.categories import CategoryLabels, class_weights, gold_set, labels_digest, predicted_set, set_metrics
from mrc.category_labels import LabelConfig, check_against, label_examples, soft_label
from mrc.data import DataError, read_dataset
from mrc.features import FeatureConfig
from mrc.inference import evaluate_saved_model
from mrc.model import ModelConfig, load_model
from mrc.train import TrainConfig, category_repeats, selection_score, train_mrc
from retrieval.index import IndexConfig, build_index
from retrieval.linker import EntityLinker, Link

SAMPLE_QA = ROOT / "examples" / "sample_mrc.json"
SAMPLE_EN = ROOT / "examples" / "sample_en_mrc.json"
CATEGORIES = ["Diagnosis", "Medication", "Symptom", "Procedure", "Lab", "Other"]


def _index(triples: list[Triple], tmp: Path):  # type: ignore[no-untyped-def]
    snapshot_from_records(triples, tmp / "snap")
    return build_index(Snapshot.load(tmp / "snap"), IndexConfig(progress=False), tmp / "idx")


@pytest.fixture(scope="module")
def sample_index(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The shipped sample KG, typed by configs/kg/sample.yaml (疾病, 症状, 药品, 检查, …)."""
    from kgutil.cli import read_config_file
    from kg.reader import TripleReader
    from kg.records import ReaderConfig

    reader = ReaderConfig.model_validate(read_config_file(ROOT / "configs/kg/sample.yaml")["reader"])
    work = tmp_path_factory.mktemp("catidx")
    snapshot_from_records(TripleReader(reader).read([ROOT / "examples/sample_kg.tsv"]), work / "snap")
    return build_index(Snapshot.load(work / "snap"), IndexConfig(progress=False), work / "idx")


def _link(start: int, end: int, typ: str | None, rule: str = "exact", score: float = 1.0) -> Link:
    return Link(start, end, "x" * (end - start), "n", 0, "e", typ, rule, score)


def test_soft_label_votes_by_covered_characters() -> None:
    config = LabelConfig()
    # 4 symptom characters and 2 disease characters over a 6-character answer: Symptom 1, Diagnosis 0.5
    assert soft_label("", [("头痛头晕冠心", [_link(0, 2, "症状"), _link(2, 4, "symptom"), _link(4, 6, "疾病")])],
                      config) == {"Diagnosis": 0.5, "Symptom": 1.0}
    # links too short, too weak, untyped or of an unmapped type do not vote → Other
    assert soft_label("", [("肝大了吗", [_link(0, 1, "症状"), _link(0, 4, "疾病", "overlap", 0.5),
                                        _link(0, 2, None), _link(0, 2, "科室")])], config) == {"Other": 1.0}
    # an explanation that mentions an entity in passing (coverage 3/10 < 0.5) is Other
    assert soft_label("", [("因为糖尿病的缘故所以", [_link(2, 5, "疾病")])], config) == {"Other": 1.0}
    assert soft_label("", [("因为糖尿病的缘故所以", [_link(2, 5, "疾病")])],
                      LabelConfig(min_coverage=0.2)) == {"Diagnosis": 1.0}
    # coverage counts content characters: the separators of a list do not dilute it (4 of 4, not 4 of 8)
    assert soft_label("", [("头痛、，。头晕", [_link(0, 2, "症状"), _link(5, 7, "症状")])],
                      LabelConfig(min_coverage=0.9)) == {"Symptom": 1.0}
    with pytest.raises(ValueError, match="not in categories"):
        LabelConfig(type_map={"疾病": "Disease"})


def test_question_intents_keep_the_categories_the_question_asks_for() -> None:
    config = LabelConfig()
    disease, symptom, drug = _link(0, 2, "疾病"), _link(3, 5, "症状"), _link(0, 2, "药物")
    # a symptom question: the KG's 疾病 type of a symptom counts as Symptom (confusable), and only Symptom votes
    assert soft_label("感冒有哪些症状？", [("头痛、发热", [disease, symptom])], config) == {"Symptom": 1.0}
    # a disease question the other way round
    assert soft_label("会引起哪些并发症？", [("肺炎、咳嗽", [disease, symptom])], config) == {"Diagnosis": 1.0}
    # an indication admits both
    assert soft_label("这个药的适应症？", [("肺炎、咳嗽", [disease, symptom])], config) == {
        "Diagnosis": 1.0, "Symptom": 1.0}
    # a treatment question: a drug mentioned in a recipe counts without covering half of the answer …
    assert soft_label("如何治疗？", [("甘草一钱，煎汤和服，日三次", [drug])], config) == {"Medication": 1.0}
    # … and without a typed entity the answer is the intent's default
    assert soft_label("如何治疗？", [("卧床休息", [])], config) == {"Procedure": 1.0}
    assert soft_label("静脉滴注应该用什么稀释", [("葡萄糖注射液", [])], config) == {"Medication": 1.0}
    # questions for a place, an amount, an efficacy ask for no category, whatever the answer mentions
    assert soft_label("每次用量是多少？", [("甘草一钱", [drug])], config) == {"Other": 1.0}
    # a population is Other unless its diseases or symptoms make up the answer
    assert soft_label("哪些人禁用？", [("肺炎患者", [disease])], config) == {"Diagnosis": 1.0}
    assert soft_label("哪些人禁用？", [("患过肺炎以后的老年人", [_link(2, 4, "疾病")])], config) == {"Other": 1.0}
    # an explanation: entities decide, with the coverage rule
    assert soft_label("为什么要检查？", [("以免肺炎漏诊而耽误治疗", [_link(2, 4, "疾病")])], config) == {"Other": 1.0}
    # without intents (or for a question that matches none) only the entities speak
    assert soft_label("感冒有哪些症状？", [("头痛、发热", [disease, symptom])],
                      LabelConfig(question_intents=[])) == {"Diagnosis": 1.0, "Symptom": 1.0}
    with pytest.raises(ValueError, match="not a regular expression"):
        LabelConfig(question_intents=[{"pattern": "(症状", "categories": ["Symptom"]}])
    with pytest.raises(ValueError, match="not in categories"):
        LabelConfig(question_intents=[{"pattern": "症状", "categories": ["Sign"]}])


def test_labels_of_the_sample_answers_from_the_sample_kg(sample_index) -> None:  # type: ignore[no-untyped-def]
    examples = read_dataset(SAMPLE_QA)
    labels, report = label_examples(examples, EntityLinker(sample_index), LabelConfig(sample=3))
    got = {q: gold_set(v) for q, v in labels.labels.items()}
    assert got["P1_Q0"] == {"Symptom"}       # 多饮、多尿、多食和体重减轻
    assert got["P1_Q1"] == {"Medication"}    # 二甲双胍
    assert got["P2_Q0"] == {"Symptom"}       # 头痛、头晕、心悸
    assert got["P2_Q1"] == {"Diagnosis"}     # 脑卒中、冠心病和慢性肾病
    assert got["P3_Q1"] == {"Other"}         # 6个月
    assert report["labelled"] == len(examples) and len(report["sample"]) == 3
    assert sum(v["questions"] for v in report["coverage"].values()) == len(examples) + report["multi_label"]
    hand = CategoryLabels(categories=CATEGORIES, labels={"P1_Q0": {"Symptom": 1.0}, "P1_Q1": {"Diagnosis": 1.0},
                                                         "P3_Q1": {"Other": 1.0}})
    assert check_against(labels, hand) == {"questions": 3, "precision": 66.67, "precision_ci95": [0.0, 100.0],
                                           "recall": 66.67, "exact_set_agreement": 66.67}


def test_english_labels_over_hetionet_types(tmp_path: Path) -> None:
    """English: scispaCy tokens, Hetionet node kinds as types (Compound → Medication, Side Effect → Symptom)."""
    triples = [Triple(head="Metformin", relation="CtD", tail="type 2 diabetes mellitus", head_type="Compound",
                      tail_type="Disease"),
               Triple(head="Metformin", relation="CcSE", tail="Diarrhea", head_type="Compound",
                      tail_type="Side Effect"),
               Triple(head="migraine", relation="DpS", tail="Nausea", head_type="Disease", tail_type="Symptom"),
               Triple(head="asthma", relation="DpS", tail="Cough", head_type="Disease", tail_type="Symptom"),
               Triple(head="asthma", relation="DpS", tail="Hoarseness", head_type="Disease", tail_type="Symptom"),
               Triple(head="Salbutamol", relation="CtD", tail="asthma", head_type="Compound", tail_type="Disease")]
    index = _index(triples, tmp_path)
    assert index.language == "en"
    labels, _ = label_examples(read_dataset(SAMPLE_EN), EntityLinker(index), LabelConfig())
    got = {q: gold_set(v) for q, v in labels.labels.items()}
    assert got == {"EN1_Q0": {"Medication"}, "EN1_Q1": {"Symptom"}, "EN1_Q2": {"Other"},
                   "EN1_Q3": {"Diagnosis"}, "EN2_Q0": {"Symptom"}, "EN2_Q1": {"Medication"}}


def test_english_labels_with_the_hetionet_sample(tmp_path: Path) -> None:
    """The same sample against the real Hetionet sample, typed by configs/kg/hetionet.yaml."""
    hetionet = shared_path("data", "kg", "hetionet_5k_triples.tsv")
    from kgutil.cli import read_config_file
    from kg.reader import TripleReader
    from kg.records import ReaderConfig

    reader = ReaderConfig.model_validate(read_config_file(ROOT / "configs/kg/hetionet.yaml")["reader"])
    snapshot_from_records(TripleReader(reader).read([hetionet]), tmp_path / "snap")
    index = build_index(Snapshot.load(tmp_path / "snap"), IndexConfig(progress=False), tmp_path / "idx")
    labels, _ = label_examples(read_dataset(SAMPLE_EN), EntityLinker(index), LabelConfig())
    got = {q: gold_set(v) for q, v in labels.labels.items()}
    assert got["EN1_Q0"] == {"Medication"} and got["EN1_Q3"] == {"Diagnosis"} and got["EN1_Q2"] == {"Other"}
    assert got["EN1_Q1"] == {"Symptom"} and got["EN2_Q0"] == {"Symptom"}


def test_labels_file_errors_name_the_file_and_question(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    for payload, message in (
            ({"categories": ["A"], "labels": {"q1": {"B": 1.0}}}, "question q1: unknown categories"),
            ({"categories": ["A"], "labels": {"q1": {"A": 2.0}}}, "question q1: label weights"),
            ({"categories": ["A", "A"], "labels": {}}, "categories: Value error, category names repeat"),
            ({"labels": {}}, "categories: Field required")):
        path.write_text(json.dumps(payload), encoding="utf-8")
        with pytest.raises(DataError, match=message):
            CategoryLabels.read(path)
    path.write_text("{", encoding="utf-8")
    with pytest.raises(DataError, match="c.json: invalid JSON at line 1"):
        CategoryLabels.read(path)


def test_set_metrics_class_weights_and_predicted_sets() -> None:
    pairs = [({"A"}, {"A"}), ({"A", "B"}, {"A"}), ({"B"}, {"A"}), ({"C"}, {"C"})]
    m = set_metrics(pairs, ["A", "B", "C", "D"])
    # A: tp 2 fp 1 fn 0 → F1 0.8; B: tp 0 fn 2 → 0; C: 1.0; D never gold → left out of the macro mean
    assert m["accuracy"] == 50.0 and m["per_category"]["A"]["f1"] == 80.0
    assert m["macro_f1"] == pytest.approx(100 * (0.8 + 0 + 1) / 3, abs=1e-3)
    assert m["micro_f1"] == pytest.approx(100 * 2 * 3 / (2 * 3 + 1 + 2), abs=1e-3)  # tp 3, fp 1, fn 2
    assert class_weights([[1, 0], [1, 0], [1, 1], [0.5, 0]], 2) == [round(4 / (2 * 3.5), 6), 2.0]
    assert predicted_set({"A": 0.2, "B": 0.4}) == {"B"} and predicted_set({"A": 0.7, "B": 0.5}) == {"A", "B"}
    model = ModelConfig(categories=["A", "B"], category_class_weights=[0.5, 3.4])
    assert category_repeats(read_dataset(SAMPLE_QA)[0].model_copy(update={"categories": {"B": 1.0}}), model) == 3
    with pytest.raises(ValueError, match="1 category class weights for 2 categories"):
        ModelConfig(categories=["A", "B"], category_class_weights=[1.0])


def test_category_head_in_both_families_learns_and_masks_unlabelled_rows() -> None:
    from test_fusion import batch, tiny_model

    from mrc.model import BaselineMRC

    for pooling in ("cls", "span"):
        settings = {"categories": CATEGORIES[:3], "category_pooling": pooling}
        cmedbert = tiny_model(settings=settings)
        for m in (BaselineMRC(cmedbert.encoder, ModelConfig(**settings)), cmedbert):
            inputs = batch(torch.full((2, 12, 3), -1))
            labels = torch.tensor([[1.0, 0.0, 0.5], [-1.0, -1.0, -1.0]])  # the second window is unlabelled
            opt = torch.optim.Adam(m.parameters(), lr=1e-2)
            first = None
            for _ in range(30):
                out = m(**inputs, category_labels=labels)
                first = first if first is not None else out.category_loss.item()
                opt.zero_grad()
                out.loss.backward()
                opt.step()
            assert out.category_logits.shape == (2, 3) and out.category_loss.item() < 0.5 * first
            assert torch.sigmoid(out.category_logits[0, 0]) > 0.8
            unlabelled = m(**inputs, category_labels=torch.full((2, 3), -1.0))
            assert unlabelled.category_loss.item() == 0.0


def test_class_and_positive_weighting_by_hand() -> None:
    from mrc.model import BaselineMRC
    from test_fusion import tiny_model

    encoder = tiny_model().encoder
    logits, labels = torch.zeros(1, 2), torch.tensor([[1.0, 0.0]])  # p = ½ everywhere: each BCE term is ln 2
    ln2 = math.log(2)
    for weighting, expected in (("class", (2 * ln2 + 3 * ln2) / 2), ("positive", (2 * ln2 + ln2) / 2)):
        model = BaselineMRC(encoder, ModelConfig(categories=["A", "B"], category_class_weights=[2.0, 3.0],
                                                 category_weighting=weighting))
        assert model._category_loss(logits, labels).item() == pytest.approx(expected)


SAMPLE_LABELS = {"P1_Q0": {"Symptom": 1.0}, "P1_Q1": {"Medication": 1.0}, "P1_Q2": {"Symptom": 1.0},
                 "P2_Q0": {"Symptom": 1.0}, "P2_Q1": {"Diagnosis": 1.0}, "P3_Q0": {"Other": 1.0},
                 "P3_Q1": {"Other": 1.0}, "P4_Q0": {"Other": 1.0}, "P4_Q1": {"Symptom": 1.0},
                 "P5_Q0": {"Symptom": 1.0}, "P5_Q1": {"Other": 1.0}, "P6_Q0": {"Symptom": 1.0},
                 "P6_Q1": {"Symptom": 1.0, "Procedure": 0.5}}


def test_joint_training_predicts_and_scores_categories(tiny_encoder: Path, tmp_path: Path) -> None:
    labels = tmp_path / "sample.categories.json"
    CategoryLabels(categories=CATEGORIES, labels=SAMPLE_LABELS).write(labels)
    config = TrainConfig(encoder=str(tiny_encoder), train=[SAMPLE_QA], validation=SAMPLE_QA, out=tmp_path / "run",
                         epochs=8, batch_size=4, lr=3e-3, warmup_ratio=0.0, progress=False, seed=3,
                         intermediate={"epochs": 0}, negative_windows=1.0, categories=labels,
                         category_oversample=True, features=FeatureConfig(max_seq_length=160, doc_stride=64))
    result = train_mrc(config)
    assert result.history[-1]["train_category"] < 0.75 * result.history[0]["train_category"]
    assert all("categories" in h["validation"] for h in result.history)
    model, _, saved = load_model(tmp_path / "run" / "best")
    assert saved["config"]["categories"] == CATEGORIES and len(saved["config"]["category_class_weights"]) == 6
    assert model.category is not None and model.category[0].out_features == 256  # d → 256 → |C|
    examples = read_dataset(SAMPLE_QA)
    for e in examples:
        e.categories = SAMPLE_LABELS[e.id]
    metrics, predictions = evaluate_saved_model(tmp_path / "run" / "best", examples, per_question=True)
    assert set(predictions["P1_Q0"]["categories"]) == set(CATEGORIES)
    assert all(0 <= p <= 1 for p in predictions["P1_Q0"]["categories"].values())
    assert metrics["categories"]["count"] == 13 and "macro_f1" in metrics["categories"]
    assert metrics["questions"]["P1_Q0"]["categories"]["gold"] == ["Symptom"]
    # The CLIs print and score them.
    evaluate = [sys.executable, str(ROOT / "scripts" / "evaluate.py"), "--data", str(SAMPLE_QA), "--categories",
                str(labels), "--log-level", "WARNING"]
    out = subprocess.run(evaluate + ["--model", str(tmp_path / "run" / "best"), "--out", str(tmp_path / "eval")],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["categories"]["accuracy"] == metrics["categories"]["accuracy"]
    # … and a predictions file scores the categories it carries alike
    out = subprocess.run(evaluate + ["--predictions", str(tmp_path / "eval" / "predictions.json")],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["categories"] == metrics["categories"]
    ex = examples[0]
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "predict.py"), "--model",
                          str(tmp_path / "run" / "best"), "--question", ex.question, "--passage", ex.context,
                          "--html", str(tmp_path / "p.html")], capture_output=True, text=True, check=True)
    assert "categories: " in out.stdout
    top = out.stdout.split("categories: ")[1].split()[0]
    assert f'<span class="tag">{top} ' in (tmp_path / "p.html").read_text(encoding="utf-8")


def test_category_only_model_selects_by_category_f1(tiny_encoder: Path, tmp_path: Path) -> None:
    labels = tmp_path / "sample.categories.json"
    CategoryLabels(categories=CATEGORIES, labels=SAMPLE_LABELS).write(labels)
    config = TrainConfig(encoder=str(tiny_encoder), train=[SAMPLE_QA], validation=SAMPLE_QA, out=tmp_path / "run",
                         epochs=3, batch_size=4, lr=3e-3, progress=False, intermediate={"epochs": 0},
                         categories=labels, selection="category_macro_f1",
                         model=ModelConfig(answer_weight=0.0, support_weight=0.0),
                         features=FeatureConfig(max_seq_length=160, doc_stride=64))
    result = train_mrc(config)
    scores = [h["validation"]["categories"]["macro_f1"] for h in result.history]
    assert result.best_metrics["categories"]["macro_f1"] == max(scores)
    bad = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_mrc.py"), "--train", str(SAMPLE_QA),
                          "--category-head", "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert bad.returncode == 2 and "--category-head needs --categories" in bad.stderr


def test_tasks_selection_is_the_mean_of_the_trained_tasks_figures(tmp_path: Path) -> None:
    metrics = {"overall": {"f1": 40.0, "support_f1": 70.0, "em": 10.0}, "categories": {"macro_f1": 25.0}}
    labels = tmp_path / "c.json"
    joint = TrainConfig(train=[SAMPLE_QA], categories=labels, selection="tasks")
    assert selection_score(metrics, joint) == pytest.approx((40 + 70 + 25) / 3)
    assert selection_score(metrics, joint.model_copy(update={"selection": "f1"})) == 40.0
    span_only = TrainConfig(train=[SAMPLE_QA], selection="tasks", model=ModelConfig(support_weight=0.0))
    assert selection_score(metrics, span_only) == 40.0
    no_span = TrainConfig(train=[SAMPLE_QA], categories=labels, selection="tasks",
                          model=ModelConfig(answer_weight=0.0))
    assert selection_score(metrics, no_span) == pytest.approx((70 + 25) / 2)


def test_label_categories_cli(sample_index, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hand = tmp_path / "hand.json"
    CategoryLabels(categories=CATEGORIES, labels={"P1_Q1": {"Medication": 1.0}}).write(hand)
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "label_categories.py"), "--data", str(SAMPLE_QA),
                          "--index", str(sample_index.path), "--out", str(tmp_path / "c.json"), "--check", str(hand),
                          "--sample", "2"], capture_output=True, text=True, check=True)
    report = json.loads(out.stdout[out.stdout.index("{"):])
    assert report["check"]["precision"] == 100.0 and report["labelled"] == 13
    assert CategoryLabels.read(tmp_path / "c.json").labels["P1_Q1"] == {"Medication": 1.0}
    missing = subprocess.run([sys.executable, str(ROOT / "scripts" / "label_categories.py"), "--data",
                              str(tmp_path / "nope.json"), "--index", str(sample_index.path), "--out",
                              str(tmp_path / "d.json")], capture_output=True, text=True)
    assert missing.returncode == 1 and "nope.json: no such file" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_labels_digest_is_the_labels_not_the_report(tmp_path: Path) -> None:
    """Runs are identified by the labels they train on; a labelling's report (its printed sample) may differ."""
    labels = CategoryLabels(categories=CATEGORIES, labels=SAMPLE_LABELS)
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    labels.model_copy(update={"report": {"sample": [{"entities": ["x", "y"]}]}}).write(a)
    labels.model_copy(update={"report": {"sample": [{"entities": ["y", "x"]}]}}).write(b)
    first = next(iter(SAMPLE_LABELS))
    CategoryLabels(categories=CATEGORIES, labels={**SAMPLE_LABELS, first: {"Other": 1.0}}).write(c)
    assert a.read_bytes() != b.read_bytes() and labels_digest(a) == labels_digest(b) != labels_digest(c)
