"""A calibration baseline for link prediction: relation-conditional popularity.

score(h, r, t) = how often t is the tail of r in the training triples (tail prediction), and likewise how often h
is the head of r (head prediction). Ranks are filtered (other true answers from train, validation and test are
removed) and realistic (ties count half: rank = (optimistic + pessimistic) / 2), both-sided, as PyKEEN's
``RankBasedEvaluator(filtered=True)`` reports ``both.realistic``; a model that does not beat this knows little
more than which entities are common under each relation. The ranking (``filtered_ranks``) is the one
path-aware scoring uses too (:mod:`kg.embeddings.path_scoring`).
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


def true_answers(known: np.ndarray) -> dict[str, dict[tuple[int, int], list[int]]]:
    """Every true answer of every query of ``known`` ([n, 3] h, r, t): ``tail[(h, r)]`` the true tails,
    ``head[(t, r)]`` the true heads; filtered ranking removes them from the candidates."""
    truth: dict[str, dict[tuple[int, int], list[int]]] = {"head": defaultdict(list), "tail": defaultdict(list)}
    for h, r, t in known.tolist():
        truth["tail"][(h, r)].append(t)
        truth["head"][(t, r)].append(h)
    return truth


def side_of(block: np.ndarray, side: str) -> tuple[np.ndarray, np.ndarray]:
    """(anchor, target) of each triple of ``block`` for ``side`` prediction: (h, t) for tail, (t, h) for head."""
    return (block[:, 0], block[:, 2]) if side == "tail" else (block[:, 2], block[:, 0])


def filtered_ranks(scores: np.ndarray, block: np.ndarray, side: str,
                   truth: dict[str, dict[tuple[int, int], list[int]]]) -> np.ndarray:
    """Filtered realistic rank of each triple's answer among ``scores [b, E]`` (higher is better) for ``side``
    prediction: the query's true answers (the answer itself included) are removed from the candidates, and ties
    count half (rank = (optimistic + pessimistic) / 2). Overwrites the removed entries of ``scores``."""
    anchor, target = side_of(block, side)
    own = scores[np.arange(len(block)), target].copy()
    for i, (a, r) in enumerate(zip(anchor.tolist(), block[:, 1].tolist())):
        scores[i, truth[side][(a, r)]] = -np.inf
    optimistic = 1 + (scores > own[:, None]).sum(1)
    return (2 * optimistic + (scores == own[:, None]).sum(1)) / 2


def popularity_ranks(train: np.ndarray, known: np.ndarray, test: np.ndarray, num_entities: int, num_relations: int,
                     *, chunk: int = 256) -> np.ndarray:
    """Filtered realistic ranks ``[n, 2]`` (head, tail) of the popularity scorer for every triple of ``test``
    ([n, 3] h, r, t ids); ``known`` holds every true triple (train + validation + test) for filtering."""
    ones = np.ones(len(train))
    counts = {"tail": sparse.csr_matrix((ones, (train[:, 1], train[:, 2])), shape=(num_relations, num_entities)),
              "head": sparse.csr_matrix((ones, (train[:, 1], train[:, 0])), shape=(num_relations, num_entities))}
    truth = true_answers(known)
    sides = [np.concatenate([filtered_ranks(counts[side][block[:, 1]].toarray(), block, side, truth)
                             for block in np.split(test, range(chunk, len(test), chunk))]) if len(test)
             else np.zeros(0) for side in ("head", "tail")]
    return np.stack(sides, axis=1)


def popularity_metrics(train: np.ndarray, known: np.ndarray, test: np.ndarray, num_entities: int,
                       num_relations: int, *, max_triples: int | None = None, seed: int = 42) -> dict[str, float]:
    """MRR and Hits@1/3/10 of the popularity scorer on the seeded sample of ``test`` that models are scored on."""
    test = sample_triples(test, max_triples, seed)
    return rank_metrics(popularity_ranks(train, known, test, num_entities, num_relations))
