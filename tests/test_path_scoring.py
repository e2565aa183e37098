"""Path-aware scoring: rule confidences and bonuses against dense matrix products, and ranks that reduce to the
model's own at β = 0."""

from __future__ import annotations

from collections import Counter
from itertools import product

import numpy as np
import pytest
import torch
from hypothesis import given, settings

from kg.embeddings.path_scoring import PathRules, path_aware_ranks
from test_embeddings import HAND_KG, A, B, C, D, R0, R1, R2, small_kgs


def dense_bonus(triples: np.ndarray, entities: int, relations: int, length: int) -> np.ndarray:
    """bonus[q, a, b] = Σ_p n(p, q) / (n(p) + 1) · [P_s₁ ⋯ P_sₗ]_{a,b} by brute force over every walk."""
    steps = 2 * relations
    adjacency = np.zeros((steps, entities, entities))
    for h, r, t in triples:
        adjacency[r, h, t] = adjacency[r + relations, t, h] = 1.0
    p = adjacency / np.maximum(adjacency.sum(axis=2, keepdims=True), 1.0)
    walks = [w for n in range(1, length + 1) for w in product(range(steps), repeat=n)]
    reliability = {w: np.linalg.multi_dot([np.eye(entities)] + [p[s] for s in w]) for w in walks}
    instances = [(h, r, t) for h, r, t in triples] + [(t, r + relations, h) for h, r, t in triples]
    n_path, n_joint = Counter(), Counter()
    for a, q, b in instances:
        for w in walks:
            if reliability[w][a, b] > 0 and w != (q,):
                n_path[w] += 1
                n_joint[w, q] += 1
    bonus = np.zeros((steps, entities, entities))
    for (w, q), n in n_joint.items():
        bonus[q] += n / (n_path[w] + 1) * reliability[w]
    return bonus


def test_rule_confidences_and_bonus_by_hand() -> None:
    rules = PathRules.fit(HAND_KG, 4, 3, threshold=0.0, progress=False)
    # (A, r2, ?): A -r0-> {B, C} -r1-> D and A -r1-> B -r1-> D each carry D's whole unit of resource; each path
    # joins one training instance, (A, r2, D): Pr(r2 | p) = 1 / (1 + 1). Bonus of D: ½·1 + ½·1.
    bonus = rules.bonus(np.array([A]), np.array([R2])).toarray()[0]
    assert bonus[D] == pytest.approx(1.0) and bonus[[A, B, C]].tolist() == [0, 0, 0]
    # No path from D starts with the relation's own step, and D has no training successor: nothing to add.
    assert rules.bonus(np.array([D]), np.array([R0])).nnz == 0


@settings(max_examples=40, deadline=None)
@given(kg=small_kgs())
def test_bonus_equals_dense_products(kg: tuple[np.ndarray, int, int]) -> None:
    triples, entities, relations = kg
    for length in (1, 2):
        rules = PathRules.fit(triples, entities, relations, max_length=length, threshold=0.0, progress=False)
        expected = dense_bonus(triples, entities, relations, length)
        anchors, queries = np.meshgrid(np.arange(entities), np.arange(2 * relations))
        got = rules.bonus(anchors.ravel(), queries.ravel()).toarray()
        np.testing.assert_allclose(got.reshape(2 * relations, entities, entities), expected, atol=1e-9)


def test_ranks_are_the_models_at_beta_zero_and_paths_lift_the_answer() -> None:
    from pykeen.models import TransE
    from pykeen.triples import TriplesFactory

    from kg.embeddings import evaluate

    # Train: HAND_KG without (A, r2, D), plus E -r0-> F -r1-> G and (E, r2, G); test: (A, r2, D). The path
    # (r0, r1) joins one training instance, (E, r2, G): Pr(r2 | r0, r1) = ½, and it carries all of A's resource to D
    # (A -r0-> {B, C} -r1-> D): bonus ½ for D; read backwards, (r1⁻¹, r0⁻¹) from D gives A ½. The TransE vectors
    # put D far from A + r2 and A far from D − r2: the model alone ranks each answer 7th of 7; at β = 100, 1st.
    E, F, G = 4, 5, 6
    train = np.vstack([HAND_KG[HAND_KG[:, 1] != R2], [[E, R0, F], [F, R1, G], [E, R2, G]]])
    test = np.array([[A, R2, D]])
    factory = TriplesFactory(mapped_triples=torch.as_tensor(train), entity_to_id=dict(zip("ABCDEFG", range(7))),
                             relation_to_id={"r0": R0, "r1": R1, "r2": R2})
    model = TransE(triples_factory=factory, embedding_dim=2, scoring_fct_norm=2)
    with torch.no_grad():
        model.entity_representations[0]._embeddings.weight[:] = torch.tensor(
            [[0, 0], [2, 0], [1, 0.5], [5, 5], [0, 1], [1, 1], [1, 2.]])
        model.relation_representations[0]._embeddings.weight[:] = torch.tensor([[1, 0], [1, 0], [1, 0.]])
    known = np.vstack([train, test])
    test_factory = TriplesFactory(mapped_triples=torch.as_tensor(test), entity_to_id=factory.entity_to_id,
                                  relation_to_id=factory.relation_to_id)
    _, plain, _ = evaluate(model, test_factory, [factory, test_factory], max_triples=None, batch_size=4, seed=0,
                           progress=False)
    rules = PathRules.fit(train, 7, 3, threshold=0.0, progress=False)
    ranks = path_aware_ranks(model, rules, test, known, [0.0, 100.0], batch_size=4, progress=False)
    np.testing.assert_array_equal(ranks[0], plain)
    assert plain.tolist() == [[7.0, 7.0]] and ranks[1].tolist() == [[1.0, 1.0]]
