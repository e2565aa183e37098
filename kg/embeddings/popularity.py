"""A calibration baseline for link prediction: relation-conditional popularity.

score(h, r, t) = how often t is the tail of r in the training triples (tail prediction), and likewise how often h
is the head of r (head prediction). Ranks are filtered (other true answers from train, validation and test are
removed) and realistic (ties count half: rank = (optimistic + pessimistic) / 2), both-sided, as PyKEEN's
``RankBasedEvaluator(filtered=True)`` reports ``both.realistic``; a model that does not beat this knows little
more than which entities are common under each relation.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from scipy import sparse


def sample_triples(test: np.ndarray, max_triples: int | None, seed: int) -> np.ndarray:
    """A seeded sample of at most ``max_triples`` triples (all of them when None): the triples every evaluation
    of one seed scores (``kg.embeddings.evaluate``, the popularity baseline, the tuning study)."""
    if max_triples is not None and len(test) > max_triples:
        gen = torch.Generator().manual_seed(seed)
        return test[torch.randperm(len(test), generator=gen)[:max_triples].numpy()]
    return test


def rank_metrics(ranks: np.ndarray) -> dict[str, float]:
    """Both-sided MRR and Hits@1/3/10 of per-triple ``ranks [n, 2]`` (head, tail); ``num_test_triples`` = n."""
    out = {"mrr": float(np.mean(1 / ranks)), **{f"hits@{k}": float(np.mean(ranks <= k)) for k in (1, 3, 10)}}
    out["num_test_triples"] = len(ranks)
    return out


def popularity_ranks(train: np.ndarray, known: np.ndarray, test: np.ndarray, num_entities: int, num_relations: int,
                     *, chunk: int = 256) -> np.ndarray:
    """Filtered realistic ranks ``[n, 2]`` (head, tail) of the popularity scorer for every triple of ``test``
    ([n, 3] h, r, t ids); ``known`` holds every true triple (train + validation + test) for filtering."""
    ones = np.ones(len(train))
    tails = sparse.csr_matrix((ones, (train[:, 1], train[:, 2])), shape=(num_relations, num_entities))
    heads = sparse.csr_matrix((ones, (train[:, 1], train[:, 0])), shape=(num_relations, num_entities))
    true_tails: dict[tuple[int, int], list[int]] = defaultdict(list)
    true_heads: dict[tuple[int, int], list[int]] = defaultdict(list)
    for h, r, t in known.tolist():
        true_tails[(h, r)].append(t)
        true_heads[(t, r)].append(h)
    sides = []
    for side, counts, truth in (("head", heads, true_heads), ("tail", tails, true_tails)):
        ranks = []
        for start in range(0, len(test), chunk):
            block = test[start:start + chunk]
            scores = counts[block[:, 1]].toarray()  # [b, E]
            target = block[:, 2] if side == "tail" else block[:, 0]
            anchor = block[:, 0] if side == "tail" else block[:, 2]
            own = scores[np.arange(len(block)), target].copy()
            for i, (a, r) in enumerate(zip(anchor.tolist(), block[:, 1].tolist())):
                scores[i, truth[(a, r)]] = -np.inf  # filtered: other true answers do not compete
            optimistic = 1 + (scores > own[:, None]).sum(1)
            pessimistic = optimistic + (scores == own[:, None]).sum(1)  # the target itself was set to -inf
            ranks.append((optimistic + pessimistic) / 2)
        sides.append(np.concatenate(ranks) if ranks else np.zeros(0))
    return np.stack(sides, axis=1)


def popularity_metrics(train: np.ndarray, known: np.ndarray, test: np.ndarray, num_entities: int,
                       num_relations: int, *, max_triples: int | None = None, seed: int = 42) -> dict[str, float]:
    """MRR and Hits@1/3/10 of the popularity scorer on the seeded sample of ``test`` that models are scored on."""
    test = sample_triples(test, max_triples, seed)
    return rank_metrics(popularity_ranks(train, known, test, num_entities, num_relations))
