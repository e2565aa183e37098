"""Where a reader's answers go wrong: each answerable question's prediction sorted by where it lies against the
gold spans, and how often an exact answer is among the reader's k best candidates (the ceiling of any rerank).

Kinds, first that applies: ``exact`` (EM 1 under the dataset's metric); ``no_answer`` (empty prediction);
``contains_gold`` (the predicted span holds a gold span: too long); ``inside_gold`` (too short);
``overlaps_gold`` (crosses a gold span's boundary); ``elsewhere_gold_sentence`` (disjoint, in a sentence holding a
gold answer: the right sentence, the wrong words); ``elsewhere_other_sentence`` (the wrong place). Gold spans are the
aligned answers; a question none of whose answers is aligned with its passage is left out (``unlocated``).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from mrc.data import Example, sentence_of, sentence_spans
from mrc.metrics import Metric, em_f1

KINDS = ("exact", "no_answer", "contains_gold", "inside_gold", "overlaps_gold", "elsewhere_gold_sentence",
         "elsewhere_other_sentence")
NBEST_DEPTHS = (1, 3, 5, 10, 20)


def locate(context: str, prediction: Mapping[str, Any]) -> dict[str, Any]:
    """A prediction with character offsets: its own, else the first occurrence of its answer in the context
    (start 0, end 0 when the answer is empty or not in the context)."""
    if "start" in prediction and "end" in prediction:
        return dict(prediction)
    answer = prediction.get("answer", "")
    start = context.find(answer) if answer else -1
    return {**prediction, "start": max(start, 0), "end": start + len(answer) if start >= 0 else 0}


def error_kind(example: Example, prediction: Mapping[str, Any], metric: Metric) -> str:
    """The kind (``KINDS``) of one answerable, aligned question's prediction."""
    answer = prediction.get("answer", "")
    if em_f1(answer, example.gold_texts, metric)[0] == 1:
        return "exact"
    if not answer:
        return "no_answer"
    located = locate(example.context, prediction)
    start, end = located["start"], located["end"]
    golds = [(a.start, a.end) for a in example.answers]
    if any(start <= s and e <= end for s, e in golds):
        return "contains_gold"
    if any(s <= start and end <= e for s, e in golds):
        return "inside_gold"
    if any(start < e and s < end for s, e in golds):
        return "overlaps_gold"
    sentences = sentence_spans(example.context)
    gold_sentences = {sentence_of(sentences, s) for s, _ in golds}
    return ("elsewhere_gold_sentence" if sentence_of(sentences, start) in gold_sentences
            else "elsewhere_other_sentence")


def error_profile(examples: Sequence[Example], predictions: Mapping[str, Mapping[str, Any]],
                  metric: Metric) -> dict[str, Any]:
    """Counts and shares (×100) of each kind over the answerable questions with an aligned gold answer (a missing
    prediction counts as ``no_answer``); median lengths in characters over the answered ones (``predicted``; ``gold``,
    the shortest gold answer); and, over the questions whose prediction carries ``nbest``, ``nbest_em_at``: k →
    share (×100) with an exact answer among the first k candidates (ranked by span score: with a sentence weight
    w > 0 the answer itself may come from further down, so k = 1 can differ from ``exact``)."""
    kinds: Counter[str] = Counter()
    predicted_chars, gold_chars, hits = [], [], Counter()
    unlocated = with_nbest = deepest = 0
    for ex in examples:
        if ex.is_impossible:
            continue
        if not ex.answers:
            unlocated += 1
            continue
        pred = predictions.get(ex.id, {})
        kinds[error_kind(ex, pred, metric)] += 1
        if answer := pred.get("answer", ""):
            predicted_chars.append(len(answer))
            gold_chars.append(min(len(a.text) for a in ex.answers))
        if candidates := pred.get("nbest"):
            with_nbest += 1
            deepest = max(deepest, len(candidates))
            first = next((i for i, c in enumerate(candidates) if em_f1(c["text"], ex.gold_texts, metric)[0] == 1),
                         None)
            for k in NBEST_DEPTHS:
                hits[k] += first is not None and first < k
    total = sum(kinds.values())
    report: dict[str, Any] = {
        "questions": total, "unlocated": unlocated,
        "kinds": {k: {"count": kinds[k], "share": round(100 * kinds[k] / total, 2) if total else 0.0}
                  for k in KINDS},
        "median_chars": {"predicted": statistics.median(predicted_chars) if predicted_chars else 0,
                         "gold": statistics.median(gold_chars) if gold_chars else 0}}
    if with_nbest:
        report["nbest_questions"] = with_nbest
        report["nbest_em_at"] = {str(k): round(100 * hits[k] / with_nbest, 2)
                                 for k in NBEST_DEPTHS if k <= max(deepest, 1)}
    return report


def summary_line(profile: Mapping[str, Any]) -> str:
    """One line for a log: the shares of the kinds, and the deepest n-best ceiling."""
    kinds = ", ".join(f"{k.replace('_', ' ')} {v['share']:.1f}%" for k, v in profile["kinds"].items() if v["count"])
    line = f"answers on {profile['questions']} questions: {kinds}"
    if at := profile.get("nbest_em_at"):
        depth = max(at, key=int)
        line += f"; an exact answer among the {depth} best candidates: {at[depth]:.1f}%"
    return line
