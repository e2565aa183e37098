"""Relation paths and their reliabilities by path-constraint resource allocation (PCRA, Lin et al. 2015).

Steps: relation ``r`` walked forward has step id ``r``; walked backwards (the reverse relation r⁻¹) ``r + R``.
For a path p = (s₁, …, s_l) from h, a unit of resource starts at h and at every step each node splits what it
holds equally among its successors by that step::

    R_p(m) = Σ_{n ∈ S_{i-1}(·, m)} R_p(n) / |S_i(n, ·)|          R(p | h, t) = R_p(t)

With the row-normalised adjacency P_s = D_s⁻¹ A_s this is R(p | h, t) = [P_{s₁} ⋯ P_{s_l}]_{h,t}; for two steps
R(s₁, s₂ | h, t) = Σ_{m ∈ N(h) ∩ N(t)} P_{s₁}[h, m] · P_{s₂}[m, t]. Only pairs (h, t) that carry a training
triple are needed, so the middle nodes m are enumerated per pair from its lower-degree end and checked against
the other end: the work is Σ_(h,t) min(deg h, deg t), not every two-hop neighbour of every head, and memory is
bounded by ``block`` (pairs are processed in blocks of at most that many candidate middle nodes). Three steps
(``max_length=3``, as in the paper's 3-step PTransE) use that a path's reliability is at most each of its
factors: only edges with P ≥ threshold can carry one (``StepGraph.three_steps``).
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


def _ranges(sorted_keys: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, count) of each query's run in ``sorted_keys``."""
    start = np.searchsorted(sorted_keys, queries, side="left")
    return start, np.searchsorted(sorted_keys, queries, side="right") - start


def _expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(owner, offset) for every element of consecutive runs of lengths ``counts``: owner i repeated counts[i]
    times, offset 0..counts[i]-1."""
    owner = np.repeat(np.arange(len(counts)), counts)
    return owner, np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)


def run_rows(start: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(owner i, row) for every row of the runs start[i] .. start[i] + count[i] - 1."""
    owner, offset = _expand(count)
    return owner, start[owner] + offset


def _group_sum(codes: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct codes, the sum of ``values`` per code)."""
    distinct, slot = np.unique(codes, return_inverse=True)
    return distinct, np.bincount(slot, weights=values, minlength=len(distinct))


@dataclass
class StepGraph:
    """Every step edge a →s b once, sorted by (a, b, s): ``key`` a·E + b, ``step`` s, ``prob`` P_s[a, b] =
    1 / |S_s(a, ·)|; and the neighbour lists (``linked``: the sorted keys of node pairs joined by some step,
    symmetric because every step has its reverse)."""

    num_entities: int
    num_steps: int
    key: np.ndarray
    step: np.ndarray
    prob: np.ndarray
    linked: np.ndarray
    neighbour_ptr: np.ndarray
    degree: np.ndarray  # number of neighbours

    @classmethod
    def build(cls, triples: np.ndarray, num_entities: int, num_relations: int) -> "StepGraph":
        n_steps, e = 2 * num_relations, num_entities
        h, r, t = triples[:, 0], triples[:, 1], triples[:, 2]
        src, step, dst = np.concatenate([h, t]), np.concatenate([r, r + num_relations]), np.concatenate([t, h])
        code = np.unique((src * n_steps + step) * e + dst)  # (a, s, b) once each, grouped by (a, s)
        source_step, dst = np.divmod(code, e)
        _, group, out_degree = np.unique(source_step, return_inverse=True, return_counts=True)
        src, step = np.divmod(source_step, n_steps)
        key = src * e + dst
        order = np.lexsort((step, key))
        linked = np.unique(key)
        neighbour_ptr = np.searchsorted(linked // e, np.arange(e + 1))
        return cls(e, n_steps, key[order], step[order], 1.0 / out_degree[group][order], linked, neighbour_ptr,
                   np.diff(neighbour_ptr))

    def neighbours(self, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(owner i, m) for every neighbour m of nodes[i]."""
        owner, row = run_rows(self.neighbour_ptr[nodes], self.degree[nodes])
        return owner, self.linked[row] % self.num_entities

    def edges(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(owner i, edge row) for every step edge a[i] → b[i]."""
        return run_rows(*_ranges(self.key, a * self.num_entities + b))

    def middles(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(owner i, m) for every m ∈ N(a[i]) ∩ N(b[i]), enumerated from the lower-degree end."""
        near = np.where(self.degree[a] <= self.degree[b], a, b)
        far = np.where(near == a, b, a)
        owner, middle = self.neighbours(near)
        joined = _ranges(self.linked, middle * self.num_entities + far[owner])[1] > 0
        return owner[joined], middle[joined]

    def two_steps(self, a: np.ndarray, b: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """Codes (i·S + s₁)·S + s₂ with R(s₁, s₂ | a[i], b[i]) = Σ_m P_{s₁}[a_i, m] P_{s₂}[m, b_i] ≥ ``threshold``
        (and > 0), with their reliabilities."""
        owner, middle = self.middles(a, b)
        first, n_first = _ranges(self.key, a[owner] * self.num_entities + middle)
        second, n_second = _ranges(self.key, middle * self.num_entities + b[owner])
        pair, offset = _expand(n_first * n_second)
        i1 = first[pair] + offset // n_second[pair]
        i2 = second[pair] + offset % n_second[pair]
        code, total = _group_sum((owner[pair] * self.num_steps + self.step[i1]) * self.num_steps + self.step[i2],
                                 self.prob[i1] * self.prob[i2])
        keep = total >= threshold
        return code[keep], total[keep]

    def edges_from(self, nodes: np.ndarray, min_prob: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(owner i, edge row) for every step edge out of nodes[i] with P ≥ ``min_prob`` (rows sort by source)."""
        start = np.searchsorted(self.key, nodes * self.num_entities)
        owner, row = run_rows(start, np.searchsorted(self.key, (nodes + 1) * self.num_entities) - start)
        strong = self.prob[row] >= min_prob
        return owner[strong], row[strong]

    def three_steps(self, a: np.ndarray, b: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """Codes ((i·S + s₁)·S + s₂)·S + s₃ with R(s₁, s₂, s₃ | a[i], b[i]) ≥ ``threshold`` > 0.

        Every factor of a path's reliability is ≤ 1, so each of its edges has P ≥ ``threshold``: the two-step
        reach of each distinct a over such edges (with ``threshold`` > 0, at most 1/threshold nodes per step pair,
        as each step splits one unit of resource) meets the last edge into b[i], from whichever side is smaller:
        the reach of a[i] or the neighbours of b[i].
        """
        s, e = self.num_steps, self.num_entities
        sources, source_of = np.unique(a, return_inverse=True)
        owner, first = self.edges_from(sources, threshold)
        mid, second = self.edges_from(self.key[first] % e, threshold)
        owner, first = owner[mid], first[mid]
        value = self.prob[first] * self.prob[second]
        strong = value >= threshold
        reach_key = owner[strong] * e + self.key[second[strong]] % e  # (source, node reached)
        order = np.argsort(reach_key, kind="stable")
        reach_key, first, second, value = (x[order] for x in (reach_key, first[strong], second[strong], value[strong]))
        start, count = _ranges(reach_key // e, np.arange(len(sources)))
        by_reach = count[source_of] <= self.degree[b]
        # side 1: every walk in the reach of a[i], then its edges into b[i]
        query, walk = run_rows(start[source_of], np.where(by_reach, count[source_of], 0))
        # side 2: every neighbour m of b[i], then the walks that reach m from a[i]
        by_neighbour = np.flatnonzero(~by_reach)
        near, m = self.neighbours(b[by_neighbour])
        near = by_neighbour[near]
        owner, reached = run_rows(*_ranges(reach_key, source_of[near] * e + m))
        query, walk = np.concatenate([query, near[owner]]), np.concatenate([walk, reached])
        ends, last = self.edges(self.key[second[walk]] % e, b[query])
        query, walk = query[ends], walk[ends]
        code = ((query * s + self.step[first[walk]]) * s + self.step[second[walk]]) * s + self.step[last]
        code, total = _group_sum(code, value[walk] * self.prob[last])
        keep = total >= threshold
        return code[keep], total[keep]


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
    """Paths of length 1..``max_length`` (1, 2 or 3) between the ends of every triple, with PCRA reliabilities.

    A triple's own edge (its relation walked forward) is not a path of itself. Paths with R(p|h,t) <
    ``threshold`` are dropped and the ``max_paths`` most reliable ones kept per triple.
    """
    triples = np.asarray(triples, dtype=np.int64)
    graph = StepGraph.build(triples, num_entities, num_relations)
    pair_keys = np.unique(triples[:, 0] * num_entities + triples[:, 2])
    heads, tails = np.divmod(pair_keys, num_entities)
    found = pair_paths(graph, heads, tails, max_length=max_length, threshold=threshold, block=block,
                       progress=progress)
    return _per_triple(triples, num_entities, pair_keys, found, max_length, max_paths)


def pair_paths(graph: StepGraph, heads: np.ndarray, tails: np.ndarray, *, max_length: int = 2,
               threshold: float = 0.01, block: int = 2_000_000, progress: bool = True
               ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every path of length 1..``max_length`` from heads[i] to tails[i] with R(p | h, t) ≥ ``threshold``, as
    chunks (pair index i, steps [n, length of the chunk's paths], reliability)."""
    if max_length not in (1, 2, 3):
        raise ValueError("max_length must be 1, 2 or 3")
    s = graph.num_steps
    owner, edge = graph.edges(heads, tails)  # length 1: every step edge of the pair
    hit = graph.prob[edge] >= threshold
    found = [(owner[hit], graph.step[edge[hit]][:, None], graph.prob[edge[hit]])]
    if max_length >= 2:
        # blocks of ≈ ``block`` candidate middle nodes; 16× smaller with three steps, where each pair also meets
        # the two-step reach of its head (CMeKG: 1.3 GB peak)
        per_block = max(1, block // 16 if max_length == 3 else block)
        candidates = np.cumsum(np.minimum(graph.degree[heads], graph.degree[tails]))
        cuts = np.flatnonzero(np.diff(candidates // per_block)) + 1
        for lo, hi in tqdm(list(zip(np.r_[0, cuts], np.r_[cuts, len(heads)])), desc="PCRA paths",
                           unit="block", disable=not progress):
            code, value = graph.two_steps(heads[lo:hi], tails[lo:hi], threshold)
            pair, s1, s2 = np.unravel_index(code, (hi - lo, s, s))
            found.append((lo + pair, np.stack([s1, s2], axis=1), value))
            if max_length == 3:
                code, value = graph.three_steps(heads[lo:hi], tails[lo:hi], threshold)
                pair, s1, s2, s3 = np.unravel_index(code, (hi - lo, s, s, s))
                found.append((lo + pair, np.stack([s1, s2, s3], axis=1), value))
    return found


def _per_triple(triples: np.ndarray, num_entities: int, pair_keys: np.ndarray,
                found: list[tuple[np.ndarray, np.ndarray, np.ndarray]], length: int, max_paths: int) -> PathSet:
    """Group the found (pair index, steps, reliability) by pair, then give every triple its pair's best paths
    minus its own edge (steps padded with PAD to ``length``)."""
    n = len(triples)
    steps = np.full((n, max_paths, length), PAD, dtype=np.int64)
    reliability = np.zeros((n, max_paths), dtype=np.float32)
    pair_of = np.concatenate([pair for pair, _, _ in found])
    st = np.concatenate([np.pad(x, ((0, 0), (0, length - x.shape[1])), constant_values=PAD) for _, x, _ in found])
    rel = np.concatenate([r for _, _, r in found])
    order = np.lexsort((-rel, pair_of))  # by pair, most reliable first
    pair_of, st, rel = pair_of[order], st[order], rel[order]
    starts = np.searchsorted(pair_of, np.arange(len(pair_keys)))
    ends = np.searchsorted(pair_of, np.arange(len(pair_keys)), side="right")
    triple_pair = np.searchsorted(pair_keys, triples[:, 0] * num_entities + triples[:, 2])
    for i in range(n):  # N rows, each a slice copy: linear in the number of triples
        a, b = starts[triple_pair[i]], ends[triple_pair[i]]
        cand_steps, cand_rel = st[a:b], rel[a:b]
        own = (cand_steps[:, 0] == triples[i, 1]) & (cand_steps[:, 1:] == PAD).all(axis=1)
        cand_steps, cand_rel = cand_steps[~own][:max_paths], cand_rel[~own][:max_paths]
        steps[i, : len(cand_rel)] = cand_steps
        reliability[i, : len(cand_rel)] = cand_rel
    return PathSet(triples, steps, reliability)
