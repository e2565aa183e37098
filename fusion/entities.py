"""Entity inputs of CMedBERT: link questions and passages once, align links to every window's tokens.

``EntityInputs.attach`` sets ``feature.extra["entity_ids"]`` ([L, K], -1 = none) for every window; with the relation
feature ``feature.extra["relation_ids"]`` ([L], 0 = none; ``retrieval.relations``); with the KG-score feature, bias or
entity boundary ``feature.extra["kg_score_ids"]`` ([L], 0 = none): each passage entity is scored by how well the KG
vectors fit a triple between it and a question entity, over the relations the question names (all when it names none):
s(c) = max_{q, r} max(f(q, r, c), f(c, r, q)) with the model's own triple score f, e.g. TransE's −‖e_h + r − e_t‖
(``KGEmbeddings.fit_scores``); a window's scored entities are ranked (1 = best), and a token gets the bucket of its
best-ranked entity (ranks 1, 2, 3, 4–5, 6–10, 11+ → 1 … 6).
The arrays are cached under ``cache_dir`` keyed by the index checksum, the linker settings, K, the features' inputs
and the exact windows (token ids and offsets, hence dataset file, tokenizer and window settings), so training never
links twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from kg.embeddings.export import KGEmbeddings
from kg.snapshot import Snapshot
from kgutil.io import atomic_path
from retrieval.align import token_entity_ids
from retrieval.index import EntityIndex
from retrieval.linker import EntityLinker, Link, LinkerConfig
from retrieval.relations import RelationLookup, question_fit_scores, score_ranks

log = logging.getLogger(__name__)

KG_SCORE_BUCKETS = (1, 2, 3, 5, 10)  # upper rank bounds: ranks 1, 2, 3, 4–5, 6–10, 11+ → bucket ids 1 … 6


def rank_buckets(entity_ids: np.ndarray, sequence_ids: list[int | None], scores: dict[int, float]) -> np.ndarray:
    """``[L]`` bucket ids of one window (module docstring): its passage entities with a score ranked, 1 = best (ties
    share the better rank); each passage token gets the bucket of its best-ranked entity, 0 when it has none."""
    out = np.zeros(len(entity_ids), dtype=np.int64)
    passage = np.asarray([s == 1 for s in sequence_ids])[:, None] & (entity_ids >= 0)
    present = sorted({int(e) for e in np.unique(entity_ids[passage])} & scores.keys())
    if not present:
        return out
    ranks = score_ranks(np.asarray([scores[e] for e in present]))
    bucket_of = dict(zip(present, 1 + np.searchsorted(KG_SCORE_BUCKETS, ranks, side="left")))
    for i, k in zip(*np.nonzero(passage)):
        bucket = bucket_of.get(int(entity_ids[i, k]), 0)
        if bucket and (out[i] == 0 or bucket < out[i]):
            out[i] = bucket
    return out


class EntityInputs:
    def __init__(self, fusion: Any) -> None:
        self.config = fusion
        if not fusion.index or not Path(fusion.index, "manifest.json").exists():
            raise ValueError(f"entity index {fusion.index!r} not found: give the model its index with --index DIR "
                             f"(built from KG snapshot {(fusion.snapshot_checksum or '?')[:12]}…)")
        self.index = EntityIndex.load(fusion.index, snapshot_checksum=fusion.snapshot_checksum)
        self.linker_config = LinkerConfig.model_validate(fusion.linker)
        self._linker: EntityLinker | None = None
        self._relations: RelationLookup | None = None
        self._snapshot: Snapshot | None = None
        self._vectors: KGEmbeddings | None = None
        self.cache_dir = Path(fusion.cache_dir) if fusion.cache_dir else Path(fusion.index) / "cache"

    @property
    def linker(self) -> EntityLinker:
        if self._linker is None:
            self._linker = EntityLinker(self.index, self.linker_config)
        return self._linker

    @property
    def snapshot(self) -> Snapshot:
        """The KG snapshot the index was built from (``fusion.snapshot`` overrides where it lies now); a snapshot
        of another KG is refused."""
        if self._snapshot is None:
            path = self.config.snapshot or self.index.snapshot_path
            if not path or not Path(path, "manifest.json").exists():
                raise ValueError(f"the relation and KG-score features need the KG snapshot of index "
                                 f"{self.config.index}: {path or 'none recorded'} not found; give it with "
                                 f"--snapshot DIR")
            snapshot = Snapshot.load(Path(path), verify=False)
            if snapshot.checksum != self.index.snapshot_checksum:
                raise ValueError(f"snapshot {path} ({snapshot.checksum[:12]}…) is not the one index "
                                 f"{self.config.index} was built from ({self.index.snapshot_checksum[:12]}…)")
            self._snapshot = snapshot
        return self._snapshot

    @property
    def relations(self) -> RelationLookup:
        if self._relations is None:
            self._relations = RelationLookup.from_snapshot(self.snapshot)
        return self._relations

    @property
    def vectors(self) -> KGEmbeddings:
        """The KG-embeddings export (entity and relation vectors) the KG-score feature reads."""
        if self._vectors is None:
            if not self.config.embeddings or not Path(self.config.embeddings, "metadata.json").exists():
                raise ValueError(f"the KG-score feature needs the model's KG embeddings export: "
                                 f"{self.config.embeddings or 'none recorded'} not found")
            self._vectors = KGEmbeddings.load(Path(self.config.embeddings),
                                              snapshot_checksum=self.index.snapshot_checksum)
        return self._vectors

    def kg_scores(self, question: str, links: dict[int, list[Link]]) -> dict[int, float]:
        """Passage entity → s(c) from the question's entities (module docstring); question entities get none."""
        asked = np.unique([link.entity_id for link in links[0]]).astype(np.int64)
        candidates = np.asarray(sorted({link.entity_id for link in links[1]} - set(asked.tolist())), dtype=np.int64)
        if not len(asked) or not len(candidates):
            return {}
        scores = question_fit_scores(self.vectors, self.snapshot.relation_names, question, asked, candidates)
        return dict(zip(candidates.tolist(), scores.tolist()))

    def _key(self, features: list[Any], examples: list[Any]) -> str:
        h = hashlib.sha256()
        h.update(self.index.snapshot_checksum.encode())
        h.update(self.linker_config.model_dump_json().encode())
        h.update(str(self.config.entities_per_token).encode())
        if self.config.relation_feature:
            h.update(b" relations")
        if self.config.uses_kg_scores:
            h.update(b" kg_scores" + json.dumps(self.vectors.metadata, sort_keys=True).encode())
        for f in features:
            ex = examples[f.example_index]
            h.update(ex.question.encode() + b"\0" + ex.context.encode() + b"\0")
            h.update(np.asarray(f.input_ids, dtype=np.int64).tobytes())
            h.update(np.asarray(f.token_offsets, dtype=np.int64).tobytes())
        return h.hexdigest()[:32]

    def attach(self, features: list[Any], examples: list[Any]) -> None:
        if not features:
            return
        k = self.config.entities_per_token
        path = self.cache_dir / f"entities-{self._key(features, examples)}.npz"
        if path.exists():
            with np.load(path, allow_pickle=False) as cached:
                arrays = {name: cached[name] for name in cached.files}
            log.info("entity inputs from cache %s", path)
        else:
            links = self.link_examples(examples)
            windows = [token_entity_ids(f.token_offsets, f.sequence_ids, links[f.example_index], k)[0]
                       for f in features]
            arrays = {"ids": np.concatenate(windows), "lengths": np.asarray([len(a) for a in windows])}
            if self.config.relation_feature:
                arrays["relations"] = np.concatenate([self.relations.token_relations(ids, f.sequence_ids)
                                                      for ids, f in zip(windows, features)])
            if self.config.uses_kg_scores:
                scores = [self.kg_scores(ex.question, ex_links) for ex, ex_links in zip(examples, links)]
                arrays["kg_scores"] = np.concatenate([rank_buckets(ids, f.sequence_ids, scores[f.example_index])
                                                      for ids, f in zip(windows, features)])
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, **arrays)
        ids, bounds = arrays["ids"], np.cumsum(arrays["lengths"])[:-1]
        for f, chunk in zip(features, np.split(ids, bounds)):
            f.extra["entity_ids"] = chunk
        covered = float((ids >= 0).any(axis=1).mean()) if len(ids) else 0.0
        log.info("entity inputs: %d windows, %.1f%% of tokens carry an entity", len(features), 100 * covered)
        if "relations" in arrays:
            for f, chunk in zip(features, np.split(arrays["relations"], bounds)):
                f.extra["relation_ids"] = chunk
            log.info("relation feature: %.1f%% of tokens carry a KG relation to a question entity",
                     100 * float((arrays["relations"] > 0).mean()) if len(ids) else 0.0)
        if "kg_scores" in arrays:
            for f, chunk in zip(features, np.split(arrays["kg_scores"], bounds)):
                f.extra["kg_score_ids"] = chunk
            log.info("KG-score feature: %.1f%% of tokens carry a scored entity",
                     100 * float((arrays["kg_scores"] > 0).mean()) if len(ids) else 0.0)

    def link_examples(self, examples: list[Any]) -> list[dict[int, list[Link]]]:
        """{segment: links} per example: 0 = question, 1 = passage (each distinct text linked once)."""
        texts = sorted({t for ex in examples for t in (ex.question, ex.context)})
        linked = dict(zip(texts, self.linker.link_many(texts)))
        return [{0: linked[ex.question], 1: linked[ex.context]} for ex in examples]

    def describe(self, feature: Any, details: dict[str, np.ndarray], question: str, passage: str
                 ) -> list[dict[str, Any]]:
        """The window's links with mean local attention over their tokens and global attention from [CLS]."""
        links = self.link_examples([_Pair(question, passage)])[0]
        ids = feature.extra["entity_ids"]
        alpha = details.get("local_attention")
        beta = details.get("global_attention")
        window = [int(x) for x in details.get("window_entity_ids", [])]
        out = []
        for segment, seg_links in links.items():
            text = question if segment == 0 else passage
            for link in seg_links:
                tokens = [j for j, (o, s) in enumerate(zip(feature.token_offsets, feature.sequence_ids))
                          if s == segment and o[1] > o[0] and o[0] < link.end and o[1] > link.start]
                weights = [float(alpha[j][list(ids[j]).index(link.entity_id)]) for j in tokens
                           if alpha is not None and link.entity_id in ids[j]]
                if not weights:
                    continue
                out.append({"segment": "question" if segment == 0 else "passage", "span": text[link.start:link.end],
                            "start": link.start, "end": link.end, "entity": link.entity, "type": link.type,
                            "rule": link.rule, "score": link.score, "token_indexes": tokens,
                            "attention": round(float(np.mean(weights)), 4),
                            "global_attention": round(float(beta[window.index(link.entity_id)]), 4)
                            if beta is not None and link.entity_id in window else None})
        return out


class _Pair:
    def __init__(self, question: str, context: str) -> None:
        self.question, self.context = question, context

