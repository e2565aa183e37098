"""Entity linking: candidate strings → KG entities by the exact, overlap and (optional) dense rules.

For a candidate c and an entity e with unit multisets U(c), U(e) (characters for Chinese, words for English):
  * exact    normalize(c) = normalize(e)                               score 1
  * overlap  |U(c) ∩ U(e)| > θ · |U(e)|   (θ = 0.5 by default)          score |U(c) ∩ U(e)| / max(|U(c)|, |U(e)|)
  * dense    cos(enc(c), enc(e)) ≥ τ      (only with a dense index)     score cos
Overlap candidates come from the FAISS n-gram index (top ``faiss_candidates``) and are then checked exactly.
Per candidate the ``top_k`` best entities are kept (exact first). Results are memoised per candidate string.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from retrieval.candidates import Candidate, ChineseCandidates, EnglishCandidates
from retrieval.index import EntityIndex
from retrieval.text import normalize, normalize_with_offsets, units


class LinkerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    top_k: int = Field(4, ge=1, description="entities kept per candidate")
    overlap_threshold: float = Field(0.5, ge=0, lt=1, description="θ: shared units must exceed θ·|entity|")
    min_overlap_units: int = Field(2, ge=1, description="shorter candidates link by the exact rule only")
    faiss_candidates: int = Field(16, ge=1, description="n-gram neighbours checked per candidate")
    dense_threshold: float | None = Field(None, description="τ for the dense rule (needs a dense index)")
    segmenter: Literal["fast", "hybrid", "posseg"] = Field(
        "fast", description="fast: jieba.cut + POS dictionary; hybrid: + POS-HMM for linkable unknown words; "
                            "posseg: jieba's POS-HMM throughout")
    pos_prefixes: tuple[str, ...] = ("n", "t", "s", "f", "m")
    max_ngram: int = Field(6, ge=1, description="English: longest n-gram tried")


@dataclass(frozen=True)
class Link:
    """``text[start:end]`` (offsets into the original text) linked to entity ``entity_id``."""

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
        return asdict(self)


Match = tuple[int, str, float]  # entity id, rule, score


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
        # (unit, count) pairs and size of every entity name, for a fast exact overlap check
        self._unit_counts = [(tuple(Counter(u).items()), len(u)) for u in index.name_units]

    # -- matching ---------------------------------------------------------------------------------------------
    def _match_new(self, keys: list[str]) -> None:
        """Fill the cache for candidate keys not seen yet (one batched FAISS search)."""
        cfg = self.config
        overlap_keys = [k for k in keys if len(units(k, self.index.language)) >= cfg.min_overlap_units]
        neighbours: dict[str, np.ndarray] = {}
        if overlap_keys:
            _, ids = self.index.ngram.search(self.index.query_vectors(overlap_keys), cfg.faiss_candidates)
            neighbours = dict(zip(overlap_keys, ids))
        dense: dict[str, list[tuple[int, float]]] = {}
        if self.index.dense is not None and cfg.dense_threshold is not None and keys:
            from retrieval.dense import encode_names

            sims, ids = self.index.dense.search(encode_names(keys, self.index.config.dense_encoder),
                                                cfg.faiss_candidates)
            dense = {k: [(int(i), float(s)) for i, s in zip(row_i, row_s) if i >= 0 and s >= cfg.dense_threshold]
                     for k, row_i, row_s in zip(keys, ids, sims)}
        for key in keys:
            matches: dict[int, Match] = {i: (i, "exact", 1.0) for i in self.index.exact.get(key, [])}
            cand_units = Counter(units(key, self.index.language))
            size = sum(cand_units.values())
            for i in neighbours.get(key, ()):
                if i < 0 or i in matches:
                    continue
                entity_units, entity_size = self._unit_counts[i]
                shared = sum(min(n, cand_units[u]) for u, n in entity_units if u in cand_units)
                if entity_size and shared > cfg.overlap_threshold * entity_size:
                    matches[int(i)] = (int(i), "overlap", shared / max(size, entity_size))
            for i, sim in dense.get(key, ()):
                matches.setdefault(i, (i, "dense", sim))
            ranked = sorted(matches.values(), key=lambda m: (m[1] != "exact", -m[2], m[0]))
            self._cache[key] = tuple(ranked[: cfg.top_k])

    def match(self, candidate: str) -> tuple[Match, ...]:
        """Entities for one candidate string, best first."""
        key = normalize(candidate)
        if key not in self._cache:
            self._match_new([key])
        return self._cache[key]

    def _linkable(self, words: list[str]) -> set[str]:
        """The words (already normalized) that link to at least one entity; matched in one batch."""
        new = [w for w in words if w not in self._cache]
        if new:
            self._match_new(new)
        return {w for w in words if self._cache[w]}

    # -- linking ----------------------------------------------------------------------------------------------
    def candidates(self, text: str) -> list[Candidate]:
        """Candidates with offsets into ``text`` (matching runs on the NFKC, lower-cased text)."""
        norm, source = normalize_with_offsets(text)
        out = []
        keep = self._linkable if self.config.segmenter == "hybrid" else _keep_none
        for c in self.extractor.extract(norm, keep):
            start, end = source[c.start], source[c.end - 1] + 1
            out.append(Candidate(start, end, text[start:end], c.pos))
        return out

    def link_many(self, texts: list[str]) -> list[list[Link]]:
        """Links for each text; all unseen candidate strings are matched in one batch."""
        per_text = [self.candidates(t) for t in texts]
        keys = {normalize(c.text) for cands in per_text for c in cands}
        new = [k for k in keys if k not in self._cache]
        if new:
            self._match_new(new)
        out = []
        for cands in per_text:
            links = []
            for c in cands:
                for entity_id, rule, score in self._cache[normalize(c.text)]:
                    links.append(Link(c.start, c.end, c.text, c.pos, entity_id, self.index.names[entity_id],
                                      self.index.types[entity_id], rule, round(score, 4)))
            out.append(links)
        return out

    def link(self, text: str) -> list[Link]:
        return self.link_many([text])[0]
