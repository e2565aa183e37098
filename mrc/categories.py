"""Answer categories (Clinical QA 2.0): the labels file, class weights and category metrics.

Labels are multi-label soft labels per question, y ∈ [0, 1]^|C| with max_c y_c = 1 (the dominant category);
the gold set of a question is {c : y_c ≥ 0.5}. A model predicts p = σ(logits); its set is {c : p_c ≥ 0.5},
or the arg-max category when no probability reaches 0.5.

Labels file (``scripts/label_categories.py`` writes it)::

    {"categories": ["Diagnosis", …], "labels": {QUESTION_ID: {"Diagnosis": 1.0, "Symptom": 0.5}, …}, "report": {…}}
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kgutil.io import atomic_write_text
from mrc.data import DataError, read_json

DEFAULT_CATEGORIES = ("Diagnosis", "Medication", "Symptom", "Procedure", "Lab", "Other")
GOLD_THRESHOLD = 0.5


class CategoryLabels(BaseModel):
    """Soft labels per question id over ``categories``."""

    model_config = ConfigDict(extra="allow")

    categories: list[str] = Field(min_length=1)
    labels: dict[str, dict[str, float]]

    @field_validator("categories")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("category names repeat")
        return v

    @classmethod
    def read(cls, path: Path) -> "CategoryLabels":
        """Read and check a labels file; errors name the file and the question."""
        data = read_json(Path(path), "a category labels file")
        try:
            labels = cls.model_validate(data)
        except ValidationError as e:
            first = e.errors()[0]
            raise DataError(f"{path}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
        known = set(labels.categories)
        for qid, soft in labels.labels.items():
            unknown = set(soft) - known
            if unknown:
                raise DataError(f"{path}: question {qid}: unknown categories {sorted(unknown)} "
                                f"(the file declares {labels.categories})")
            if any(not 0.0 <= w <= 1.0 for w in soft.values()):
                raise DataError(f"{path}: question {qid}: label weights must lie in [0, 1]")
        return labels

    def write(self, path: Path) -> None:
        atomic_write_text(Path(path), json.dumps(self.model_dump(), ensure_ascii=False, indent=1))


def labels_digest(path: Path) -> str:
    """SHA-256 of a labels file's categories and labels in canonical JSON: what a model trains on, not the file's
    bytes (its report, e.g. the printed sample's entity order, may differ between two labellings of the same
    answers)."""
    labels = CategoryLabels.read(path)
    canonical = json.dumps({"categories": labels.categories, "labels": labels.labels}, ensure_ascii=False,
                           sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def attach_labels(examples: Iterable[Any], labels: CategoryLabels) -> int:
    """Set ``example.categories`` from ``labels`` (None for a question without one); returns how many got one."""
    found = 0
    for e in examples:
        e.categories = labels.labels.get(e.id)
        found += e.categories is not None
    return found


def gold_set(soft: Mapping[str, float]) -> set[str]:
    return {c for c, w in soft.items() if w >= GOLD_THRESHOLD}


def predicted_set(probs: Mapping[str, float], threshold: float = GOLD_THRESHOLD) -> set[str]:
    chosen = {c for c, p in probs.items() if p >= threshold}
    return chosen or ({max(probs, key=probs.__getitem__)} if probs else set())


def class_weights(vectors: Iterable[Sequence[float]], size: int) -> list[float]:
    """w_i = N / (|C|·count_i), count_i = Σ_q y_qi over the N labelled questions (a category never seen counts 1)."""
    rows = list(vectors)
    counts = [max(1.0, sum(v[i] for v in rows)) for i in range(size)]
    return [round(len(rows) / (size * c), 6) for c in counts]


def set_metrics(pairs: Iterable[tuple[set[str], set[str]]], categories: Sequence[str]) -> dict[str, Any]:
    """Accuracy, micro/macro F1 and per-category figures of (gold set, predicted set) pairs."""
    pairs = list(pairs)
    tp = dict.fromkeys(categories, 0)
    fp, fn = dict(tp), dict(tp)
    for gold, pred in pairs:
        for c in categories:
            tp[c] += c in gold and c in pred
            fp[c] += c not in gold and c in pred
            fn[c] += c in gold and c not in pred
    per = {c: _prf(tp[c], fp[c], fn[c]) | {"support": tp[c] + fn[c]} for c in categories}
    present = [c for c in categories if per[c]["support"]]
    micro = _prf(sum(tp.values()), sum(fp.values()), sum(fn.values()))
    return {"count": len(pairs),
            "accuracy": round(100 * sum(g == p for g, p in pairs) / len(pairs), 3) if pairs else 0.0,
            "micro_f1": micro["f1"],
            "macro_f1": round(sum(per[c]["f1"] for c in present) / len(present), 3) if present else 0.0,
            "per_category": per}


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(100 * p, 3), "recall": round(100 * r, 3), "f1": round(100 * f, 3)}
