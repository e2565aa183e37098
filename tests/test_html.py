"""HTML views: exact marked spans (overlaps, CJK, full-width, emoji), escaping, and a real headless browser."""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path

import pytest

from kgutil.html import segments
from mrc.data import Example, read_dataset, sentence_spans
from mrc.error_profile import error_profile
from mrc.html import render_prediction, render_report
from mrc.metrics import evaluate_predictions
from retrieval.html import render_links

from conftest import ROOT

TEXT = "ＡＢ糖尿病😀患者(type 2 diabetes)常见多饮多尿。<script>alert('x')</script>！"


def _link(text: str, sub: str, entity: str, typ: str | None, rule: str = "exact", nth: int = 0) -> dict:
    start = -1
    for _ in range(nth + 1):
        start = text.index(sub, start + 1)
    return {"start": start, "end": start + len(sub), "text": sub, "pos": "n", "entity": entity, "type": typ,
            "rule": rule, "score": 0.9, "neighbours": ["症状:多饮"]}


LINKS = [_link(TEXT, "糖尿病", "糖尿病", "疾病"), _link(TEXT, "尿病😀患", "尿病", None, "overlap"),
         _link(TEXT, "type 2 diabetes", "2型糖尿病", "疾病", "dense"), _link(TEXT, "多饮", "多饮", "症状"),
         _link(TEXT, "ＡＢ", "AB", "检查")]


def test_segments_cover_the_text_exactly_with_overlaps_and_nesting() -> None:
    spans = [(l["start"], l["end"], str(i)) for i, l in enumerate(LINKS)] + [(0, 100, "all"), (5, 5, "empty")]
    segs = segments(TEXT, spans)
    assert "".join(s.text for s in segs) == TEXT
    for i, link in enumerate(LINKS):  # every link's segments spell its text, emoji and full-width included
        assert "".join(s.text for s in segs if str(i) in s.labels) == link["text"]
    assert all("all" in s.labels for s in segs) and not any("empty" in s.labels for s in segs)
    assert [s.text for s in segs if {"0", "1"} <= set(s.labels)] == ["尿病"]  # the nested part carries both


def test_pages_escape_text() -> None:
    html = render_links({"passage": TEXT}, {"passage": LINKS})
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    example = Example(id="q1", question="<b>问</b>？", context=TEXT, passage_id="p")
    report = render_report([example], {"q1": {"answer": "<i>", "start": 0, "end": 2}},
                           evaluate_predictions([example], {"q1": "<i>"}, per_question=True))
    assert "<b>问" not in report and "&lt;b&gt;问" in report and "<script>alert" not in report


def test_report_says_where_each_answer_goes_wrong() -> None:
    examples = read_dataset(ROOT / "examples" / "sample_mrc.json")[:2]
    gold = examples[0].answers[0]
    predictions = {examples[0].id: {"answer": gold.text, "start": gold.start, "end": gold.end},
                   examples[1].id: {"answer": "", "start": 0, "end": 0}}
    metrics = evaluate_predictions(examples, predictions, per_question=True)
    metrics["errors"] = error_profile(examples, predictions, metrics["metric"])
    page = render_report(examples, predictions, metrics)
    assert '<table class="scores" id="errors">' in page and "<td>no answer</td><td>1</td><td>50.0</td>" in page
    assert page.count('<td class="kind">exact</td>') == page.count('<td class="kind">no answer</td>') == 1


class _Marks(HTMLParser):
    """Text per data-links id, per mark class and per element id, as a browser laid the DOM out."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[dict[str, str]] = []
        self.by_link: dict[str, str] = defaultdict(str)
        self.by_class: dict[str, str] = defaultdict(str)
        self.by_id: dict[str, str] = defaultdict(str)
        self.rows = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.stack.append({"tag": tag, **{k: v or "" for k, v in attrs}})
        if tag == "tr" and "data-id" in self.stack[-1]:
            self.rows += 1

    def handle_endtag(self, tag: str) -> None:
        while self.stack and self.stack.pop()["tag"] != tag:
            pass

    def handle_data(self, data: str) -> None:
        for el in self.stack:
            for link in el.get("data-links", "").split():
                self.by_link[link] += data
            if el["tag"] == "mark":
                for cls in el.get("class", "").split():
                    self.by_class[cls] += data
            if "id" in el:
                self.by_id[el["id"]] += data


def _browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("no Chromium on this machine (apt-get install chromium, or make browser)")


def _dom(html: str, tmp_path: Path, name: str) -> _Marks:
    """The page as headless Chromium builds it (after its scripts ran), and a screenshot beside it."""
    page = tmp_path / f"{name}.html"
    page.write_text(html, encoding="utf-8")
    flags = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    subprocess.run([*flags, f"--screenshot={tmp_path / (name + '.png')}", "--window-size=1200,1000",
                    page.as_uri()], capture_output=True, timeout=120, check=True)
    assert (tmp_path / f"{name}.png").stat().st_size > 5000
    parsed = _Marks()
    parsed.feed(dom)
    return parsed


def test_link_view_in_a_browser(tmp_path: Path) -> None:
    question = "糖尿病有什么症状？"
    dom = _dom(render_links({"question": question, "passage": TEXT},
                            {"question": [_link(question, "糖尿病", "糖尿病", "疾病")], "passage": LINKS}),
               tmp_path, "links")
    assert dom.by_link["question-0"] == "糖尿病"
    for i, link in enumerate(LINKS):
        assert dom.by_link[f"passage-{i}"] == link["text"]
    assert dom.by_id["passage-text"] == TEXT  # the script tag is text on the page, nothing ran


def test_prediction_and_report_views_in_a_browser(tmp_path: Path) -> None:
    context = TEXT
    spans = sentence_spans(context)
    start = context.index("多饮多尿")
    result = {"answer": "多饮多尿", "score": 3.2, "start": start, "end": start + 4, "support": context[:spans[0][1]],
              "support_sentences": [0], "sentence_probs": [0.8, 0.1], "nbest": [], "categories": None,
              "tokens": ["[CLS]", "多", "饮", "多", "尿"], "start_probs": [0.1, 0.7, 0.1, 0.05, 0.05],
              "end_probs": [0.1, 0.05, 0.05, 0.1, 0.7], "offsets": [None, [0, 1], [1, 2], [2, 3], [3, 4]],
              "entities": [{**_link(context, "多饮", "多饮", "症状"), "span": "多饮", "segment": "passage",
                            "attention": 0.6, "global_attention": 0.3}]}
    gold = Example(id="q", question="症状？", context=context, passage_id="p",
                   answers=[{"text": "多饮", "start": start}], gold_texts=["多饮"])
    dom = _dom(render_prediction("糖尿病的症状？", context, result, gold), tmp_path, "prediction")
    assert dom.by_class["answer"] == "多饮多尿" and dom.by_class["gold"] == "多饮"
    assert dom.by_id["answer"] == "多饮多尿" and dom.by_link["passage-0"] == "多饮"
    assert "多" in dom.by_id["strip"]
    examples = read_dataset(ROOT / "examples" / "sample_mrc.json")
    predictions = {e.id: {"answer": e.context[:4], "start": 0, "end": 4, "support_sentences": [0],
                          "sentence_probs": [0.9]} for e in examples}
    predictions[examples[0].id] = {"answer": examples[0].answers[0].text, "start": examples[0].answers[0].start,
                                   "end": examples[0].answers[0].end, "support_sentences": []}
    metrics = evaluate_predictions(examples, predictions, per_question=True)
    dom = _dom(render_report(examples, predictions, metrics), tmp_path, "report")
    assert dom.rows == len(examples)
    assert examples[0].answers[0].text in dom.by_class["answer"]


def _sample_index(tmp_path: Path) -> Path:
    """The entity index of the shipped sample KG."""
    from kgutil.cli import read_config_file
    from kg.reader import TripleReader
    from kg.records import ReaderConfig
    from kg.snapshot import Snapshot, snapshot_from_records
    from retrieval.index import IndexConfig, build_index

    reader = ReaderConfig.model_validate(read_config_file(ROOT / "configs/kg/sample.yaml")["reader"])
    snapshot_from_records(TripleReader(reader).read([ROOT / "examples/sample_kg.tsv"]), tmp_path / "snap")
    build_index(Snapshot.load(tmp_path / "snap"), IndexConfig(progress=False), tmp_path / "idx")
    return tmp_path / "idx"


def test_link_cli_prints_a_sample_per_rule_to_judge_precision(tmp_path: Path) -> None:
    import sys

    command = [sys.executable, str(ROOT / "scripts" / "link_entities.py"), "--index", str(_sample_index(tmp_path)),
               "--data", str(ROOT / "examples" / "sample_mrc.json"), "--sample", "2"]
    both = subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()
    counts = dict(part.rsplit(" ", 1) for part in both[0].removeprefix("links per rule: ").split(", "))
    assert len(both) - 1 == sum(min(2, int(n)) for n in counts.values())  # up to N links of each rule
    exact = subprocess.run(command + ["--no-overlap"], capture_output=True, text=True, check=True).stdout.splitlines()
    assert exact[0] == f"links per rule: exact {counts['exact']}"  # the overlap rule off: its links are gone
    assert all(line.startswith("exact") and " → " in line for line in exact[1:])


def test_link_cli_writes_a_page_that_matches_its_json(tmp_path: Path) -> None:
    import json
    import sys

    _sample_index(tmp_path)
    example = read_dataset(ROOT / "examples" / "sample_mrc.json")[0]
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "link_entities.py"), "--index",
                          str(tmp_path / "idx"), "--data", str(ROOT / "examples" / "sample_mrc.json"), "--id",
                          example.id, "--json", "--html", str(tmp_path / "links.html")],
                         capture_output=True, text=True, check=True)
    links = json.loads(out.stdout)["links"]
    assert links["passage"], "the sample passage links entities"
    dom = _dom((tmp_path / "links.html").read_text(encoding="utf-8"), tmp_path, "cli_links")
    for part, rows in links.items():
        for i, row in enumerate(rows):
            assert dom.by_link[f"{part}-{i}"] == row["text"]
    assert dom.by_id["passage-text"] == example.context
