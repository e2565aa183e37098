"""Path-aware scoring at test time: the model's score plus the evidence of the relation paths that join the known
entity to each candidate (PTransE's use of paths when predicting, Lin et al. 2015)::

    G(a, q, b) = f(a, q, b) + β · Σ_{p ∈ P(a, b)} Pr(q | p) · R(p | a, b)

``a`` is the known entity and ``q`` the relation walked from it (r for tail prediction from h; its reverse r⁻¹,
step id r + R as in :mod:`kg.embeddings.pcra`, for head prediction from t); P(a, b) are the training graph's
paths from a to b of up to ``max_length`` steps with their PCRA reliabilities R(p | a, b) ≥ ``threshold``.
Pr(q | p) = n(p, q) / (n(p) + 1) over the training triples read both ways (instances (h, r, t) and (t, r⁻¹, h)):
n(p) the instances whose ends p joins (the instance's own edge is not its path), n(p, q) those of relation q;
the pseudo-instance shrinks paths seen once. β = 0 is the model alone; β is chosen on validation MRR.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import sparse
from tqdm.auto import tqdm

from kg.embeddings.pcra import PAD, StepGraph, run_rows, pair_paths
from kg.embeddings.compare import mrr_ci, paired
from kg.embeddings.popularity import filtered_ranks, rank_metrics, side_of, true_answers

SIDES = ("head", "tail")


def _sorted_lookup(keys: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(found, position) of each query in the sorted unique ``keys``."""
    pos = np.searchsorted(keys, queries).clip(max=max(len(keys) - 1, 0))
    found = keys[pos] == queries if len(keys) else np.zeros(len(queries), dtype=bool)
    return found, pos


@dataclass
class PathRules:
    """Pr(q | p) for every (query relation q, path p) seen in training, keyed by ``q·B^L + code(p)`` with
    code(s₁, …, s_l) = Σ_i (s_i + 1)·B^(l−i) (B = steps + 1, L = ``max_length``), and every prefix of those
    paths (``prefixes``, the same keying), which the test-time walk may follow."""

    graph: StepGraph
    max_length: int
    threshold: float
    keys: np.ndarray
    confidence: np.ndarray
    prefixes: np.ndarray

    @property
    def base(self) -> int:
        return self.graph.num_steps + 1

    @classmethod
    def fit(cls, train: np.ndarray, num_entities: int, num_relations: int, *, max_length: int = 2,
            threshold: float = 0.01, progress: bool = True) -> "PathRules":
        """Count the paths between the ends of every training triple, read both ways."""
        train = np.asarray(train, dtype=np.int64)
        graph = StepGraph.build(train, num_entities, num_relations)
        anchor = np.concatenate([train[:, 0], train[:, 2]])
        other = np.concatenate([train[:, 2], train[:, 0]])
        query = np.concatenate([train[:, 1], train[:, 1] + num_relations])
        pair_keys, pair_of = np.unique(anchor * num_entities + other, return_inverse=True)
        heads, tails = np.divmod(pair_keys, num_entities)
        found = pair_paths(graph, heads, tails, max_length=max_length, threshold=threshold, progress=progress)
        base = graph.num_steps + 1
        pair = np.concatenate([f[0] for f in found])
        code = np.concatenate([_codes(f[1], base) for f in found])
        order = np.argsort(pair, kind="stable")
        pair, code = pair[order], code[order]
        # every (instance, path of its pair), minus the instance's own edge
        start = np.searchsorted(pair, np.arange(len(pair_keys)))
        count = np.searchsorted(pair, np.arange(len(pair_keys)), side="right") - start
        instance, row = run_rows(start[pair_of], count[pair_of])
        path = code[row]
        keep = path != query[instance] + 1  # the one-step path of the instance's own relation
        path, q = path[keep], query[instance[keep]]
        paths, n_path = np.unique(path, return_counts=True)
        keys, n_joint = np.unique(q * base ** max_length + path, return_counts=True)
        n = n_path[np.searchsorted(paths, keys % base ** max_length)]
        return cls(graph, max_length, threshold, keys, n_joint / (n + 1.0), _prefix_keys(keys, base, max_length))

    def bonus(self, anchors: np.ndarray, queries: np.ndarray) -> sparse.csr_matrix:
        """``[n, E]``: Σ_p Pr(q_i | p) · R(p | a_i, b) for every query i and candidate b.

        Walks from each anchor along rule prefixes only, splitting each node's resource equally among its
        successors by the step taken (PCRA); edges with P < ``threshold`` are not followed and each walk whose
        resource falls below it is dropped before walks through different middle nodes merge (with threshold 0,
        exactly R(p | a, b); above it, a path whose reliability only sums from such small walks is left out).
        """
        g, base, n = self.graph, self.base, len(anchors)
        scale = base ** self.max_length
        owner, node = np.arange(n), np.asarray(anchors, dtype=np.int64)
        prefix, value = np.zeros(n, dtype=np.int64), np.ones(n)
        rows, cols, vals = [], [], []
        for _ in range(self.max_length):
            walk, edge = g.edges_from(node, min_prob=self.threshold)
            step_prefix = prefix[walk] * base + g.step[edge] + 1
            key = queries[owner[walk]] * scale + step_prefix
            on_rule, _ = _sorted_lookup(self.prefixes, key)
            strength = value[walk] * g.prob[edge]
            keep = on_rule & (strength >= self.threshold)
            if not keep.any():
                break
            walk, edge, step_prefix, strength = walk[keep], edge[keep], step_prefix[keep], strength[keep]
            # merge walks that reach the same node by the same steps: (owner, prefix, node)
            target = g.key[edge] % g.num_entities
            merged, slot = np.unique(np.stack([owner[walk], step_prefix, target]), axis=1, return_inverse=True)
            owner, prefix, node = merged
            value = np.bincount(slot.ravel(), weights=strength, minlength=merged.shape[1])
            found, pos = _sorted_lookup(self.keys, queries[owner] * scale + prefix)
            rows.append(owner[found])
            cols.append(node[found])
            vals.append(value[found] * self.confidence[pos[found]])
        if not rows:
            return sparse.csr_matrix((n, g.num_entities))
        return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                 shape=(n, g.num_entities))


def _codes(steps: np.ndarray, base: int) -> np.ndarray:
    """code(s₁, …, s_l) = Σ_i (s_i + 1)·base^(l−i) per row of ``steps`` (PAD ends a path)."""
    code = np.zeros(len(steps), dtype=np.int64)
    for column in steps.T:
        code = np.where(column == PAD, code, code * base + column + 1)
    return code


def _prefix_keys(keys: np.ndarray, base: int, max_length: int) -> np.ndarray:
    """Every key of a path's prefix (the path itself included) for the rule keys ``q·base^L + code``."""
    scale = base ** max_length
    q, code = np.divmod(keys, scale)
    prefixes = [keys]
    while (code := code // base).any():
        prefixes.append(q[code > 0] * scale + code[code > 0])
    return np.unique(np.concatenate(prefixes))


def path_aware_ranks(model: torch.nn.Module, rules: PathRules, triples: np.ndarray, known: np.ndarray,
                     betas: list[float], *, batch_size: int = 256, slice_size: int | None = None,
                     progress: bool = True) -> np.ndarray:
    """Filtered realistic ranks ``[len(betas), n, 2]`` (head, tail) of G = f + β·bonus for each β, every triple of
    ``known`` filtered (as :func:`kg.embeddings.evaluate`; with β = 0 its ranks)."""
    truth = true_answers(known)
    num_relations = rules.graph.num_steps // 2
    ranks = np.zeros((len(betas), len(triples), 2))
    model.eval()
    blocks = list(range(0, len(triples), batch_size))
    with torch.inference_mode():
        for column, side in enumerate(SIDES):
            for start in tqdm(blocks, desc=f"path-aware {side} ranks", unit="batch", disable=not progress):
                block = triples[start:start + batch_size]
                anchor, _ = side_of(block, side)
                # PyKEEN's own prediction (inverse relations mapped, as its evaluator scores)
                scores = model.predict(torch.as_tensor(block, device=model.device), target=side,
                                       slice_size=slice_size).float().cpu().numpy()
                query = block[:, 1] if side == "tail" else block[:, 1] + num_relations
                bonus = rules.bonus(anchor, query).toarray().astype(np.float32)
                for k, beta in enumerate(betas):
                    combined = scores + np.float32(beta) * bonus if beta else scores.copy()
                    ranks[k, start:start + len(block), column] = filtered_ranks(combined, block, side, truth)
    return ranks


def evaluate_path_aware(model: torch.nn.Module, rules: PathRules, scored: dict[str, np.ndarray],
                        plain: dict[str, np.ndarray], known: np.ndarray, betas: list[float], *,
                        batch_size: int = 256, slice_size: int | None = None, progress: bool = True
                        ) -> tuple[dict[str, object], dict[str, np.ndarray]]:
    """β chosen on validation MRR over ``betas``, then test figures at that β: metrics, MRR CI, and paired
    comparisons with the model alone and the popularity baseline (``plain``: the export's ``test`` and
    ``popularity_test`` ranks of the same ``scored["test"]`` triples). Returns the figures and the path-aware
    ranks (``test_path_aware``, ``validation_path_aware``)."""
    kwargs = {"batch_size": batch_size, "slice_size": slice_size, "progress": progress}
    validation = path_aware_ranks(model, rules, scored["validation"], known, betas, **kwargs)
    validation_mrr = [rank_metrics(r)["mrr"] for r in validation]
    best = int(np.argmax(validation_mrr))  # the first of equals: the smallest β
    test = path_aware_ranks(model, rules, scored["test"], known, [betas[best]], **kwargs)[0]
    figures = {"beta": betas[best], "betas": list(betas), "validation_mrr": [round(m, 4) for m in validation_mrr],
               "validation_metrics": rank_metrics(validation[best]), "metrics": rank_metrics(test),
               "mrr_ci95": mrr_ci(test), "versus_model": paired(test, plain["test"]),
               "versus_popularity": paired(test, plain["popularity_test"]), "rules": len(rules.keys)}
    return figures, {"test_path_aware": test, "validation_path_aware": validation[best]}
