"""CMedBERT fusion: shapes and masks, gradients, masked-entity behaviour, dynamic λ, CLI with ablations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel

from conftest import ROOT
from fusion.cmedbert import CMedBERT
from fusion.layers import DynamicLambda, GlobalEntityAttention, LocalEntityAttention, masked_softmax
from mrc.model import ModelConfig

SAMPLE_QA = ROOT / "examples" / "sample_mrc.json"


def tiny_model(num_entities: int = 20, d_e: int = 8, settings: dict | None = None, **fusion: object) -> CMedBERT:
    """A small random CMedBERT; ``settings`` are further ModelConfig fields."""
    torch.manual_seed(0)
    encoder = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=32, max_position_embeddings=64))
    config = ModelConfig(model_type="cmedbert", fusion={"loops": 2, **fusion}, **(settings or {}))
    names = torch.randint(1, 50, (num_entities + 1, 4))
    names[::2, 2:] = -1  # shorter names are padded
    return CMedBERT(encoder, config, tables={"kg": torch.randn(num_entities, d_e), "name_ids": names,
                                             "type_ids": torch.randint(0, 4, (num_entities + 1,)), "n_types": 3,
                                             "n_relations": 5})


def batch(entity_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    b, n = entity_ids.shape[:2]
    torch.manual_seed(1)
    context = torch.zeros(b, n, dtype=torch.bool)
    context[:, n // 2:] = True
    support = torch.full((b, n), -100)
    support[:, n // 2:] = 0
    support[:, -3:] = 1
    return {"input_ids": torch.randint(1, 50, (b, n)), "attention_mask": torch.ones(b, n, dtype=torch.long),
            "token_type_ids": (context).long(), "context_mask": context, "entity_ids": entity_ids,
            "start_positions": torch.full((b,), n - 3), "end_positions": torch.full((b,), n - 2),
            "support_labels": support}


def test_masked_softmax_and_attention_shapes_without_nan() -> None:
    scores = torch.randn(2, 3, 4)
    mask = torch.tensor([True, False, True, False]).expand(2, 3, 4).clone()
    mask[1, 2] = False  # a token with no entity at all
    w = masked_softmax(scores, mask)
    assert torch.allclose(w[0].sum(-1), torch.ones(3)) and (w[1, 2] == 0).all() and not w.isnan().any()
    local = LocalEntityAttention(16, 8)
    e_bar, alpha = local(torch.randn(2, 3, 16), torch.randn(2, 3, 4, 8), mask)
    assert e_bar.shape == (2, 3, 8) and alpha.shape == (2, 3, 4) and (e_bar[1, 2] == 0).all()
    glob = GlobalEntityAttention(16, 8)
    e_hat, beta = glob(torch.randn(2, 16), torch.randn(2, 5, 8), torch.zeros(2, 5, dtype=torch.bool))
    assert (e_hat == 0).all() and (beta == 0).all()


def test_model_shapes_masks_and_gradients_reach_every_fusion_parameter() -> None:
    model = tiny_model(lambda_grad=True, tune_entities=True)
    ids = torch.full((2, 12, 3), -1)
    ids[0, 7, :2] = torch.tensor([3, 5])
    ids[1, 9, 0] = 11
    ids[:, 0] = 4  # [CLS] carries an entity too: global attention sees it
    out = model(**batch(ids))
    assert out.start_logits.shape == (2, 12) and out.support_logits.shape == (2, 12)
    assert not any(t.isnan().any() for t in (out.start_logits, out.end_logits, out.support_logits, out.loss))
    assert out.details["local_attention"].shape == (2, 12, 3)
    assert 0 <= out.support_weight.item() <= 1
    out.loss.backward()
    fusion_parts = ("local_attention", "global_attention", "gate", "merge", "dynamic_lambda", "entities.kg")
    for name, param in model.named_parameters():
        if name.startswith(fusion_parts):
            assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_all_entities_masked_equals_the_empty_kg_path() -> None:
    """Masked entities contribute nothing: outputs equal those with any other entity table, and the local
    and global summaries are exactly zero (the gated loop then runs on h alone)."""
    model = tiny_model().eval()
    b = batch(torch.full((2, 12, 3), -1))
    ref = model(**b)
    model.entities.kg.weight.data[:-1].normal_()
    again = model(**b)
    assert torch.equal(ref.start_logits, again.start_logits) and torch.equal(ref.support_logits, again.support_logits)
    no_fusion = tiny_model(local=False, global_=False).eval()
    no_fusion.load_state_dict(model.state_dict())
    assert torch.allclose(no_fusion(**b).start_logits, ref.start_logits)


def test_knowledge_off_is_the_same_model_on_an_empty_kg() -> None:
    """fusion.knowledge = false (the inference-time ablation) masks every entity and relation of the inputs."""
    model = tiny_model(merge_residual=True, relation_feature=True).eval()
    torch.nn.init.normal_(model.relation.weight)  # weights as after training: the knowledge path counts
    torch.nn.init.normal_(model.merge.W_o.weight)
    ids = torch.full((2, 12, 3), -1)
    ids[0, 7, :2] = torch.tensor([3, 5])
    ids[:, 0] = 4
    relations = torch.zeros(2, 12, dtype=torch.long)
    relations[0, 7] = 2
    full = model(**batch(ids), relation_ids=relations)
    empty = model(**batch(torch.full_like(ids, -1)), relation_ids=torch.zeros_like(relations))
    off = tiny_model(merge_residual=True, relation_feature=True, knowledge=False).eval()
    off.load_state_dict(model.state_dict())
    ablated = off(**batch(ids), relation_ids=relations)
    assert torch.equal(ablated.start_logits, empty.start_logits)
    assert torch.equal(ablated.support_logits, empty.support_logits)
    assert not torch.allclose(full.start_logits, empty.start_logits)


def test_knowledge_and_category_lr_apply_to_their_layers() -> None:
    from mrc.train import TrainConfig, _optimizer

    model = tiny_model(settings={"categories": ["A", "B"]}, relation_feature=True, tune_entities=True)
    optimizer = _optimizer(model, TrainConfig(lr=1e-4, head_lr=2e-4, knowledge_lr=1e-3, category_lr=3e-3))
    names = {id(p): n for n, p in model.named_parameters()}
    rate = {names[id(p)]: group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert len(rate) == sum(1 for p in model.parameters() if p.requires_grad)  # each in exactly one group
    for name, lr in rate.items():
        part = name.split(".")[0]
        expected = {"encoder": 1e-4, "category": 3e-3}.get(part, 1e-3 if part in CMedBERT.added_modules else 2e-4)
        assert lr == expected, name
    assert {"merge", "relation", "entities", "span", "support", "category"} <= {n.split(".")[0] for n in rate}


def test_knowledge_span_loss_reaches_the_entity_path_while_the_merge_is_still_zero() -> None:
    """With the zero-start merge the answer loss gives the entity path no gradient at first (o = h); the
    knowledge-only span loss μ·L_K does, and only while training (labels present)."""
    ids = torch.full((2, 12, 3), -1)
    ids[:, 9, :2] = torch.tensor([3, 5])  # entities on the answer tokens (9, 10) and elsewhere
    ids[:, 10, 0] = 7
    ids[0, 7, 0] = 11
    features = {"merge_residual": True, "entity_features": ["kg", "name", "type"], "entity_dim": 12}
    plain = tiny_model(**features)
    out = plain(**batch(ids))
    assert out.auxiliary_loss is None and not hasattr(plain, "knowledge_span")
    out.loss.backward()
    assert plain.local_attention.W.weight.grad.abs().sum() == 0
    model = tiny_model(**features, knowledge_span_weight=0.5)
    out = model(**batch(ids))
    assert out.auxiliary_loss is not None and out.auxiliary_loss > 0
    expected = out.answer_loss + out.support_weight * out.support_loss + out.auxiliary_loss
    assert torch.allclose(out.loss, expected)
    out.loss.backward()
    for name in ("local_attention.W.weight", "entities.project.weight", "knowledge_span.W.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    unlabelled = {k: v for k, v in batch(ids).items() if not k.endswith("_positions")}
    inference = model.eval()(**unlabelled)
    assert inference.auxiliary_loss is None and "auxiliary_loss" not in inference.details


def test_zero_start_merge_begins_as_the_baseline_and_learns() -> None:
    from mrc.model import BaselineMRC

    model = tiny_model(merge_residual=True, lambda_grad=True).eval()
    baseline = BaselineMRC(model.encoder, ModelConfig()).eval()
    baseline.span.load_state_dict(model.span.state_dict())
    baseline.support.load_state_dict(model.support.state_dict())
    ids = torch.full((2, 12, 3), -1)
    ids[0, 7, :2] = torch.tensor([3, 5])
    b = batch(ids)
    out, ref = model(**b), baseline(**{k: v for k, v in b.items() if k != "entity_ids"})
    assert torch.allclose(out.start_logits, ref.start_logits) and torch.allclose(out.support_logits, ref.support_logits)
    out.loss.backward()
    assert model.merge.W_o.weight.grad.abs().sum() > 0  # the zero-initialised merge gets a gradient at once


def test_name_and_type_features_train_and_the_encoder_embeddings_learn_from_names() -> None:
    model = tiny_model(entity_features=["kg", "name", "type"], entity_dim=12)
    assert model.entities.dim == 12 and model.local_attention.W.out_features == 12
    ids = torch.full((2, 12, 3), -1)
    ids[0, 7, :2] = torch.tensor([3, 5])
    ids[1, 9, 0] = 11
    out = model(**batch(ids))
    out.loss.backward()
    for name in ("entities.project.weight", "entities.types.weight"):
        assert dict(model.named_parameters())[name].grad.abs().sum() > 0, name
    rows = model.entities.name_ids[torch.tensor([3, 5, 11])]
    grad = model.encoder.get_input_embeddings().weight.grad
    assert grad[rows[rows >= 0]].abs().sum() > 0  # the name path reaches the encoder's own word embeddings
    assert model.entities.word_embeddings is model.encoder.get_input_embeddings()  # shared, not copied


def test_scale_shift_begins_as_the_baseline_and_evidence_orders_global_entities() -> None:
    from mrc.model import BaselineMRC

    model = tiny_model(scale_shift=True).eval()
    baseline = BaselineMRC(model.encoder, ModelConfig()).eval()
    baseline.span.load_state_dict(model.span.state_dict())
    ids = torch.full((2, 12, 3), -1)
    ids[0, 7, :2] = torch.tensor([3, 5])
    b = batch(ids)
    assert torch.allclose(model(**b).start_logits, baseline(**{k: v for k, v in b.items() if k != "entity_ids"})
                          .start_logits)
    grid = torch.full((1, 6, 2), -1)
    grid[0, 1] = torch.tensor([7, 2])   # first occurrence order: 7, 2, 9, 4
    grid[0, 3] = torch.tensor([9, 2])
    grid[0, 4, 0] = 2
    grid[0, 5, 0] = 4                   # 4 is in the question
    question = torch.tensor([[False, False, False, False, False, True]])
    assert CMedBERT.window_entities(grid, 3).tolist() == [[7, 2, 9]]
    # evidence: question entity 4; then best slot 0 (7, 9, 2 — 2 is best in token 4), more mentions first: 2 (3×)
    assert CMedBERT.window_entities(grid, 4, "evidence", question).tolist() == [[4, 2, 7, 9]]


def test_relation_lookup_marks_passage_tokens_related_to_a_question_entity() -> None:
    from retrieval.relations import RelationLookup

    # (0 -r0-> 1), (2 -r1-> 0), (1 -r1-> 3), (0 -r2-> 1): pair {0, 1} keeps its lowest relation, r0
    lookup = RelationLookup(np.array([[0, 0, 1], [2, 1, 0], [1, 1, 3], [0, 2, 1]]), num_entities=5, num_relations=3)
    assert lookup.relation(np.array([1, 0, 3, 0, 4]), np.array([0, 2, 1, 0, 0])).tolist() == [0, 1, 1, -1, -1]
    ids = np.full((7, 2), -1)
    ids[1, 0] = 0          # question token: entity 0
    ids[3] = [1, -1]       # passage: 1 is related to 0 by r0
    ids[4] = [3, 2]        # 3 is not related to 0; slot 2: entity 2 by r1
    ids[5] = [4, -1]       # unrelated
    ids[6] = [0, -1]       # the question entity itself: no relation
    sequence = [None, 0, None, 1, 1, 1, 1]
    assert lookup.token_relations(ids, sequence).tolist() == [0, 0, 0, 1, 2, 0, 0]
    assert lookup.token_relations(np.where(np.arange(7)[:, None] == 1, -1, ids), sequence).tolist() == [0] * 7


def test_named_relations_fit_scores_and_rank_buckets() -> None:
    from fusion.entities import rank_buckets
    from kg.embeddings.export import KGEmbeddings
    from retrieval.relations import named_relations, question_fit_scores

    assert named_relations("糖尿病的症状有哪些？", ["症状", "病因", "症", "临床症状"]).tolist() == [0]
    # e0 + r0 = e1 exactly; e2 is 3 away from e0 ± r1 in L1 (|0 ± 1 − 0| + |0 − 2| = 3)
    emb = KGEmbeddings(entity=torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [5.0, 5.0]]),
                       relation=torch.tensor([[1.0, 0.0], [-1.0, 0.0]]), metadata={"model": "transe"})
    assert emb.fit_scores(np.array([0]), np.array([1, 2, 3])).tolist() == [0.0, -3.0, -9.0]
    assert emb.fit_scores(np.array([1]), np.array([0]), np.array([1])).tolist() == [0.0]  # e1 + r1 = e0
    with pytest.raises(ValueError, match="transr"):
        KGEmbeddings(emb.entity, emb.relation, {"model": "transr"}).fit_scores(np.array([0]), np.array([1]))
    # complex models, exported as [re; im]: e0 = 1, e1 = i, e2 = −1; r0 = i (a 90° rotation)
    unit = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    rotate = KGEmbeddings(unit, torch.tensor([[0.0, 1.0]]), {"model": "rotate"})
    # RotatE −|h·r − t|: e0·i = e1 exactly; e2: −|i + 1| one way, −|−i − 1| the other
    assert np.allclose(rotate.fit_scores(np.array([0]), np.array([1, 2])), [0.0, -np.sqrt(2)])
    # ComplEx Re(h·r·t̄): f(e0, r0, e1) = Re(i·(−i)) = 1 beats f(e1, r0, e0) = Re(i·i) = −1
    assert np.allclose(KGEmbeddings(unit, torch.tensor([[0.0, 1.0]]), {"model": "complex"})
                       .fit_scores(np.array([0]), np.array([1])), [1.0])
    distmult = KGEmbeddings(torch.tensor([[1.0, 2.0], [3.0, 0.0]]), torch.tensor([[1.0, 1.0]]), {"model": "distmult"})
    assert distmult.fit_scores(np.array([0]), np.array([1])).tolist() == [3.0]  # Σ h·r·t
    # the relations a question names decide the score: e0 + r0 = e1, e0 + r1 = e2; the other fits 3 away
    fit = KGEmbeddings(entity=torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]]),
                       relation=torch.tensor([[1.0, 0.0], [0.0, 2.0]]), metadata={"model": "transe"})
    for question, expected in (("甲的症状", [0.0, -3.0]), ("甲的病因", [-3.0, 0.0]), ("甲是什么", [0.0, 0.0])):
        got = question_fit_scores(fit, ["症状", "病因"], question, np.array([0]), np.array([1, 2]))
        assert got.tolist() == expected, question
    ids = np.full((8, 2), -1)
    ids[1, 0] = 9                       # a question token: never bucketed
    ids[3], ids[4], ids[5] = [7, 5], [5, -1], [6, 8]
    ids[6, 0] = 4                       # an entity without a score
    sequence = [None, 0, None, 1, 1, 1, 1, None]
    scores = {5: -1.0, 6: -2.0, 7: -2.0, 8: -9.0, 9: 0.0}   # ranks in the window: 5 → 1, 6 and 7 → 2, 8 → 4
    assert rank_buckets(ids, sequence, scores).tolist() == [0, 0, 0, 1, 1, 2, 0, 0]
    assert rank_buckets(ids, sequence, {}).tolist() == [0] * 8


@pytest.mark.parametrize("feature, key, module", [("relation_feature", "relation_ids", "relation"),
                                                  ("kg_score_feature", "kg_score_ids", "kg_score"),
                                                  ("kg_score_bias", "kg_score_ids", "kg_score_bias")])
def test_token_feature_begins_as_the_model_without_it_and_learns(feature: str, key: str, module: str) -> None:
    plain, featured = tiny_model(merge_residual=True).eval(), tiny_model(merge_residual=True, **{feature: True})
    featured.load_state_dict(plain.state_dict(), strict=False)
    ids = torch.full((2, 12, 3), -1)
    ids[0, 7, :2] = torch.tensor([3, 5])
    b = batch(ids)
    values = torch.zeros(2, 12, dtype=torch.long)
    values[0, 7], values[1, 9], values[1, 11] = 2, 4, -1  # -1: padding
    assert torch.allclose(featured.eval()(**b, **{key: values}).start_logits, plain(**b).start_logits)
    with pytest.raises(ValueError, match=key):
        featured(**b)
    featured.train()(**b, **{key: values}).loss.backward()
    grad = getattr(featured, module).weight.grad.abs().sum(dim=1)
    assert grad[2] > 0 and grad[4] > 0 and grad[0] == 0 and grad[1] == 0


def test_kg_score_bias_adds_rate_times_its_weight_to_the_logits_and_is_masked_without_knowledge() -> None:
    from fusion.cmedbert import KG_BIAS_RATE

    plain = tiny_model(merge_residual=True).eval()
    biased, masked = (tiny_model(merge_residual=True, kg_score_bias=True, knowledge=k).eval() for k in (True, False))
    b = batch(torch.full((2, 12, 3), -1))
    buckets = torch.zeros(2, 12, dtype=torch.long)
    buckets[0, 7] = 1
    for model in (biased, masked):
        model.load_state_dict(plain.state_dict(), strict=False)
        with torch.no_grad():
            model.kg_score_bias.weight[1] = torch.tensor([0.01, -0.02])
    ref, out = plain(**b), biased(**b, kg_score_ids=buckets)
    assert (out.start_logits[0, 7] - ref.start_logits[0, 7]).item() == pytest.approx(0.01 * KG_BIAS_RATE, rel=1e-4)
    assert (out.end_logits[0, 7] - ref.end_logits[0, 7]).item() == pytest.approx(-0.02 * KG_BIAS_RATE, rel=1e-4)
    assert torch.equal(out.start_logits[1], ref.start_logits[1])
    assert torch.allclose(masked(**b, kg_score_ids=buckets).start_logits, ref.start_logits)


def test_entity_boundary_begins_as_the_model_without_it_reads_the_anchor_and_is_masked_without_knowledge() -> None:
    from mrc.boundary import BOUNDARY_RATE

    plain = tiny_model(merge_residual=True).eval()
    head, masked = (tiny_model(merge_residual=True, entity_boundary=True, entity_boundary_radius=2, knowledge=k)
                    for k in (True, False))
    b = batch(torch.full((2, 12, 3), -1))
    buckets = torch.zeros(2, 12, dtype=torch.long)
    buckets[0, 7:9] = 1      # the anchor: tokens 7–8 of window 0
    buckets[1, 8] = 2        # window 1 has no rank-1 entity
    for model in (head, masked):
        model.load_state_dict(plain.state_dict(), strict=False)
    ref = plain(**b)
    assert torch.allclose(head.eval()(**b, kg_score_ids=buckets).start_logits, ref.start_logits)
    with pytest.raises(ValueError, match="kg_score_ids"):
        head(**b)
    head.train()(**b, kg_score_ids=buckets).loss.backward()
    grad = head.entity_boundary.offset_bias.weight.grad.abs().sum(dim=1)
    assert grad[0] == 0 and grad[2:].sum() > 0 and head.entity_boundary.U.weight.grad.abs().sum() > 0
    with torch.no_grad():
        for model in (head, masked):
            model.entity_boundary.offset_bias.weight[5] = torch.tensor([0.01, -0.02])  # d = +1
    out = head.eval()(**b, kg_score_ids=buckets)
    # token 8 is 1 after the mention's first token 7: its start gets ρ·0.01; token 9, 1 after the last token 8:
    # its end gets ρ·(−0.02); U is still 0, and window 1 is untouched
    assert (out.start_logits[0, 8] - ref.start_logits[0, 8]).item() == pytest.approx(0.01 * BOUNDARY_RATE, rel=1e-4)
    assert (out.end_logits[0, 9] - ref.end_logits[0, 9]).item() == pytest.approx(-0.02 * BOUNDARY_RATE, rel=1e-4)
    assert torch.equal(out.start_logits[1], ref.start_logits[1])
    assert torch.allclose(masked.eval()(**b, kg_score_ids=buckets).start_logits, ref.start_logits)
    # anchored on the second-ranked entity instead (the control): window 1's token 8 anchors, window 0 has none
    head.fusion = head.fusion.model_copy(update={"entity_boundary_anchor": 2})
    second = head(**b, kg_score_ids=buckets)
    assert torch.equal(second.start_logits[0], ref.start_logits[0])
    assert (second.start_logits[1, 9] - ref.start_logits[1, 9]).item() == pytest.approx(0.01 * BOUNDARY_RATE, rel=1e-4)


@pytest.mark.parametrize("source", ["linked", "question_overlap"])
def test_entity_boundary_sources_anchor_without_kg_scores(source: str) -> None:
    plain = tiny_model(merge_residual=True).eval()
    head, masked = (tiny_model(merge_residual=True, entity_boundary=True, entity_boundary_radius=2,
                               entity_boundary_source=source, knowledge=k) for k in (True, False))
    assert not head.fusion.uses_kg_scores
    ids = torch.full((2, 12, 3), -1)
    ids[0, 7, 0] = 4          # a linked passage entity at token 7 of window 0
    b = batch(ids)
    b["input_ids"][:, 1:3] = torch.tensor([11, 12])   # a question bigram, repeated at passage tokens 9–10
    b["input_ids"][:, 9:11] = torch.tensor([11, 12])
    for model in (head, masked):
        model.load_state_dict(plain.state_dict(), strict=False)
        with torch.no_grad():
            model.entity_boundary.offset_bias.weight[4] = torch.tensor([0.01, -0.02])  # d = 0
    ref = plain(**b)
    out, without = head.eval()(**b), masked.eval()(**b)   # no kg_score_ids needed
    start = 7 if source == "linked" else 9
    assert out.start_logits[0, start] != ref.start_logits[0, start]
    if source == "linked":   # the linker's entities are knowledge: masked, the model is the one without the head
        assert torch.equal(out.start_logits[1], ref.start_logits[1])
        assert torch.allclose(without.start_logits, ref.start_logits)
    else:                    # the text anchor is in every window and stays when the knowledge is masked
        assert out.start_logits[1, 9] != ref.start_logits[1, 9]
        assert torch.allclose(without.start_logits[1], out.start_logits[1], atol=1e-5)   # window 1 has no entity


def test_lambda_floor_keeps_the_support_loss() -> None:
    model = tiny_model(lambda_floor=0.3)
    out = model(**batch(torch.full((2, 12, 3), -1)))
    assert out.support_weight.item() >= 0.3


def test_dynamic_lambda_is_in_unit_interval_and_zero_for_negative_cosine() -> None:
    lam = DynamicLambda(16)
    context = torch.ones(3, 10, dtype=torch.bool)
    labels = torch.zeros(3, 10, dtype=torch.long)
    labels[:, 4:6] = 1
    logits = [torch.randn(3, 10) for _ in range(3)]
    value, per_window = lam(torch.randn(3, 10, 16), *logits, context, labels)
    assert ((per_window >= 0) & (per_window <= 1)).all() and 0 <= value <= 1
    # H_A = σ(·) is positive; support states that are all negative give cos < 0, hence λ = 0.
    value, per_window = lam(-torch.rand(3, 10, 16) - 0.1, *logits, context, labels)
    assert value.item() == 0 and (per_window == 0).all()
    # Windows without gold support tokens get λ = 0.
    value, _ = lam(torch.rand(3, 10, 16), *logits, context, torch.zeros(3, 10, dtype=torch.long))
    assert value.item() == 0


def test_bf16_autocast_keeps_fp32_logits_and_finite_gradients() -> None:
    from mrc.inference import autocast

    model = tiny_model(lambda_grad=True).eval()  # no dropout: the bf16 and fp32 losses are comparable
    ids = torch.full((2, 12, 3), -1)
    ids[0, 7, :2] = torch.tensor([3, 5])
    with autocast(torch.device("cpu"), "bf16"):
        out = model(**batch(ids))
    assert out.start_logits.dtype == torch.float32 and out.loss.dtype == torch.float32
    assert torch.isfinite(out.loss) and not out.start_logits[:, 6:].isnan().any()
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    with torch.no_grad():
        ref = model(**batch(ids)).loss
    assert out.loss.item() == pytest.approx(ref.item(), rel=0.05)


def test_fixed_lambda_ablation_uses_the_configured_weight() -> None:
    model = tiny_model(dynamic_lambda=False)
    model.config.support_weight = 0.3
    out = model(**batch(torch.full((2, 12, 3), -1)))
    assert out.support_weight.item() == pytest.approx(0.3)


@pytest.fixture(scope="module")
def sample_kg_assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from kgutil.cli import read_config_file
    from kg.embeddings import EmbeddingConfig, train_embeddings
    from kg.reader import TripleReader
    from kg.records import ReaderConfig
    from kg.snapshot import Snapshot, snapshot_from_records
    from retrieval.index import IndexConfig, build_index

    work = tmp_path_factory.mktemp("kgassets")
    reader = ReaderConfig.model_validate(read_config_file(ROOT / "configs/kg/sample.yaml")["reader"])
    snapshot_from_records(TripleReader(reader).read([ROOT / "examples/sample_kg.tsv"]), work / "snap")
    train_embeddings(EmbeddingConfig(kg=work / "snap", out=work / "emb", dim=16, epochs=1, progress=False))
    build_index(Snapshot.load(work / "snap"), IndexConfig(progress=False), work / "idx")
    return {"snap": work / "snap", "emb": work / "emb", "idx": work / "idx"}


def test_cli_trains_cmedbert_with_ablations_and_predicts_entities(tiny_encoder: Path, sample_kg_assets: dict,
                                                                 tmp_path: Path) -> None:
    common = [sys.executable, str(ROOT / "scripts" / "train_mrc.py"), "--train", str(SAMPLE_QA), "--validation",
              str(SAMPLE_QA), "--epochs", "1", "--max-seq-length", "160", "--doc-stride", "64", "--no-progress",
              "--intermediate-epochs", "0", "--log-level", "WARNING"]
    subprocess.run(common + ["--encoder", str(tiny_encoder), "--out", str(tmp_path / "base")], check=True)
    cmd = common + ["--model-type", "cmedbert", "--init-from", str(tmp_path / "base" / "best"),
                    "--index", str(sample_kg_assets["idx"]), "--embeddings", str(sample_kg_assets["emb"]),
                    "--no-global", "--loops", "1", "--precision", "bf16", "--relation-feature", "--kg-score-feature",
                    "--set", "model.fusion.knowledge_span_weight=0.5", "--out", str(tmp_path / "run")]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    from mrc.model import load_model

    base, _, _ = load_model(tmp_path / "base" / "best")
    cmed, _, saved = load_model(tmp_path / "run" / "best")
    assert not torch.equal(base.encoder.embeddings.word_embeddings.weight,
                           cmed.encoder.embeddings.word_embeddings.weight)  # trained on from the baseline
    assert saved["config"]["model_type"] == "cmedbert"
    assert saved["config"]["fusion"]["global_"] is False and saved["config"]["fusion"]["loops"] == 1
    assert saved["config"]["fusion"]["relation_feature"] and cmed.relation.weight.abs().sum() > 0  # it trained
    assert saved["config"]["fusion"]["kg_score_feature"] and cmed.kg_score.weight.abs().sum() > 0
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())["history"]
    assert history[0]["train_auxiliary"] > 0 and cmed.knowledge_span.W.weight.abs().sum() > 0  # μ·L_K trained
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "predict.py"), "--model",
                          str(tmp_path / "run" / "best"), "--question", "二甲双胍常见的不良反应是什么？",
                          "--passage", "二甲双胍是2型糖尿病的一线治疗药物，常见不良反应为胃肠道反应。", "--json"],
                         check=True, capture_output=True, text=True)
    result = json.loads(out.stdout)
    linked = {(e["span"], e["entity"]) for e in result["entities"]}
    assert ("二甲双胍", "二甲双胍") in linked and ("胃肠道反应", "胃肠道反应") in linked
    assert all(0 <= e["attention"] <= 1 for e in result["entities"])
    evaluate = [sys.executable, str(ROOT / "scripts" / "evaluate.py"), "--data", str(SAMPLE_QA), "--model"]
    for flags in ([], ["--no-knowledge"]):  # with and without its entities: both score the whole dataset
        scored = subprocess.run(evaluate + [str(tmp_path / "run" / "best"), *flags], check=True, capture_output=True,
                                text=True)
        assert json.loads(scored.stdout)["overall"]["count"] > 0
    refused = subprocess.run(evaluate + [str(tmp_path / "base" / "best"), "--no-knowledge"], capture_output=True,
                             text=True)
    assert refused.returncode == 2 and "no fusion settings" in refused.stderr and "Traceback" not in refused.stderr


def test_embeddings_from_another_snapshot_are_refused(sample_kg_assets: dict, tmp_path: Path) -> None:
    from kg.records import Triple
    from kg.snapshot import Snapshot, SnapshotError, snapshot_from_records
    from retrieval.index import IndexConfig, build_index

    snapshot_from_records([Triple(head="a", relation="r", tail="b")], tmp_path / "other")
    build_index(Snapshot.load(tmp_path / "other"), IndexConfig(progress=False), tmp_path / "idx")
    encoder = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=32))
    config = ModelConfig(model_type="cmedbert", fusion={"index": str(tmp_path / "idx"),
                                                        "embeddings": str(sample_kg_assets["emb"])})
    with pytest.raises(SnapshotError, match="retrain"):
        CMedBERT(encoder, config)


def test_a_copied_model_finds_its_index_and_refuses_another(tiny_encoder: Path, sample_kg_assets: dict,
                                                            tmp_path: Path) -> None:
    """A CMedBERT directory records its index (absolute path) and KG snapshot: copied elsewhere and run from
    another directory it answers the same; with its index moved it says so; an index of another snapshot is
    refused with a clear error, never silently misaligned."""
    import shutil

    from kg.records import Triple
    from kg.snapshot import Snapshot, snapshot_from_records
    from retrieval.index import IndexConfig, build_index

    idx = tmp_path / "idx"
    shutil.copytree(sample_kg_assets["idx"], idx)
    subprocess.run([sys.executable, str(ROOT / "scripts" / "train_mrc.py"), "--train", str(SAMPLE_QA),
                    "--validation", str(SAMPLE_QA), "--epochs", "1", "--max-seq-length", "160", "--doc-stride", "64",
                    "--no-progress", "--intermediate-epochs", "0", "--encoder", str(tiny_encoder), "--model-type",
                    "cmedbert", "--index", "idx", "--embeddings", str(sample_kg_assets["emb"]), "--out", "run"],
                   check=True, cwd=tmp_path, capture_output=True)
    saved = json.loads((tmp_path / "run/best/kgmrc_config.json").read_text())
    assert saved["config"]["fusion"]["index"] == str(idx.resolve()) and saved["config"]["fusion"]["snapshot_checksum"]
    elsewhere = tmp_path / "copy" / "model"
    shutil.copytree(tmp_path / "run" / "best", elsewhere)
    ask = [sys.executable, str(ROOT / "scripts" / "predict.py"), "--question", "二甲双胍常见的不良反应是什么？",
           "--passage", "二甲双胍是2型糖尿病的一线治疗药物，常见不良反应为胃肠道反应。", "--json"]

    def predict(model: Path, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([*ask, "--model", str(model), *extra], capture_output=True, text=True,
                              cwd=tmp_path / "copy")

    first = json.loads(predict(tmp_path / "run" / "best").stdout)
    assert json.loads(predict(elsewhere).stdout)["answer"] == first["answer"]
    idx.rename(tmp_path / "moved_idx")
    gone = predict(elsewhere)
    assert gone.returncode == 2 and "not found: give the model its index with --index" in gone.stderr
    assert json.loads(predict(elsewhere, "--index", str(tmp_path / "moved_idx")).stdout)["answer"] == first["answer"]
    snapshot_from_records([Triple(head="甲", relation="r", tail="乙")], tmp_path / "other")
    build_index(Snapshot.load(tmp_path / "other"), IndexConfig(progress=False), idx)  # idx/ rebuilt, other KG
    refused = predict(elsewhere)
    assert refused.returncode == 2 and "index was built from snapshot" in refused.stderr
    assert "Traceback" not in refused.stderr
