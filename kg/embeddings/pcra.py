"""Relation paths and their reliabilities by path-constraint resource allocation (PCRA, Lin et al. 2015).

Steps: relation ``r`` walked forward has step id ``r``; walked backwards (the reverse relation r⁻¹) ``r + R``.
For a path p = (s₁, …, s_l) from h, a unit of resource starts at h and at every step each node splits what it
holds equally among its successors by that step::

    R_p(m) = Σ_{n ∈ S_{i-1}(·, m)} R_p(n) / |S_i(n, ·)|          R(p | h, t) = R_p(t)

With the row-normalised adjacency P_s = D_s⁻¹ A_s this is R(p | h, t) = [P_{s₁} ⋯ P_{s_l}]_{h,t}; for two steps
R(s₁, s₂ | h, t) = Σ_{m ∈ N(h) ∩ N(t)} P_{s₁}[h, m] · P_{s₂}[m, t]. Only pairs (h, t) that carry a training
triple are needed, so the middle nodes m are enumerated per pair from its lower-degree end and checked against
the other end: the work is Σ_(h,t) min(deg h, deg t), not every two-hop neighbour of every head, and memory is
bounded by ``block`` (pairs are processed in blocks of at most that many candidate middle nodes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm


PAD = -1


@dataclass
class PathSet:
    """Up to ``K`` paths per triple.

    ``steps [N, K, L]`` step ids (PAD after a path's end and for missing paths), ``reliability [N, K]``
    R(p | h, t) (0 for missing paths), rows aligned with ``triples [N, 3]``.
    """

    triples: np.ndarray
    steps: np.ndarray
    reliability: np.ndarray

    @property
    def num_paths(self) -> int:
        return int((self.reliability > 0).sum())

    def coverage(self) -> float:
        """Share of triples with at least one path."""
        return float((self.reliability > 0).any(axis=1).mean()) if len(self.triples) else 0.0


def _step_edges(triples: np.ndarray, num_entities: int, num_relations: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every step edge a →s b once, sorted by (a, b, s): (key a·E + b, step s, P_s[a, b] = 1 / |S_s(a, ·)|)."""
    n_steps, e = 2 * num_relations, num_entities
    h, r, t = triples[:, 0], triples[:, 1], triples[:, 2]
    src, step, dst = np.concatenate([h, t]), np.concatenate([r, r + num_relations]), np.concatenate([t, h])
    code = np.unique((src * n_steps + step) * e + dst)  # (a, s, b) once each, grouped by (a, s)
    source_step, dst = np.divmod(code, e)
    _, group, out_degree = np.unique(source_step, return_inverse=True, return_counts=True)
    src, step = np.divmod(source_step, n_steps)
    key = src * e + dst
    order = np.lexsort((step, key))
    return key[order], step[order], 1.0 / out_degree[group][order]


def _ranges(sorted_keys: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, count) of each query's run in ``sorted_keys``."""
    start = np.searchsorted(sorted_keys, queries, side="left")
    return start, np.searchsorted(sorted_keys, queries, side="right") - start


def _expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(owner, offset) for every element of consecutive runs of lengths ``counts``: owner i repeated counts[i]
    times, offset 0..counts[i]-1."""
    owner = np.repeat(np.arange(len(counts)), counts)
    return owner, np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)


def extract_paths(
    triples: np.ndarray,
    num_entities: int,
    num_relations: int,
    *,
    max_length: int = 2,
    max_paths: int = 8,
    threshold: float = 0.01,
    block: int = 2_000_000,
    progress: bool = True,
) -> PathSet:
    """Paths of length 1..``max_length`` (1 or 2) between the ends of every triple, with PCRA reliabilities.

    A triple's own edge (its relation walked forward) is not a path of itself. Paths with R(p|h,t) <
    ``threshold`` are dropped and the ``max_paths`` most reliable ones kept per triple.
    """
    if max_length not in (1, 2):
        raise ValueError("max_length must be 1 or 2")
    triples = np.asarray(triples, dtype=np.int64)
    e, n_steps = num_entities, 2 * num_relations
    key, step, prob = _step_edges(triples, e, num_relations)
    pair_keys = np.unique(triples[:, 0] * e + triples[:, 2])
    heads, tails = np.divmod(pair_keys, e)

    start, count = _ranges(key, pair_keys)  # length 1: the pair's own edges, each step a path
    owner, offset = _expand(count)
    one = start[owner] + offset
    hit = prob[one] >= threshold
    found_key, found_rel = [pair_keys[owner[hit]]], [prob[one[hit]]]
    found_steps = [np.stack([step[one[hit]], np.full(int(hit.sum()), PAD)], axis=1)]

    if max_length == 2:
        linked = np.unique(key)  # node pairs joined by some step: symmetric, as every step has its reverse
        neighbour_ptr = np.searchsorted(linked // e, np.arange(e + 1))
        neighbour = linked % e
        degree = np.diff(neighbour_ptr)
        near = np.where(degree[heads] <= degree[tails], heads, tails)  # enumerate middles from this end
        far = np.where(near == heads, tails, heads)
        block_of = np.cumsum(degree[near]) // block  # blocks of ≈ ``block`` candidate middles
        cuts = np.flatnonzero(np.diff(block_of)) + 1
        for lo, hi in tqdm(list(zip(np.r_[0, cuts], np.r_[cuts, len(pair_keys)])), desc="PCRA paths",
                           unit="block", disable=not progress):
            pairs = np.arange(lo, hi)
            owner, offset = _expand(degree[near[pairs]])
            middle = neighbour[neighbour_ptr[near[pairs]][owner] + offset]
            pair = pairs[owner]
            joined = _ranges(linked, middle * e + far[pair])[1] > 0
            pair, middle = pair[joined], middle[joined]
            first, n_first = _ranges(key, heads[pair] * e + middle)
            second, n_second = _ranges(key, middle * e + tails[pair])
            owner, offset = _expand(n_first * n_second)
            i1 = first[owner] + offset // n_second[owner]
            i2 = second[owner] + offset % n_second[owner]
            group, slot = np.unique((pair[owner] * n_steps + step[i1]) * n_steps + step[i2], return_inverse=True)
            reliability = np.bincount(slot, weights=prob[i1] * prob[i2])
            keep = reliability >= threshold
            pair_step, s2 = np.divmod(group[keep], n_steps)
            pair_index, s1 = np.divmod(pair_step, n_steps)
            found_key.append(pair_keys[pair_index])
            found_steps.append(np.stack([s1, s2], axis=1))
            found_rel.append(reliability[keep])
    return _per_triple(triples, num_entities, pair_keys, found_key, found_steps, found_rel, max_paths)


def _per_triple(triples: np.ndarray, num_entities: int, pair_keys: np.ndarray, found_key: list[np.ndarray],
                found_steps: list[np.ndarray], found_rel: list[np.ndarray], max_paths: int) -> PathSet:
    """Group the found paths by pair, then give every triple its pair's best paths minus its own edge."""
    n = len(triples)
    steps = np.full((n, max_paths, 2), PAD, dtype=np.int64)
    reliability = np.zeros((n, max_paths), dtype=np.float32)
    if not found_key:
        return PathSet(triples, steps, reliability)
    key = np.concatenate(found_key)
    st = np.concatenate(found_steps)
    rel = np.concatenate(found_rel)
    order = np.lexsort((-rel, key))  # by pair, most reliable first
    key, st, rel = key[order], st[order], rel[order]
    pair_of = np.searchsorted(pair_keys, key)
    starts = np.searchsorted(pair_of, np.arange(len(pair_keys)))
    ends = np.searchsorted(pair_of, np.arange(len(pair_keys)), side="right")
    triple_pair = np.searchsorted(pair_keys, triples[:, 0] * num_entities + triples[:, 2])
    for i in range(n):  # N rows, each a slice copy: linear in the number of triples
        a, b = starts[triple_pair[i]], ends[triple_pair[i]]
        cand_steps, cand_rel = st[a:b], rel[a:b]
        own = (cand_steps[:, 0] == triples[i, 1]) & (cand_steps[:, 1] == PAD)
        cand_steps, cand_rel = cand_steps[~own][:max_paths], cand_rel[~own][:max_paths]
        steps[i, : len(cand_rel)] = cand_steps
        reliability[i, : len(cand_rel)] = cand_rel
    return PathSet(triples, steps, reliability)
