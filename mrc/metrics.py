"""MRC metrics. Chinese answers are scored CMRC 2018 style, English answers SQuAD style; both max over golds.

CMRC 2018: lower-case, drop punctuation and spaces; tokens are single CJK characters and runs of other
characters (Latin words, numbers). EM compares the cleaned strings; F1 = 2PR/(P+R) with P = |LCS|/|pred|,
R = |LCS|/|gold| where LCS is the longest common *substring* of the two token lists.
SQuAD: lower-case, drop punctuation and articles (a, an, the); EM on the normalised string, F1 on the bag of
whitespace tokens.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mrc.data import sentence_spans
from retrieval.text import is_chinese

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_EXTRA_PUNCT = set("，。：？！；、“”‘’（）《》【】『』「」〈〉…—－～·￥﹑．")


def _is_punct(ch: str) -> bool:
    return ch in string.punctuation or ch in _EXTRA_PUNCT or unicodedata.category(ch).startswith("P")


def cmrc_tokens(text: str) -> list[str]:
    """Lower-cased tokens without punctuation or spaces: CJK characters one by one, other runs whole."""
    out, run = [], ""
    for ch in text.lower():
        if _is_punct(ch) or ch.isspace():
            if run:
                out.append(run)
                run = ""
        elif _CJK.match(ch):
            if run:
                out.append(run)
                run = ""
            out.append(ch)
        else:
            run += ch
    if run:
        out.append(run)
    return out


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
    p, g = cmrc_tokens(prediction), cmrc_tokens(gold)
    em = float("".join(p) == "".join(g))
    lcs = longest_common_substring(p, g)
    if lcs == 0:
        return em, 0.0
    precision, recall = lcs / len(p), lcs / len(g)
    return em, 2 * precision * recall / (precision + recall)


def squad_normalize(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(_ARTICLES.sub(" ", text).split())


def squad_em_f1(prediction: str, gold: str) -> tuple[float, float]:
    p, g = squad_normalize(prediction).split(), squad_normalize(gold).split()
    em = float(p == g)
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return em, 0.0
    precision, recall = common / len(p), common / len(g)
    return em, 2 * precision * recall / (precision + recall)


def em_f1(prediction: str, golds: Iterable[str]) -> tuple[float, float]:
    """Best (EM, F1) over the gold answers; the language of each gold picks the metric."""
    best_em, best_f1 = 0.0, 0.0
    for gold in golds:
        em, f1 = (cmrc_em_f1 if is_chinese(gold) else squad_em_f1)(prediction, gold)
        best_em, best_f1 = max(best_em, em), max(best_f1, f1)
    return best_em, best_f1


def evaluate_predictions(examples: Sequence[Any], predictions: Mapping[str, Any]) -> dict[str, Any]:
    """Answer and support EM/F1 (×100), overall and per question type and context type.

    ``predictions`` maps question id → answer text, or → ``{"answer": str, "support": str}``. Support is
    scored only for questions with gold support and a predicted support text; a missing prediction scores 0.
    """
    rows: list[dict[str, Any]] = []
    for ex in examples:
        pred = predictions.get(ex.id)
        answer = pred.get("answer", "") if isinstance(pred, Mapping) else (pred or "")
        em, f1 = em_f1(answer, ex.gold_texts or [""]) if not ex.is_impossible else (float(answer == ""),) * 2
        row = {"em": em, "f1": f1, "question_type": ex.question_type, "context_type": ex.context_type}
        if ex.support is not None and isinstance(pred, Mapping) and "support" in pred:
            gold_support = support_text(ex.context, ex.support)
            row["support_em"], row["support_f1"] = em_f1(pred.get("support") or "", [gold_support])
        rows.append(row)
    report: dict[str, Any] = {"overall": _aggregate(rows), "missing_predictions":
                              sum(ex.id not in predictions for ex in examples)}
    for key in ("question_type", "context_type"):
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            if row[key]:
                groups[row[key]].append(row)
        if groups:
            report[f"by_{key}"] = {k: _aggregate(v) for k, v in sorted(groups.items())}
    return report


def _aggregate(rows: list[dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {"count": len(rows)}
    for key in ("em", "f1", "support_em", "support_f1"):
        values = [r[key] for r in rows if key in r]
        if values:
            out[key] = round(100 * sum(values) / len(values), 3)
    return out


def support_text(context: str, sentences: Sequence[int]) -> str:
    """The text of the given sentence indexes, in order."""
    spans = sentence_spans(context)
    return "".join(context[spans[i][0]:spans[i][1]] for i in sorted(sentences) if i < len(spans))
