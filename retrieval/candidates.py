"""Candidate strings for linking, with character offsets into the text they came from.

Chinese: jieba words whose POS is a noun (n*), time (t), place (s), direction (f) or numeral (m), as in the
CMedBERT paper, segmented with the index's user dictionary. Two segmenters give the same words and tags except
inside out-of-vocabulary stretches:
  * ``posseg`` — jieba.posseg, whose POS-HMM tags unknown words (~60k chars/s);
  * ``fast`` — jieba.cut plus the POS dictionary; the unknown words that jieba.cut's HMM found are split and
    tagged by the POS-HMM (decoded with numpy, memoised per word) only when ``keep_unknown`` keeps them (the
    linker's ``hybrid`` mode keeps those that can link at all; its ``fast`` mode none, tagging them x).
    ``bench/linking.py`` measures how often each agrees with the plain pipeline on linked spans.
English: scispaCy's tokenizer on a blank pipeline; candidates are the maximal runs of content tokens between
stop words and punctuation ("noun-phrase heuristic") and their sub-n-grams for exact matching.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal, NamedTuple

from retrieval.pos_hmm import NumpyPOSTokenizer

_NUMERIC = re.compile(r"^[0-9０-９.．%％]+$")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
KeepUnknown = Callable[[list[str]], set[str]]
_LATIN = re.compile(r"^[A-Za-z0-9]+$")


class Candidate(NamedTuple):
    start: int
    end: int
    text: str
    pos: str


class ChineseCandidates:
    """jieba-based candidate extractor bound to one user dictionary."""

    def __init__(self, userdict: Path | None = None, *, pos_prefixes: tuple[str, ...] = ("n", "t", "s", "f", "m"),
                 segmenter: Literal["posseg", "fast"] = "fast") -> None:
        import jieba
        import jieba.posseg

        jieba.setLogLevel(60)
        self.tokenizer = jieba.Tokenizer()
        if userdict is not None:
            self.tokenizer.load_userdict(str(userdict))
        # the reference pipeline is jieba's own; the fast one decodes its POS-HMM with numpy (same output)
        pos_tokenizer = jieba.posseg.POSTokenizer if segmenter == "posseg" else NumpyPOSTokenizer
        self.pos_tokenizer = pos_tokenizer(self.tokenizer)
        self.pos_tokenizer.makesure_userdict_loaded()
        self.pos_prefixes = pos_prefixes
        self.segmenter = segmenter
        self._oov: dict[str, list[tuple[str, str]]] = {}

    def tagged_many(self, texts: list[str], keep_unknown: KeepUnknown | None = None) -> list[list[tuple[str, str]]]:
        """(word, POS) covering each text in order.

        Fast path: words unknown to the POS dictionary go through the POS-HMM only if ``keep_unknown`` (called
        once with the unknown words of all ``texts``) keeps them — the linker keeps those that could link at
        all; the rest are tagged x.
        """
        if self.segmenter == "posseg":
            return [[(p.word, p.flag) for p in self.pos_tokenizer.cut(text)] for text in texts]
        tags = self.pos_tokenizer.word_tag_tab
        cut = [list(self.tokenizer.cut(text)) for text in texts]
        unknown = {w for words in cut for w in words if w not in tags and _CJK.search(w) and not _NUMERIC.match(w)}
        keep = keep_unknown(sorted(unknown)) if keep_unknown is not None and unknown else unknown
        return [self._tag(words, tags, keep) for words in cut]

    def _tag(self, words: list[str], tags: dict[str, str], keep: set[str]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for word in words:
            tag = tags.get(word)
            if tag is not None:
                out.append((word, tag))
            elif _NUMERIC.match(word):
                out.append((word, "m"))
            elif _LATIN.match(word):
                out.append((word, "eng"))
            elif word in keep:
                out.extend(self._unknown(word))
            else:
                out.append((word, "x"))
        return out

    def _unknown(self, word: str) -> list[tuple[str, str]]:
        """An out-of-vocabulary word as jieba's POS-HMM splits and tags it (memoised per word)."""
        found = self._oov.get(word)
        if found is None:
            found = self._oov[word] = [(p.word, p.flag) for p in self.pos_tokenizer.cut(word)]
        return found

    def extract_many(self, texts: list[str], keep_unknown: KeepUnknown | None = None) -> list[list[Candidate]]:
        """Candidates of each text, with offsets into it."""
        return [self._candidates(text, tagged) for text, tagged in zip(texts, self.tagged_many(texts, keep_unknown))]

    def _candidates(self, text: str, tagged: list[tuple[str, str]]) -> list[Candidate]:
        found, pos = [], 0
        for word, tag in tagged:
            start = pos if text.startswith(word, pos) else text.find(word, pos)
            if start < 0:  # jieba never drops characters; guard anyway
                continue
            pos = start + len(word)
            if word.strip() and tag.startswith(self.pos_prefixes):
                found.append(Candidate(start, pos, word, tag))
        return found


class EnglishCandidates:
    """scispaCy tokenizer on ``spacy.blank("en")``; content-token runs and their n-grams."""

    def __init__(self, max_ngram: int = 6) -> None:
        import spacy
        from scispacy.custom_tokenizer import combined_rule_tokenizer
        from spacy.lang.en.stop_words import STOP_WORDS

        self.nlp = spacy.blank("en")
        self.nlp.tokenizer = combined_rule_tokenizer(self.nlp)
        self.stop = STOP_WORDS
        self.max_ngram = max_ngram

    def _content(self, token) -> bool:  # type: ignore[no-untyped-def]
        return not (token.is_punct or token.is_space or token.lower_ in self.stop)

    def extract_many(self, texts: list[str], keep_unknown: KeepUnknown | None = None) -> list[list[Candidate]]:
        """Candidates of each text (``keep_unknown`` is not used: English has no POS step)."""
        return [self._candidates(doc) for doc in self.nlp.pipe(texts)]

    def _candidates(self, doc) -> list[Candidate]:  # type: ignore[no-untyped-def]
        text = doc.text
        runs, run = [], []
        for token in doc:
            if self._content(token):
                run.append(token)
            elif run:
                runs.append(run)
                run = []
        if run:
            runs.append(run)
        found: dict[tuple[int, int], Candidate] = {}
        for run in runs:
            for i in range(len(run)):
                for j in range(i + 1, min(len(run), i + self.max_ngram) + 1):
                    start, end = run[i].idx, run[j - 1].idx + len(run[j - 1])
                    pos = "NP" if (i, j) == (0, len(run)) else "NGRAM"
                    found.setdefault((start, end), Candidate(start, end, text[start:end], pos))
        return sorted(found.values(), key=lambda c: (c.start, c.end))
