"""MRC metrics, chosen per dataset (never per gold string): CMRC 2018 for Chinese, SQuAD for English.

CMRC 2018 (the logic of its official ``cmrc2018_evaluate.py``): text is lower-cased and stripped; the characters
of :data:`CMRC_PUNCTUATION` are dropped *without* splitting; each CJK character (U+4E00–U+9FA5) is one token and
each run of other characters is split by NLTK's word tokenizer. F1 = 2PR/(P+R) with P = |LCS|/|pred| and
R = |LCS|/|gold|, LCS the longest common *substring* of the two token lists; EM compares the lower-cased,
stripped strings with the punctuation dropped. Both take the max over the gold answers.
SQuAD: lower-case, drop ASCII punctuation and articles (a, an, the); EM on the normalised string, F1 on the bag of
whitespace tokens; max over golds.
"""

from __future__ import annotations

import re
import string
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Literal

from nltk.tokenize import NLTKWordTokenizer

from mrc.categories import gold_set, predicted_set, set_metrics
from mrc.data import sentence_spans
from retrieval.text import is_chinese

Metric = Literal["cmrc", "squad"]
MetricChoice = Literal["auto", "cmrc", "squad"]

#: The characters the official CMRC 2018 script removes (its ``sp_char``; its two-character "……" never
#: matches a single character, so "…" is kept, as there).
CMRC_PUNCTUATION = frozenset("-:_*^/\\~`+=，。：？！“”；’《》·、「」（）－～『』")
_CMRC_CJK = re.compile(r"[\u4e00-\u9fa5]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_SQUAD_PUNCT = frozenset(string.punctuation)
_SCORES = ("em", "f1", "support_em", "support_f1", "category_acc")
_WORDS = NLTKWordTokenizer()


@lru_cache(maxsize=65536)
def _latin_tokens(run: str) -> tuple[str, ...]:
    return tuple(_WORDS.tokenize(run))


def cmrc_tokens(text: str) -> list[str]:
    """CMRC 2018 mixed segmentation with punctuation removed: CJK characters one by one, other runs by NLTK."""
    out: list[str] = []
    run = ""
    for ch in str(text).lower().strip():
        if ch in CMRC_PUNCTUATION:
            continue
        if _CMRC_CJK.match(ch):
            if run:
                out.extend(_latin_tokens(run))
                run = ""
            out.append(ch)
        else:
            run += ch
    if run:
        out.extend(_latin_tokens(run))
    return out


def cmrc_clean(text: str) -> str:
    """The string CMRC 2018 compares for EM: lower-cased, stripped, its punctuation dropped (spaces kept)."""
    return "".join(ch for ch in str(text).lower().strip() if ch not in CMRC_PUNCTUATION)


def longest_common_substring(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest contiguous run shared by ``a`` and ``b`` (dynamic programming, O(|a|·|b|))."""
    best = 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def cmrc_em_f1(prediction: str, gold: str) -> tuple[float, float]:
    """(EM, F1) of one prediction against one gold answer, CMRC 2018 style."""
    p, g = cmrc_tokens(prediction), cmrc_tokens(gold)
    em = float(cmrc_clean(prediction) == cmrc_clean(gold))
    lcs = longest_common_substring(p, g)
    if lcs == 0:
        return em, 0.0
    precision, recall = lcs / len(p), lcs / len(g)
    return em, 2 * precision * recall / (precision + recall)


def squad_normalize(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _SQUAD_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def squad_em_f1(prediction: str, gold: str) -> tuple[float, float]:
    p, g = squad_normalize(prediction).split(), squad_normalize(gold).split()
    em = float(p == g)
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return em, 0.0
    precision, recall = common / len(p), common / len(g)
    return em, 2 * precision * recall / (precision + recall)


SCORERS: dict[str, Callable[[str, str], tuple[float, float]]] = {"cmrc": cmrc_em_f1, "squad": squad_em_f1}


def em_f1(prediction: str, golds: Iterable[str], metric: Metric) -> tuple[float, float]:
    """Best (EM, F1) over the gold answers with the dataset's ``metric``."""
    score = SCORERS[metric]
    best_em, best_f1 = 0.0, 0.0
    for gold in golds:
        em, f1 = score(prediction, gold)
        best_em, best_f1 = max(best_em, em), max(best_f1, f1)
    return best_em, best_f1


def dataset_metric(examples: Sequence[Any], choice: MetricChoice = "auto") -> Metric:
    """The metric of a dataset: ``choice`` unless "auto", then CMRC 2018 when most passages are Chinese."""
    if choice != "auto":
        return choice
    passages = {ex.passage_id: ex.context for ex in examples}
    chinese = sum(is_chinese(text) for text in passages.values())
    return "cmrc" if passages and chinese >= len(passages) / 2 else "squad"


def evaluate_predictions(examples: Sequence[Any], predictions: Mapping[str, Any],
                         metric: MetricChoice = "auto", per_question: bool = False) -> dict[str, Any]:
    """Answer and support EM/F1 (×100), overall and per question type and context type.

    ``predictions`` maps question id → answer text, or → ``{"answer": str, "support": str, "categories": {c: p}}``.
    Support is scored only for questions with gold support and a predicted support text, answer categories only
    for questions with gold categories and predicted ones (``categories``: accuracy = exact set match, micro and
    macro F1, per category; ``mrc.categories``); a missing prediction scores 0.
    One metric scores the whole dataset (``dataset_metric``); the report names it. ``per_question`` adds
    ``questions``: id → {em, f1[, support_em, support_f1]} (0/1 and 0–1, for paired comparisons).
    """
    chosen = dataset_metric(examples, metric)
    rows: list[dict[str, Any]] = []
    for ex in examples:
        pred = predictions.get(ex.id)
        answer = pred.get("answer", "") if isinstance(pred, Mapping) else (pred or "")
        em, f1 = em_f1(answer, ex.gold_texts or [""], chosen) if not ex.is_impossible else (float(answer == ""),) * 2
        row = {"id": ex.id, "em": em, "f1": f1, "question_type": ex.question_type, "context_type": ex.context_type}
        if ex.support is not None and isinstance(pred, Mapping) and "support" in pred:
            gold_support = support_text(ex.context, ex.support)
            row["support_em"], row["support_f1"] = em_f1(pred.get("support") or "", [gold_support], chosen)
        if ex.categories is not None and isinstance(pred, Mapping) and pred.get("categories"):
            row["category_sets"] = (gold_set(ex.categories), predicted_set(pred["categories"]))
            row["category_acc"] = float(row["category_sets"][0] == row["category_sets"][1])
        rows.append(row)
    ids = {ex.id for ex in examples}
    report: dict[str, Any] = {"metric": chosen, "overall": _aggregate(rows),
                              "missing_predictions": sum(ex.id not in predictions for ex in examples),
                              "unknown_predictions": sorted(k for k in predictions if k not in ids)}
    for key in ("question_type", "context_type"):
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            if row[key]:
                groups[row[key]].append(row)
        if groups:
            report[f"by_{key}"] = {k: _aggregate(v) for k, v in sorted(groups.items())}
    category_rows = [r["category_sets"] for r in rows if "category_sets" in r]
    if category_rows:
        names = list(dict.fromkeys(c for p in predictions.values() if isinstance(p, Mapping)
                                   for c in p.get("categories") or ()))
        report["categories"] = set_metrics(category_rows, names)
    if per_question:
        report["questions"] = {r["id"]: {k: round(r[k], 4) for k in _SCORES if k in r} for r in rows}
        for r in rows:
            if "category_sets" in r:
                report["questions"][r["id"]]["categories"] = {"gold": sorted(r["category_sets"][0]),
                                                              "predicted": sorted(r["category_sets"][1])}
    return report


def _aggregate(rows: list[dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {"count": len(rows)}
    for key in _SCORES:
        values = [r[key] for r in rows if key in r]
        if values:
            out[key] = round(100 * sum(values) / len(values), 3)
    return out


def support_text(context: str, sentences: Sequence[int]) -> str:
    """The text of the given sentence indexes, in order."""
    spans = sentence_spans(context)
    return "".join(context[spans[i][0]:spans[i][1]] for i in sorted(sentences) if i < len(spans))
