"""MRC datasets: CMedMRC (SQuAD layout + support sentences, types) and SQuAD v1.1/v2.0 / CMRC 2018 JSON.

Every question becomes a validated :class:`Example`. Answers are checked against the context:
``answer_policy="repair"`` moves a misaligned ``answer_start`` to the nearest occurrence of the answer text and
drops answers whose text is not in the context (counted); ``"strict"`` raises :class:`DataError` naming the
question (empty questions are likewise skipped and counted, or raise). Support labels (1-based sentence indexes, sometimes ``"21,22"`` or ``7.0``) are compared with the
sentences obtained by splitting after 。！？: labels containing the first answer are *kept*; others are
*repaired* to the sentence holding the answer (``support_policy="repair"``) or *dropped* (``"drop"``).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

log = logging.getLogger(__name__)

SENTENCE_END = "。！？"
_CLOSERS = "”’\"'』」）)"


class DataError(ValueError):
    """A dataset that cannot be read, with the file and question id."""


class Answer(BaseModel):
    model_config = ConfigDict(frozen=True)

    text: str = Field(min_length=1)
    start: int = Field(ge=0)

    @property
    def end(self) -> int:
        return self.start + len(self.text)


class Example(BaseModel):
    """One question on one passage. ``answers`` are aligned with ``context``; ``gold_texts`` are all
    reference answers (for scoring); ``support`` are 0-based sentence indexes or None when unlabelled."""

    id: str = Field(min_length=1)
    question: str = Field(min_length=1)
    context: str = Field(min_length=1)
    passage_id: str
    answers: list[Answer] = Field(default_factory=list)
    gold_texts: list[str] = Field(default_factory=list)
    support: list[int] | None = None
    is_impossible: bool = False
    question_type: str | None = None
    context_type: str | None = None
    categories: dict[str, float] | None = None  # answer-category soft labels (``mrc.categories``)


@dataclass
class ReadReport:
    """What reading changed: answers realigned/dropped, support labels kept/repaired/dropped."""

    questions: int = 0
    questions_skipped: int = 0
    answers_realigned: int = 0
    answers_dropped: int = 0
    support: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"questions": self.questions, "questions_skipped": self.questions_skipped,
                "answers_realigned": self.answers_realigned,
                "answers_dropped": self.answers_dropped, "support": dict(self.support)}


def sentence_spans(context: str, ends: str = SENTENCE_END) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``context``: each ends after a delimiter (and closing quotes)."""
    spans, start, i = [], 0, 0
    while i < len(context):
        if context[i] in ends:
            j = i + 1
            while j < len(context) and context[j] in _CLOSERS:
                j += 1
            spans.append((start, j))
            start, i = j, j
        else:
            i += 1
    if start < len(context):
        spans.append((start, len(context)))
    return spans


def sentence_of(spans: list[tuple[int, int]], char: int) -> int:
    """Index of the sentence containing character ``char``."""
    for i, (a, b) in enumerate(spans):
        if a <= char < b:
            return i
    return len(spans) - 1


def parse_support(raw: Any) -> list[int] | None:
    """1-based labels ("3", "21,22", 7.0, [3, 4]) → sorted 0-based indexes; None if absent/unparseable."""
    if raw is None or raw == "":
        return None
    items = raw if isinstance(raw, list) else str(raw).replace("，", ",").split(",")
    try:
        out = sorted({int(float(str(x).strip())) - 1 for x in items if str(x).strip()})
    except (ValueError, OverflowError):
        return None
    return out if out and min(out) >= 0 else None


def _align(context: str, answer: dict[str, Any], qid: str, path: Path, policy: str,
           report: ReadReport) -> Answer | None:
    if not isinstance(answer, dict):
        raise DataError(f"{path}: question {qid}: an answer is {type(answer).__name__}, expected an object")
    text = answer.get("text")
    if not isinstance(text, str) or not text:
        raise DataError(f"{path}: question {qid}: answer without text")
    try:
        start = int(float(answer.get("answer_start", -1)))
    except (TypeError, ValueError, OverflowError) as err:
        raise DataError(f"{path}: question {qid}: answer_start {answer.get('answer_start')!r} is not a number") from err
    if 0 <= start and context[start:start + len(text)] == text:
        return _trimmed(text, start)
    where = _occurrences(context, text)
    if policy == "strict" or not where:
        if policy == "strict":
            raise DataError(f"{path}: question {qid}: answer {text!r} at {start} is outside the context"
                            + ("" if where else " (text not found anywhere in it)"))
        report.answers_dropped += 1
        return None
    report.answers_realigned += 1
    return _trimmed(text, min(where, key=lambda i: abs(i - start)))


def _trimmed(text: str, start: int) -> Answer | None:
    """The answer without surrounding whitespace (full-width spaces included), start moved accordingly."""
    stripped = text.strip()
    if not stripped:
        return None
    return Answer(text=stripped, start=start + len(text) - len(text.lstrip()))


def _occurrences(context: str, text: str) -> list[int]:
    out, i = [], context.find(text)
    while i >= 0:
        out.append(i)
        i = context.find(text, i + 1)
    return out


def read_json(path: Path, expected: str) -> Any:
    """The parsed JSON of ``path``; every way it cannot be read is a :class:`DataError` naming the file."""
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected {expected}")
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError as err:
        raise DataError(f"{path}: no such file") from err
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}") from err
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 ({err.reason} at byte {err.start})") from err


def read_dataset(path: Path, *, answer_policy: Literal["repair", "strict"] = "repair",
                 support_policy: Literal["repair", "drop", "keep"] = "repair",
                 report: ReadReport | None = None, labelled: bool = True) -> list[Example]:
    """All questions of a SQuAD-layout file (CMedMRC, CMRC 2018, SQuAD 1.1/2.0); with ``labelled=False`` a
    question may lack ``answers`` (questions to answer, not to score)."""
    path = Path(path)
    report = report if report is not None else ReadReport()
    raw = read_json(path, "a SQuAD-layout JSON file")
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), list):
        raise DataError(f"{path}: expected a SQuAD-format object with a 'data' list")
    examples: list[Example] = []
    for a, article in enumerate(raw["data"]):
        for p, para in enumerate(_objects(article, "paragraphs", path, f"data[{a}]")):
            context = para.get("context")
            if not isinstance(context, str) or not context:
                raise DataError(f"{path}: data[{a}].paragraphs[{p}] has no context")
            passage_id = str(para.get("id") or f"{article.get('id', a)}_{p}")
            spans = sentence_spans(context)
            for q_index, qa in enumerate(_objects(para, "qas", path, f"data[{a}].paragraphs[{p}]")):
                example = _example(qa, context, passage_id, spans, path, f"data[{a}].paragraphs[{p}].qas[{q_index}]",
                                   answer_policy, support_policy, report, labelled)
                if example is not None:
                    examples.append(example)
    report.questions += len(examples)
    ids = Counter(e.id for e in examples)
    if dup := [i for i, n in ids.items() if n > 1]:
        raise DataError(f"{path}: duplicate question ids: {', '.join(dup[:5])}")
    log.info("read %s: %d questions; %s", path, len(examples), report.as_dict())
    return examples


def _objects(parent: Any, key: str, path: Path, where: str) -> list[dict[str, Any]]:
    """``parent[key]``, checked to be a list of JSON objects (a missing or null key is an empty list)."""
    if not isinstance(parent, dict):
        raise DataError(f"{path}: {where} is {type(parent).__name__}, expected an object")
    items = parent.get(key) or []
    if not isinstance(items, list):
        raise DataError(f"{path}: {where}.{key} is {type(items).__name__}, expected a list")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise DataError(f"{path}: {where}.{key}[{i}] is {type(item).__name__}, expected an object")
    return items


def _example(qa: dict[str, Any], context: str, passage_id: str, spans: list[tuple[int, int]], path: Path,
             where: str, answer_policy: str, support_policy: str, report: ReadReport, labelled: bool
             ) -> Example | None:
    qid = str(qa.get("id") or "")
    if not qid:
        raise DataError(f"{path}: {where} has no id")
    if not isinstance(qa.get("question"), str):
        raise DataError(f"{path}: question {qid}: missing field 'question'")
    if not qa["question"].strip():
        if answer_policy == "strict":
            raise DataError(f"{path}: question {qid}: the question is empty")
        report.questions_skipped += 1  # CMRC 2018's trial file has two
        return None
    if "answers" not in qa and labelled:
        raise DataError(f"{path}: question {qid}: missing field 'answers'")
    impossible = bool(qa.get("is_impossible", False))
    raw_answers = qa.get("answers") or []
    if not isinstance(raw_answers, list):
        raise DataError(f"{path}: {where}.answers (question {qid}) is {type(raw_answers).__name__}, expected a list")
    answers = [a for a in (_align(context, x, qid, path, answer_policy, report) for x in raw_answers) if a]
    support = parse_support(qa.get("support sentence"))
    if "support sentence" in qa:
        support = _check_support(support, answers, spans, support_policy, report)
    try:
        return Example(id=qid, question=qa["question"].strip(), context=context, passage_id=passage_id,
                       answers=answers, gold_texts=[a["text"] for a in raw_answers if a.get("text")],
                       support=support, is_impossible=impossible, question_type=qa.get("question type"),
                       context_type=qa.get("context type"))
    except ValidationError as err:
        raise DataError(f"{path}: question {qid}: {err.errors()[0]['loc']}: {err.errors()[0]['msg']}") from err


def _check_support(support: list[int] | None, answers: list[Answer], spans: list[tuple[int, int]],
                   policy: str, report: ReadReport) -> list[int] | None:
    if not answers:
        report.support["dropped_no_answer"] += 1
        return None
    holding = sentence_of(spans, answers[0].start)
    if support is not None and holding in support and max(support) < len(spans):
        report.support["kept"] += 1
        return support
    if policy == "keep" and support is not None:
        report.support["kept_mismatched"] += 1
        return [s for s in support if s < len(spans)] or None
    if policy == "repair":
        report.support["repaired"] += 1
        return [holding]
    report.support["dropped"] += 1
    return None


def read_predictions(path: Path) -> dict[str, dict[str, Any]]:
    """A predictions file: ``{id: answer}`` or ``{id: {"answer": …, "support": …}}`` → ``{id: {…}}``.

    ``null`` answers and supports read as ""; any other non-string value is a :class:`DataError` naming the
    question id (the official scripts would silently score ``str(value)``). The optional fields that
    ``predict.py`` writes are kept when well-formed: ``categories`` ({category: probability}, scored against
    labels), ``start``/``end`` (character offsets of the answer) and ``nbest`` (the candidates, best first, each
    with its ``text``), read by ``mrc.error_profile``; a malformed one is a :class:`DataError`.
    """
    path = Path(path)
    raw = read_json(path, "a predictions JSON file")
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected an object keyed by question id, got {type(raw).__name__}")
    out: dict[str, dict[str, Any]] = {}
    for qid, value in raw.items():
        fields = value if isinstance(value, dict) else {"answer": value}
        pred: dict[str, Any] = {}
        for key in ("answer", "support"):
            if key not in fields:
                continue
            text = fields[key]
            if text is not None and not isinstance(text, str):
                raise DataError(f"{path}: question {qid}: {key} is {type(text).__name__} {str(text)[:40]!r}, "
                                "expected a string or null")
            pred[key] = text or ""
        for key, (ok, expected) in _OPTIONAL_PREDICTION_FIELDS.items():
            if key in fields:
                if not ok(fields[key]):
                    shown = json.dumps(fields[key], ensure_ascii=False)
                    raise DataError(f"{path}: question {qid}: {key} is {shown[:60]}, expected {expected}")
                pred[key] = fields[key]
        out[qid] = pred
    return out


def _is_offset(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


_OPTIONAL_PREDICTION_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "categories": (lambda v: isinstance(v, dict) and all(
        isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p <= 1 for p in v.values()),
        "an object of probabilities in [0, 1]"),
    "start": (_is_offset, "a character offset (an integer ≥ 0)"),
    "end": (_is_offset, "a character offset (an integer ≥ 0)"),
    "nbest": (lambda v: isinstance(v, list) and all(isinstance(c, dict) and isinstance(c.get("text"), str)
                                                     for c in v),
              "a list of candidates, each with a string 'text'"),
}


def read_pvi(path: Path) -> dict[str, float]:
    """question id → PVI from a ``pvi.jsonl`` written by ``scripts/pvi.py`` (or the directory holding one)."""
    path = Path(path)
    file = path / "pvi.jsonl" if path.is_dir() else path
    values = {}
    try:
        with open(file, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                        values[str(row["id"])] = float(row["pvi"])
                    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                        raise DataError(f"{file}:{n}: not a PVI row ({err})") from None
    except FileNotFoundError:
        raise DataError(f"{file}: no such file") from None
    return values
