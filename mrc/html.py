"""Prediction and report views: the answer and gold spans, support sentences with their probabilities, the
per-token start/end probabilities, the linked entities with their attention, and scores by question type."""

from __future__ import annotations

from typing import Any

from kgutil.html import marked, render
from mrc.data import Example, sentence_spans
from mrc.error_profile import error_kind


def _passage_view(context: str, prediction: dict[str, Any], gold: list[tuple[int, int]],
                  links: list[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    spans = sentence_spans(context)
    probs = prediction.get("sentence_probs") or []
    support = {i: float(probs[i]) if i < len(probs) else 1.0 for i in prediction.get("support_sentences", [])}
    answer = (prediction["start"], prediction["end"]) if prediction.get("end", 0) > prediction.get("start", 0) \
        else None
    return marked(context, links, answer=answer, gold=gold, sentences=spans, support=support, prefix="passage-")


def _link_rows(entities: list[dict[str, Any]], segment: str) -> list[dict[str, Any]]:
    return [{**e, "text": e["span"]} for e in entities if e.get("segment") == segment]


def render_prediction(question: str, passage: str, result: dict[str, Any], gold: Example | None = None) -> str:
    """One prediction (``mrc.predict.predict_one``'s result): marked question and passage, support shading,
    a heat strip of start/end probabilities over the answer window, entities with local/global attention."""
    gold_spans = [(a.start, a.end) for a in gold.answers] if gold else []
    entities = result.get("entities", [])
    tokens = [{"token": t, "start": s, "end": e}
              for t, s, e, o in zip(result["tokens"], result["start_probs"], result["end_probs"], result["offsets"])
              if o is not None]
    top = max([max(t["start"], t["end"]) for t in tokens] or [1.0]) or 1.0
    return render("prediction.html.j2", question=question, result=result,
                  question_segments=marked(question, _link_rows(entities, "question"), prefix="question-"),
                  passage_segments=_passage_view(passage, result, gold_spans, _link_rows(entities, "passage")),
                  gold=gold.gold_texts if gold else None, tokens=tokens, top=top,
                  entities=sorted(entities, key=lambda e: -(e.get("attention") or 0)),
                  global_entities=sorted([e for e in entities if e.get("global_attention") is not None],
                                         key=lambda e: -e["global_attention"])[:10],
                  categories=[{"name": c, "probability": p} for c, p in
                              sorted((result.get("categories") or {}).items(), key=lambda kv: -kv[1])])


def render_report(examples: list[Example], predictions: dict[str, dict[str, Any]], metrics: dict[str, Any],
                  title: str = "") -> str:
    """The evaluation report: scores overall and per question/context type, where the answers go wrong
    (``metrics["errors"]``, ``mrc.error_profile``), and every question with prediction vs gold and the kind of its
    error (sortable by F1 and kind), each opening its marked passage."""
    scores = metrics.get("questions", {})
    rows = []
    for ex in examples:
        pred = predictions.get(ex.id, {"answer": "", "start": 0, "end": 0})
        kind = error_kind(ex, pred, metrics["metric"]) if ex.answers and not ex.is_impossible else "-"
        rows.append({"id": ex.id, "question": ex.question, "answer": pred.get("answer", ""),
                     "gold": " | ".join(ex.gold_texts), "type": ex.question_type or "-",
                     "context_type": ex.context_type or "-", "kind": kind.replace("_", " "), **scores.get(ex.id, {}),
                     "segments": _passage_view(ex.context, pred, [(a.start, a.end) for a in ex.answers])})
    return render("report.html.j2", title=title, metrics=metrics, rows=rows)
