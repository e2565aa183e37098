"""From window logits to answers and support sentences (kept apart from the model, as in HF ``run_qa``).

Answer: over all windows of an example, the n-best start/end token pairs (end ≥ start, inside the passage,
at most ``max_answer_length`` characters) scored by start_logit + end_logit; the best one's characters.
Support: p̄_s = mean support probability of the passage tokens of sentence s (over every window that sees
them). Predicted support = the sentences holding the answer ∪ {s : p̄_s ≥ τ}; τ is tuned on validation.
Rescoring: with sentence weight w > 0 the answer is instead the n-best candidate c maximising
score(c) + w·log max(p̄_s(c), 10⁻⁶), s(c) the sentence of c's first character: the support head votes on where
the answer lies. w is tuned on validation (answer F1) before τ; w = 0 keeps the top-scoring span.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from mrc.data import Example, sentence_of, sentence_spans
from mrc.features import Feature
from mrc.metrics import Metric, em_f1, support_text

SENTENCE_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0)


@dataclass
class Prediction:
    answer: str
    score: float
    start: int
    end: int
    sentence_probs: list[float]
    answer_sentences: list[int]
    support_sentences: list[int] = field(default_factory=list)
    support: str = ""
    nbest: list[dict[str, object]] = field(default_factory=list)
    categories: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class WindowOutputs:
    """A model's outputs per window (numpy, unpadded): start and end logits, support probabilities, category
    probabilities (None without a category head) and model details."""

    starts: list[np.ndarray]
    ends: list[np.ndarray]
    supports: list[np.ndarray]
    categories: list[np.ndarray] | None = None
    details: list[dict[str, np.ndarray]] = field(default_factory=list)


def postprocess(examples: Sequence[Example], features: Sequence[Feature], outputs: WindowOutputs, *,
                category_names: Sequence[str] = (), n_best: int = 20, max_answer_length: int = 100,
                support_threshold: float = 0.5, sentence_weight: float = 0.0) -> dict[str, Prediction]:
    """Predictions keyed by question id (every example gets one, possibly empty). Categories come from the
    window of the top-scoring span (the mean over the example's windows when there is no answer)."""
    by_example: dict[int, list[int]] = defaultdict(list)
    for i, f in enumerate(features):
        by_example[f.example_index].append(i)
    out = {}
    for ex_index, ex in enumerate(examples):
        candidates = []
        char_probs: dict[int, list[float]] = defaultdict(list)
        for i in by_example.get(ex_index, []):
            f, s_log, e_log, probs = features[i], outputs.starts[i], outputs.ends[i], outputs.supports[i]
            for j, o in enumerate(f.offsets):
                if o is not None and o[1] > o[0]:
                    char_probs[o[0]].append(float(probs[j]))
            top_s = np.argsort(s_log)[::-1][:n_best]
            top_e = np.argsort(e_log)[::-1][:n_best]
            for s in top_s:
                for e in top_e:
                    if e < s or f.offsets[s] is None or f.offsets[e] is None:
                        continue
                    a, b = f.offsets[s][0], f.offsets[e][1]
                    if b - a > max_answer_length or b <= a:
                        continue
                    candidates.append((float(s_log[s] + e_log[e]), a, b, i))
        spans = sentence_spans(ex.context)
        sentence_probs = []
        for a, b in spans:
            values = [p for c in range(a, b) for p in char_probs.get(c, ())]
            sentence_probs.append(float(np.mean(values)) if values else 0.0)
        if candidates:
            candidates.sort(key=lambda c: -c[0])
            score, a, b, window = candidates[0]
            answer_sentences = sorted({sentence_of(spans, a), sentence_of(spans, b - 1)})
        else:
            score, a, b, window, answer_sentences = float("-inf"), 0, 0, None, []
        seen, nbest = set(), []
        for sc, x, y, _ in candidates:
            if (x, y) not in seen:
                seen.add((x, y))
                nbest.append({"text": ex.context[x:y], "score": round(sc, 4), "start": x, "end": y})
            if len(nbest) == n_best:
                break
        pred = Prediction(ex.context[a:b], score, a, b, sentence_probs, answer_sentences, nbest=nbest)
        if outputs.categories is not None and by_example.get(ex_index):
            probs = (outputs.categories[window] if window is not None
                     else np.mean([outputs.categories[i] for i in by_example[ex_index]], axis=0))
            pred.categories = {c: round(float(p), 4) for c, p in zip(category_names, probs)}
        rescore_answer(pred, ex.context, sentence_weight)
        select_support(pred, ex.context, support_threshold)
        out[ex.id] = pred
    return out


def rescore_answer(pred: Prediction, context: str, weight: float) -> None:
    """Set the answer of ``pred`` to its n-best candidate maximising score + w·log max(p̄_s, 10⁻⁶) (the first
    such candidate: with w = 0 the top-scoring one). Support sentences are left to ``select_support``."""
    if not pred.nbest:
        return
    spans = sentence_spans(context)

    def rescored(candidate: dict[str, object]) -> float:
        s = sentence_of(spans, int(candidate["start"]))
        p = pred.sentence_probs[s] if s < len(pred.sentence_probs) else 1.0
        return float(candidate["score"]) + weight * math.log(max(p, 1e-6))

    best = max(pred.nbest, key=rescored)
    pred.answer, pred.score = str(best["text"]), float(best["score"])
    pred.start, pred.end = int(best["start"]), int(best["end"])
    pred.answer_sentences = sorted({sentence_of(spans, pred.start), sentence_of(spans, pred.end - 1)})


def tune_sentence_weight(examples: Sequence[Example], predictions: dict[str, Prediction], metric: Metric,
                         grid: Sequence[float] = SENTENCE_WEIGHTS) -> float:
    """w maximising mean answer F1 (``metric``) on the answerable ``examples`` (ties: the smaller w);
    predictions take it (answers and answer sentences; call ``select_support`` or τ tuning after)."""
    return _choose(examples, predictions, sorted(grid), [ex for ex in examples if ex.gold_texts],
                   lambda pred, ex, w: rescore_answer(pred, ex.context, w),
                   lambda pred, ex: em_f1(pred.answer, ex.gold_texts, metric)[1], default=0.0)


def select_support(pred: Prediction, context: str, threshold: float) -> None:
    """Set the support sentences and text of ``pred`` for threshold τ."""
    chosen = set(pred.answer_sentences) | {i for i, p in enumerate(pred.sentence_probs) if p >= threshold}
    pred.support_sentences = sorted(chosen)
    pred.support = support_text(context, pred.support_sentences)


def tune_support_threshold(examples: Sequence[Example], predictions: dict[str, Prediction], metric: Metric,
                           grid: Sequence[float] = tuple(np.round(np.arange(0.1, 1.01, 0.05), 2))) -> float:
    """τ maximising mean support F1 (``metric``) on ``examples`` (ties: the higher τ); predictions take it."""
    return _choose(examples, predictions, sorted(grid, reverse=True),
                   [ex for ex in examples if ex.support is not None],
                   lambda pred, ex, tau: select_support(pred, ex.context, tau),
                   lambda pred, ex: em_f1(pred.support, [support_text(ex.context, ex.support)], metric)[1],
                   default=0.5)


def _choose(examples: Sequence[Example], predictions: dict[str, Prediction], grid: Sequence[float],
            scored: Sequence[Example], apply: Callable[[Prediction, Example, float], None],
            figure: Callable[[Prediction, Example], float], default: float) -> float:
    """The first value of ``grid`` maximising the sum of ``figure`` over the ``scored`` examples that have
    predictions, once ``apply`` set it (``default`` when none do); every prediction of ``examples`` takes it."""
    scored = [ex for ex in scored if ex.id in predictions]
    best, best_total = default, -1.0
    for value in grid if scored else ():
        for ex in scored:
            apply(predictions[ex.id], ex, value)
        total = sum(figure(predictions[ex.id], ex) for ex in scored)
        if total > best_total + 1e-9:
            best, best_total = float(value), total
    for ex in examples:
        if ex.id in predictions:
            apply(predictions[ex.id], ex, best)
    return best
