"""Relation paths and their reliabilities by path-constraint resource allocation (PCRA, Lin et al. 2015).

Steps: relation ``r`` walked forward has step id ``r``; walked backwards (the reverse relation r⁻¹) ``r + R``.
For a path p = (s₁, …, s_l) from h, a unit of resource starts at h and at every step each node splits what it
holds equally among its successors by that step::

    R_p(m) = Σ_{n ∈ S_{i-1}(·, m)} R_p(n) / |S_i(n, ·)|          R(p | h, t) = R_p(t)

With the row-normalised adjacency P_s = D_s⁻¹ A_s this is R(p | h, t) = [P_{s₁} ⋯ P_{s_l}]_{h,t}, so all
reliabilities of one first step s₁ come from one sparse product P_{s₁} · [P_1 | … | P_{2R}] (block columns by
second step), restricted to the (h, t) pairs that carry a training triple. Nothing loops over entity pairs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

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


def step_matrices(triples: np.ndarray, num_entities: int, num_relations: int) -> list[sp.csr_matrix]:
    """Row-normalised adjacency P_s for every step s in 0..2R-1 (forward relations, then reverses)."""
    h, r, t = triples[:, 0], triples[:, 1], triples[:, 2]
    mats = []
    for heads, tails in ((h, t), (t, h)):
        for rel in range(num_relations):
            sel = r == rel
            a = sp.csr_matrix((np.ones(int(sel.sum()), dtype=np.float64), (heads[sel], tails[sel])),
                              shape=(num_entities, num_entities))
            a.sum_duplicates()
            a.data[:] = 1.0
            out_degree = np.asarray(a.sum(axis=1)).ravel()
            inv = np.divide(1.0, out_degree, out=np.zeros_like(out_degree), where=out_degree > 0)
            mats.append(sp.csr_matrix(sp.diags(inv) @ a))
    return mats


def extract_paths(
    triples: np.ndarray,
    num_entities: int,
    num_relations: int,
    *,
    max_length: int = 2,
    max_paths: int = 8,
    threshold: float = 0.01,
    row_block: int = 4096,
    progress: bool = True,
) -> PathSet:
    """Paths of length 1..``max_length`` (1 or 2) between the ends of every triple, with PCRA reliabilities.

    A triple's own edge (its relation walked forward) is not a path of itself. Paths with R(p|h,t) <
    ``threshold`` are dropped and the ``max_paths`` most reliable ones kept per triple.
    """
    if max_length not in (1, 2):
        raise ValueError("max_length must be 1 or 2")
    triples = np.asarray(triples, dtype=np.int64)
    n_steps = 2 * num_relations
    mats = step_matrices(triples, num_entities, num_relations)
    pair_keys = np.unique(triples[:, 0] * num_entities + triples[:, 2])

    found_key: list[np.ndarray] = []  # pair key h*E+t
    found_steps: list[np.ndarray] = []  # [n, 2], PAD second step for length 1
    found_rel: list[np.ndarray] = []

    def keep(h: np.ndarray, t: np.ndarray, s1: np.ndarray, s2: np.ndarray, value: np.ndarray) -> None:
        key = h * num_entities + t
        pos = np.searchsorted(pair_keys, key)
        hit = (pos < len(pair_keys)) & (pair_keys[np.minimum(pos, len(pair_keys) - 1)] == key) & (value >= threshold)
        if hit.any():
            found_key.append(key[hit])
            found_steps.append(np.stack([s1[hit], s2[hit]], axis=1))
            found_rel.append(value[hit])

    for s, mat in enumerate(mats):  # length-1 paths
        coo = mat.tocoo()
        keep(coo.row.astype(np.int64), coo.col.astype(np.int64), np.full(coo.nnz, s), np.full(coo.nnz, PAD),
             coo.data)
    if max_length == 2:
        second = sp.hstack(mats, format="csr")  # column block s2 holds P_{s2}
        for s1 in tqdm(range(n_steps), desc="PCRA paths", unit="step", disable=not progress):
            first = mats[s1]
            rows = np.flatnonzero(np.diff(first.indptr))
            for start in range(0, len(rows), row_block):
                block_rows = rows[start:start + row_block]
                prod = (first[block_rows] @ second).tocoo()
                if prod.nnz == 0:
                    continue
                s2, t = np.divmod(prod.col.astype(np.int64), num_entities)
                keep(block_rows[prod.row].astype(np.int64), t, np.full(prod.nnz, s1), s2, prod.data)
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
