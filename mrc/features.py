"""Windows over long passages and their labels (as Hugging Face ``run_qa`` does it).

Each (question, passage) pair is tokenized with a fast tokenizer into windows of at most ``max_seq_length``
tokens overlapping by ``doc_stride``. Labels per window:
  * ``start``/``end``: token indexes of the first answer, or 0 ([CLS]) when the window does not hold it;
  * ``support [L]``: 1 for context tokens inside a support sentence, 0 for other context tokens, -100 elsewhere.
``offsets`` map tokens back to passage characters (None outside the passage) for post-processing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tokenizers
from pydantic import BaseModel, ConfigDict, Field

from mrc.data import Example, sentence_spans

IGNORE = -100


class FeatureConfig(BaseModel):
    """Window settings; the defaults are the recipe of record's (naming one setting keeps the others')."""

    model_config = ConfigDict(extra="forbid")

    max_seq_length: int = Field(384, ge=32)
    doc_stride: int = Field(128, ge=8)
    max_query_length: int = Field(64, ge=8)


@dataclass
class Feature:
    example_index: int
    input_ids: list[int]
    token_type_ids: list[int]
    offsets: list[tuple[int, int] | None]
    sequence_ids: list[int | None]
    token_offsets: list[tuple[int, int]] = field(default_factory=list)  # every token, in its own segment
    start: int = 0
    end: int = 0
    support: list[int] = field(default_factory=list)
    category: list[float] | None = None  # answer-category soft labels of the example (``mrc.categories``)
    extra: dict[str, Any] = field(default_factory=dict)  # model-specific inputs (e.g. entity ids)

    @property
    def has_answer(self) -> bool:
        return self.start > 0


def prepare_features(examples: list[Example], tokenizer: Any, config: FeatureConfig) -> list[Feature]:
    """All windows of all examples, labelled when the example has answers / support."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("a fast tokenizer (with offset mapping) is required")
    questions = [_clip_question(e.question, tokenizer, config.max_query_length) for e in examples]
    enc = tokenizer(questions, [e.context for e in examples], truncation="only_second",
                    max_length=config.max_seq_length, stride=config.doc_stride, return_overflowing_tokens=True,
                    return_offsets_mapping=True, return_token_type_ids=True, padding=False)
    features = []
    for i, example_index in enumerate(enc["overflow_to_sample_mapping"]):
        ex = examples[example_index]
        seq_ids = enc.sequence_ids(i)
        offsets = [tuple(o) if s == 1 else None for o, s in zip(enc["offset_mapping"][i], seq_ids)]
        feat = Feature(example_index, enc["input_ids"][i], enc["token_type_ids"][i], offsets, seq_ids,
                       [tuple(o) for o in enc["offset_mapping"][i]])
        if ex.answers:
            feat.start, feat.end = answer_tokens(offsets, ex.answers[0].start, ex.answers[0].end)
        feat.support = _support_labels(offsets, ex)
        features.append(feat)
    check_coverage(features, examples, _context_ends(examples, tokenizer))
    return features


def _context_ends(examples: list[Example], tokenizer: Any) -> dict[str, int]:
    """passage → end of its last token, from a tokenization without windows."""
    contexts = sorted({e.context for e in examples})
    enc = tokenizer(contexts, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    return {c: max((o[1] for o in offsets), default=0) for c, offsets in zip(contexts, enc["offset_mapping"])}


def check_coverage(features: list[Feature], examples: list[Example], context_ends: dict[str, int]) -> None:
    """Every example's windows must cover its passage without a gap, from its first token to its last
    (``context_ends``): a tokenizer whose overflow windows stop early (``tokenizers`` 0.23.2 does) would otherwise
    train on truncated passages without a word."""
    spans: dict[int, list[tuple[int, int]]] = {}
    for f in features:
        chars = [o for o in f.offsets if o is not None and o[1] > o[0]]
        if chars:
            spans.setdefault(f.example_index, []).append((chars[0][0], chars[-1][1]))
    for index, ex in enumerate(examples):
        covered = 0
        for start, end in sorted(spans.get(index, [])):
            if start > covered and ex.context[covered:start].strip():
                break
            covered = max(covered, end)
        if covered < context_ends.get(ex.context, 0):
            raise ValueError(f"question {ex.id}: the tokenizer's windows cover its passage only up to character "
                             f"{covered} of {context_ends[ex.context]} (tokenizers {tokenizers.__version__}; 0.23.2 "
                             "drops overflow windows: install another version)")


def _clip_question(question: str, tokenizer: Any, max_tokens: int) -> str:
    enc = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    if len(enc["input_ids"]) <= max_tokens:
        return question
    return question[: enc["offset_mapping"][max_tokens - 1][1]]


def answer_tokens(offsets: list[tuple[int, int] | None], start_char: int, end_char: int) -> tuple[int, int]:
    """First/last token of the answer if the window holds all of it, else (0, 0)."""
    context = [j for j, o in enumerate(offsets) if o is not None]
    if not context or offsets[context[0]][0] > start_char or offsets[context[-1]][1] < end_char:
        return 0, 0
    start = next(j for j in context if offsets[j][1] > start_char)
    end = next(j for j in reversed(context) if offsets[j][0] < end_char)
    return start, end


def _support_labels(offsets: list[tuple[int, int] | None], ex: Example) -> list[int]:
    if ex.support is None:
        return [IGNORE] * len(offsets)
    spans = sentence_spans(ex.context)
    inside = np.zeros(len(ex.context) + 1, dtype=bool)
    for s in ex.support:
        if s < len(spans):
            inside[spans[s][0]:spans[s][1]] = True
    return [IGNORE if o is None else int(inside[o[0]]) for o in offsets]


def recover_answer(feature: Feature, context: str) -> str:
    """The passage text between the labelled start and end tokens ('' for a window without the answer)."""
    if not feature.has_answer:
        return ""
    return context[feature.offsets[feature.start][0]:feature.offsets[feature.end][1]]
