"""KG relations between the question's entities and a window's tokens (a token feature of CMedBERT).

For a window with question entities Q (every entity linked on a question token), passage token i with entities
e_i1 … e_iK (best link first) gets r_i = 1 + the id of the relation of the first triple (q, r, e_ik) or
(e_ik, r, q) with q ∈ Q, q ≠ e_ik, taken in slot order k = 1 … K (then question entities by id; a pair
linked by several relations counts its lowest relation id); r_i = 0 when no such triple exists.
Question tokens and special tokens get 0. ``named_relations`` finds the relations a question names;
``question_fit_scores`` ranks passage entities by how well the KG vectors fit a triple from a question entity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from kg.snapshot import Snapshot

if TYPE_CHECKING:
    from kg.embeddings.export import KGEmbeddings


def named_relations(question: str, relation_names: Sequence[str], min_chars: int = 2) -> np.ndarray:
    """Ids of the relations whose name (≥ ``min_chars`` characters) appears in ``question`` ("…的症状" → 症状)."""
    named = [i for i, name in enumerate(relation_names) if len(name) >= min_chars and name in question]
    return np.asarray(named, dtype=np.int64)


def question_fit_scores(vectors: KGEmbeddings, relation_names: Sequence[str], question: str, asked: np.ndarray,
                        candidates: np.ndarray) -> np.ndarray:
    """``[C]``: s(c) = max_{q ∈ asked, r} max(f(q, r, c), f(c, r, q)) with the model's triple score f, over the
    relations ``question`` names (all relations when it names none; ``KGEmbeddings.fit_scores``)."""
    named = named_relations(question, relation_names)
    return vectors.fit_scores(asked, candidates, named if len(named) else None)


def score_ranks(scores: np.ndarray) -> np.ndarray:
    """1 + the number of strictly higher scores (1 = best; ties share the better rank)."""
    return 1 + (scores[None, :] > scores[:, None]).sum(axis=1)


class RelationLookup:
    """Both directions of every triple as sorted pair keys h·E + t → relation id (the lowest id of a pair)."""

    def __init__(self, triples: np.ndarray, num_entities: int, num_relations: int) -> None:
        self.num_entities, self.num_relations = num_entities, num_relations
        h, r, t = (np.asarray(triples[:, i], dtype=np.int64) for i in range(3))
        keys = np.concatenate([h * num_entities + t, t * num_entities + h])
        rels = np.concatenate([r, r])
        order = np.lexsort((rels, keys))
        keys, rels = keys[order], rels[order]
        first = np.ones(len(keys), dtype=bool)
        first[1:] = keys[1:] != keys[:-1]
        self.keys, self.relations = keys[first], rels[first]

    @classmethod
    def from_snapshot(cls, snapshot: Snapshot) -> "RelationLookup":
        return cls(snapshot.triples, snapshot.num_entities, snapshot.num_relations)

    def relation(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Relation id of each pair (a_j, b_j) in either direction, -1 where none (a == b: none)."""
        keys = np.asarray(a, dtype=np.int64) * self.num_entities + np.asarray(b, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.keys, keys), max(0, len(self.keys) - 1))
        found = (len(self.keys) > 0) & (self.keys[at] == keys) & (np.asarray(a) != np.asarray(b))
        return np.where(found, self.relations[at], -1)

    def token_relations(self, entity_ids: np.ndarray, sequence_ids: list[int | None]) -> np.ndarray:
        """``r [L]`` for one window from its ``entity_ids [L, K]`` (-1 = none), by the rule of the module."""
        out = np.zeros(len(entity_ids), dtype=np.int64)
        segment = np.asarray([-1 if s is None else s for s in sequence_ids])
        question = np.unique(entity_ids[segment == 0])
        question = question[question >= 0]
        tokens, slots = np.nonzero((entity_ids >= 0) & (segment == 1)[:, None])
        if not len(question) or not len(tokens):
            return out
        passage = entity_ids[tokens, slots]
        found = self.relation(np.repeat(passage, len(question)), np.tile(question, len(passage)))
        found = found.reshape(len(passage), len(question))
        best = np.where((found >= 0).any(axis=1), found[np.arange(len(passage)), (found >= 0).argmax(axis=1)], -1)
        related = best >= 0  # entries come token by token, slots in order: a token's first related slot wins
        first_tokens, first = np.unique(tokens[related], return_index=True)
        out[first_tokens] = best[related][first] + 1
        return out
