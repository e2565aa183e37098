"""Entity linking: candidate strings → KG entities by the exact, overlap and (optional) dense rules.

For a candidate c and an entity e with unit multisets U(c), U(e) (characters for Chinese, words for English):
  * exact    normalize(c) = normalize(e)                               score 1
  * overlap  |U(c) ∩ U(e)| > θ · |U(e)|   (θ = 0.5 by default)          score |U(c) ∩ U(e)| / max(|U(c)|, |U(e)|)
  * dense    cos(enc(c), enc(e)) ≥ τ      (only with a dense index)     score cos
Overlap candidates come from the FAISS n-gram index (top ``faiss_candidates``) and are then checked exactly.
Per candidate the ``top_k`` best entities are kept (exact first). Results are memoised per candidate string.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import sparse

from retrieval.candidates import Candidate, ChineseCandidates, EnglishCandidates
from retrieval.index import EntityIndex
from retrieval.text import normalize, normalize_with_offsets, units


class LinkerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    top_k: int = Field(4, ge=1, description="entities kept per candidate")
    overlap_threshold: float = Field(0.5, ge=0, lt=1, description="θ: shared units must exceed θ·|entity|")
    min_overlap_units: int = Field(2, ge=1, description="shorter candidates link by the exact rule only")
    overlap: bool = Field(True, description="apply the overlap rule (False: the exact and dense rules only)")
    faiss_candidates: int = Field(16, ge=1, description="n-gram neighbours checked per candidate")
    dense_threshold: float | None = Field(None, description="τ for the dense rule (needs a dense index)")
    segmenter: Literal["fast", "hybrid", "posseg"] = Field(
        "hybrid", description="fast: jieba.cut + POS dictionary; hybrid: + POS-HMM for linkable unknown words; "
                            "posseg: jieba's POS-HMM throughout")
    pos_prefixes: tuple[str, ...] = ("n", "t", "s", "f", "m")
    max_ngram: int = Field(6, ge=1, description="English: longest n-gram tried")


class Link(NamedTuple):
    """``text[start:end]`` (offsets into the original text) linked to entity ``entity_id``. A tuple of atoms,
    so the garbage collector stops tracking the (many) links of a large batch."""

    start: int
    end: int
    text: str
    pos: str
    entity_id: int
    entity: str
    type: str | None
    rule: str
    score: float

    def as_dict(self) -> dict[str, object]:
        return self._asdict()


Match = tuple[int, str, float]  # entity id, rule, score


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection during a bulk job that makes many objects and no reference cycles (its
    full-heap passes cost ~10% of linking time); the previous state is restored."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _keep_none(words: list[str]) -> set[str]:
    return set()


class EntityLinker:
    """Links free text to the entities of one :class:`EntityIndex`."""

    def __init__(self, index: EntityIndex, config: LinkerConfig | None = None) -> None:
        self.index = index
        self.config = config or LinkerConfig()
        if index.language == "zh":
            self.extractor: ChineseCandidates | EnglishCandidates = ChineseCandidates(
                index.userdict, pos_prefixes=tuple(self.config.pos_prefixes),
                segmenter="posseg" if self.config.segmenter == "posseg" else "fast")
        else:
            self.extractor = EnglishCandidates(max_ngram=self.config.max_ngram)
        self._cache: dict[str, tuple[Match, ...]] = {}
        self._occurrences: dict[tuple[str, int], int] = {}
        self._entity_units = self._unit_matrix(index.name_units, grow=True)
        self._entity_sizes = np.array([len(u) for u in index.name_units])

    def _unit_matrix(self, names: Sequence[Sequence[str]], grow: bool = False) -> sparse.csr_matrix:
        """Binary rows over unit occurrences (u, k) — the k-th u of a name — so that the dot product of two rows
        is the multiset intersection size |U(c) ∩ U(e)| = Σ_u min(n_c(u), n_e(u)). Occurrences no entity has
        are dropped (``grow`` adds them: entity names only)."""
        cols: list[int] = []
        indptr = [0]
        vocab = self._occurrences
        for name in names:
            seen: Counter[str] = Counter()
            for u in name:
                seen[u] += 1
                col = vocab.get((u, seen[u]))
                if col is None and grow:
                    col = vocab[(u, seen[u])] = len(vocab)
                if col is not None:
                    cols.append(col)
            indptr.append(len(cols))
        data = np.ones(len(cols), dtype=np.int32)
        width = len(vocab) if grow else self._entity_units.shape[1]
        return sparse.csr_matrix((data, np.array(cols, dtype=np.int64), np.array(indptr)), shape=(len(names), width))

    # -- matching ---------------------------------------------------------------------------------------------
    def _match_new(self, keys: list[str]) -> None:
        """Fill the cache for candidate keys not seen yet (one batched FAISS search)."""
        cfg = self.config
        key_units = {k: u for k in keys if cfg.overlap and len(u := units(k, self.index.language)) >= cfg.min_overlap_units}
        overlap_keys = list(key_units)
        overlaps: dict[str, list[tuple[int, float]]] = {}
        if overlap_keys:
            _, ids = self.index.ngram.search(self.index.query_vectors(overlap_keys), cfg.faiss_candidates)
            overlaps = self._overlaps(overlap_keys, [key_units[k] for k in overlap_keys], ids)
        dense: dict[str, list[tuple[int, float]]] = {}
        if self.index.dense is not None and cfg.dense_threshold is not None and keys:
            from retrieval.dense import encode_names

            sims, ids = self.index.dense.search(encode_names(keys, self.index.config.dense_encoder),
                                                cfg.faiss_candidates)
            dense = {k: [(int(i), float(s)) for i, s in zip(row_i, row_s) if i >= 0 and s >= cfg.dense_threshold]
                     for k, row_i, row_s in zip(keys, ids, sims)}
        for key in keys:
            matches: dict[int, Match] = {i: (i, "exact", 1.0) for i in self.index.exact.get(key, [])}
            for i, score in overlaps.get(key, ()):
                matches.setdefault(i, (i, "overlap", score))
            for i, sim in dense.get(key, ()):
                matches.setdefault(i, (i, "dense", sim))
            ranked = sorted(matches.values(), key=lambda m: (m[1] != "exact", -m[2], m[0]))
            self._cache[key] = tuple((i, rule, round(score, 4)) for i, rule, score in ranked[: cfg.top_k])

    def _overlaps(self, keys: list[str], key_units: list[list[str]], ids: np.ndarray
                  ) -> dict[str, list[tuple[int, float]]]:
        """The FAISS neighbours ``ids`` [Q, F] (-1 = none) of each key that pass the overlap rule, with their
        scores (vectorised)."""
        rows = np.repeat(np.arange(len(keys)), ids.shape[1])
        flat = ids.ravel()
        valid = flat >= 0
        rows, flat = rows[valid], flat[valid]
        shared = np.asarray(self._unit_matrix(key_units)[rows].multiply(self._entity_units[flat]).sum(1)).ravel()
        entity_size = self._entity_sizes[flat]
        size = np.array([len(u) for u in key_units])[rows]
        passed = (entity_size > 0) & (shared > self.config.overlap_threshold * entity_size)
        scores = shared / np.maximum(size, entity_size)
        out: dict[str, list[tuple[int, float]]] = {}
        for r, i, score in zip(rows[passed].tolist(), flat[passed].tolist(), scores[passed].tolist()):
            out.setdefault(keys[r], []).append((i, score))
        return out

    def match(self, candidate: str) -> tuple[Match, ...]:
        """Entities for one candidate string, best first."""
        key = normalize(candidate)
        if key not in self._cache:
            self._match_new([key])
        return self._cache[key]

    def _linkable(self, words: list[str]) -> set[str]:
        """Hybrid segmenter callback: the unknown words (normalized) that link to at least one entity, matched in
        one batch."""
        new = [w for w in words if w not in self._cache]
        if new:
            self._match_new(new)
        return {w for w in words if self._cache[w]}

    # -- linking ----------------------------------------------------------------------------------------------
    def candidates(self, texts: list[str]) -> list[list[Candidate]]:
        """Candidates of each text with offsets into it (matching runs on the NFKC, lower-cased text)."""
        normalized = [normalize_with_offsets(t) for t in texts]
        keep = self._linkable if self.config.segmenter == "hybrid" else _keep_none
        out = []
        for text, (_, source), found in zip(texts, normalized,
                                            self.extractor.extract_many([n for n, _ in normalized], keep)):
            spans = [(source[c.start], source[c.end - 1] + 1, c.pos) for c in found]
            out.append([Candidate(a, b, text[a:b], pos) for a, b, pos in spans])
        return out

    def link_many(self, texts: list[str]) -> list[list[Link]]:
        """Links for each text; all unseen candidate strings are matched in one batch."""
        with _gc_paused():
            return self._link_many(texts)

    def _link_many(self, texts: list[str]) -> list[list[Link]]:
        per_text = self.candidates(texts)
        keys = [[normalize(c.text) for c in cands] for cands in per_text]
        new = list({k for ks in keys for k in ks if k not in self._cache})
        if new:
            self._match_new(new)
        names, types = self.index.names, self.index.types
        return [[Link(c.start, c.end, c.text, c.pos, entity_id, names[entity_id], types[entity_id], rule,
                      score)
                 for c, k in zip(cands, ks) for entity_id, rule, score in self._cache[k]]
                for cands, ks in zip(per_text, keys)]

    def link(self, text: str) -> list[Link]:
        return self.link_many([text])[0]
