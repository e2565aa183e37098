"""KG embeddings: PCRA reliabilities by hand, path composition, training/export/resume, snapshot checks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from kg.embeddings import EmbeddingConfig, KGEmbeddings, eval_slice_size, split_snapshot, train_embeddings
from kg.embeddings.compare import compare_exports, load_ranks, paired, save_ranks
from kg.embeddings.pcra import PAD, extract_paths
from kg.embeddings.popularity import rank_metrics
from kg.embeddings.ptranse import PTransE
from kg.snapshot import Snapshot, SnapshotError

from conftest import ROOT

A, B, C, D = range(4)
R0, R1, R2 = range(3)
HAND_KG = np.array([[A, R0, B], [A, R0, C], [B, R1, D], [C, R1, D], [A, R2, D], [A, R1, B]])


def paths_of(paths, triple) -> dict[tuple[int, int], float]:
    (i,) = np.flatnonzero((paths.triples == triple).all(axis=1))
    return {tuple(int(s) for s in st): round(float(r), 6)
            for st, r in zip(paths.steps[i], paths.reliability[i]) if r > 0}


def test_pcra_reliabilities_match_hand_computation() -> None:
    paths = extract_paths(HAND_KG, 4, 3, threshold=0.0, progress=False)
    # A→D: A -r0-> {B, C} (½ each) -r1-> D (all of it): 1.0; A -r1-> B -r1-> D: 1.0. Own edge r2 excluded.
    assert paths_of(paths, [A, R2, D]) == {(R0, R1): 1.0, (R1, R1): 1.0}
    # A→B: the 1-step path r1 (A's only r1 successor is B): 1.0; A -r2-> D -r1⁻¹-> {B, C}: ½.
    assert paths_of(paths, [A, R0, B]) == {(R1, PAD): 1.0, (R2, R1 + 3): 0.5}
    # B→D: B -r0⁻¹-> A -r2-> D: 1.0 · 1.0; B -r1⁻¹-> A -r2-> D: 1.0 · 1.0.
    assert paths_of(paths, [B, R1, D]) == {(R0 + 3, R2): 1.0, (R1 + 3, R2): 1.0}
    # The threshold drops weak paths; max_paths keeps the most reliable.
    strict = extract_paths(HAND_KG, 4, 3, threshold=0.6, progress=False)
    assert paths_of(strict, [A, R0, B]) == {(R1, PAD): 1.0}
    assert paths_of(extract_paths(HAND_KG, 4, 3, threshold=0.0, max_paths=1, progress=False),
                    [A, R0, B]) == {(R1, PAD): 1.0}
    one_step = extract_paths(HAND_KG, 4, 3, max_length=1, threshold=0.0, progress=False)
    assert paths_of(one_step, [A, R2, D]) == {}


@st.composite
def small_kgs(draw: st.DrawFn) -> tuple[np.ndarray, int, int]:
    entities, relations = draw(st.integers(2, 6)), draw(st.integers(1, 3))
    triple = st.tuples(st.integers(0, entities - 1), st.integers(0, relations - 1), st.integers(0, entities - 1))
    return np.array(draw(st.lists(triple, min_size=1, max_size=14, unique=True)), dtype=np.int64), entities, relations


@settings(max_examples=60, deadline=None)
@given(kg=small_kgs(), block=st.sampled_from([1, 3, 2_000_000]), length=st.sampled_from([2, 3]))
def test_pcra_paths_equal_the_dense_matrix_products(kg: tuple[np.ndarray, int, int], block: int, length: int) -> None:
    """Every path and reliability equals [P_s₁ ⋯ P_sₗ]_{h,t} from dense row-normalised adjacencies, whatever the
    block size."""
    triples, entities, relations = kg
    steps = 2 * relations
    adjacency = np.zeros((steps, entities, entities))
    for h, r, t in triples:
        adjacency[r, h, t] = adjacency[r + relations, t, h] = 1.0
    p = adjacency / np.maximum(adjacency.sum(axis=2, keepdims=True), 1.0)
    walks = [(s,) for s in range(steps)]
    walks += [w + (s,) for w in walks for s in range(steps)] if length >= 2 else []
    walks += [w + (s,) for w in walks if len(w) == 2 for s in range(steps)] if length == 3 else []
    paths = extract_paths(triples, entities, relations, max_length=length, threshold=0.0, max_paths=len(walks),
                          block=block, progress=False)
    for h, r, t in triples:
        expected = {}
        for walk in walks:
            value = np.linalg.multi_dot([np.eye(entities)] + [p[s] for s in walk])[h, t]
            if value > 0 and walk != (r,):
                expected[walk + (PAD,) * (length - len(walk))] = round(float(value), 6)
        assert paths_of(paths, [h, r, t]) == expected


def test_path_composition_adds_relations_and_subtracts_reverses() -> None:
    from pykeen.triples import TriplesFactory

    tf = TriplesFactory(mapped_triples=torch.as_tensor(HAND_KG), entity_to_id={c: i for i, c in enumerate("ABCD")},
                        relation_to_id={"r0": 0, "r1": 1, "r2": 2})
    paths = extract_paths(HAND_KG, 4, 3, threshold=0.0, progress=False)
    model = PTransE(triples_factory=tf, embedding_dim=5, paths=paths, random_seed=0)
    rel = model.relation_representations[0](indices=None)
    composed = model.compose(torch.tensor([[R0, R1 + 3], [R2, PAD]]))
    torch.testing.assert_close(composed[0], rel[R0] - rel[R1])
    torch.testing.assert_close(composed[1], rel[R2])
    loss = model.path_loss(torch.as_tensor(HAND_KG))
    assert loss.item() > 0
    loss.backward()
    assert model.relation_representations[0]._embeddings.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("model", "loop"), [("transe", "slcwa"), ("transr", "slcwa"), ("ptranse", "slcwa"),
                                           ("rotate", "slcwa"), ("complex", "slcwa"), ("complex", "lcwa"),
                                           ("transr", "lcwa")])
def test_train_export_round_trip_and_resume(sample_snapshot: Path, tmp_path: Path, model: str, loop: str) -> None:
    snap = Snapshot.load(sample_snapshot)
    loss = {"rotate": "nssa"}.get(model, "marginranking") if loop == "slcwa" else "crossentropy"
    config = EmbeddingConfig(kg=sample_snapshot, out=tmp_path / model, model=model, dim=16, epochs=1,
                             batch_size=128, progress=False, training_loop=loop, loss=loss,
                             label_smoothing=0.1 if loop == "lcwa" else 0.0)
    first = train_embeddings(config)
    assert len(first.losses) == 1 and set(first.metrics) >= {"mrr", "hits@1", "hits@3", "hits@10"}
    assert 0 <= first.metrics["mrr"] <= 1
    resumed = train_embeddings(config.model_copy(update={"epochs": 2}))
    assert len(resumed.losses) == 2 and resumed.losses[0] == first.losses[0]
    # evaluation with entity slicing (large KGs: batch × entities × dim floats must fit eval_memory_mb) is exact
    # (and path-aware scoring, an evaluation setting: the checkpoint still matches)
    sliced = config.model_copy(update={"epochs": 2, "eval_batch_size": 4096, "eval_memory_mb": 16,
                                       "path_aware": True, "path_aware_betas": [0.0, 1.0]})
    assert eval_slice_size(sliced, snap.num_entities) < snap.num_entities
    restored = train_embeddings(sliced)  # every epoch restored from the checkpoint: evaluation and export only
    assert restored.metrics == pytest.approx(resumed.metrics) and restored.losses == resumed.losses
    # β = 0 is the model alone: its validation MRR, whatever the model (inverse-relation lcwa models included)
    assert restored.path_aware["validation_mrr"][0] == pytest.approx(restored.validation_metrics["mrr"], abs=1e-4)
    assert restored.seconds_per_epoch == pytest.approx(resumed.seconds_per_epoch)  # the timings travel too
    emb = KGEmbeddings.load(tmp_path / model, snapshot_checksum=snap.checksum)
    width = 32 if model in ("rotate", "complex") else 16  # complex vectors are exported as [re; im]
    assert emb.entity.shape == (snap.num_entities, width) and emb.entity.dtype == torch.float32
    assert 0 < emb.metadata["popularity_metrics"]["mrr"] <= 1
    assert 0 <= emb.metadata["validation_metrics"]["mrr"] <= 1  # what a choice between exports reads
    low, high = emb.metadata["mrr_ci95"]
    assert low <= emb.metadata["metrics"]["mrr"] <= high
    versus = emb.metadata["versus_popularity"]
    assert versus["other_mrr"] == pytest.approx(emb.metadata["popularity_metrics"]["mrr"], abs=1e-4)
    ranks = load_ranks(tmp_path / model)  # per-triple ranks: paired comparisons between exports
    assert ranks["test"].shape == (len(ranks["test_triples"]), 2) == ranks["popularity_test"].shape
    assert rank_metrics(ranks["test"])["mrr"] == pytest.approx(emb.metadata["metrics"]["mrr"])
    assert rank_metrics(ranks["test_path_aware"])["mrr"] == pytest.approx(emb.metadata["path_aware"]["metrics"]["mrr"])
    assert emb.relation.shape[0] == snap.num_relations  # lcwa: the forward relations, not their inverses
    if model == "transr":
        tensors = load_file(str(tmp_path / model / "embeddings.safetensors"))
        assert tensors["relation_projection"].shape[0] == snap.num_relations
    assert emb.metadata["model"] == model and emb.metadata["epochs"] == 2
    assert json.loads((tmp_path / model / "metrics.json").read_text())["mrr"] == emb.metadata["metrics"]["mrr"]
    with pytest.raises(SnapshotError, match="retrain"):
        KGEmbeddings.load(tmp_path / model, snapshot_checksum="0" * 64)


def test_split_is_fixed_by_seed(sample_snapshot: Path) -> None:
    snap = Snapshot.load(sample_snapshot)
    a = [f.mapped_triples for f in split_snapshot(snap, (0.8, 0.1, 0.1), 7)]
    b = [f.mapped_triples for f in split_snapshot(snap, (0.8, 0.1, 0.1), 7)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert sum(len(x) for x in a) == len(snap.triples)


def test_popularity_baseline_by_hand() -> None:
    from kg.embeddings.popularity import popularity_metrics

    # r0 tails in train: B twice, D once. Test (E, r0, B): tail B scores 2 → rank 1. Head side (?, r0, B): train
    # heads of r0 are A (2) and C (1), both true heads of (·, r0, B) and so filtered; E ties with B and D at 0 →
    # optimistic 1, pessimistic 3, realistic 2. MRR = (1 + ½) / 2.
    train = np.array([[A, R0, B], [C, R0, B], [A, R0, D]])
    test = np.array([[4, R0, B]])
    metrics = popularity_metrics(train, np.vstack([train, test]), test, 5, 1)
    assert metrics == {"mrr": 0.75, "hits@1": 0.5, "hits@3": 1.0, "hits@10": 1.0, "num_test_triples": 1}


def test_evaluation_filters_every_known_triple_sampled_or_not() -> None:
    from pykeen.models import TransE
    from pykeen.triples import TriplesFactory

    from kg.embeddings import evaluate

    # Test triples (A, r0, B) and (A, r0, C); one is sampled. B and C sit exactly at A + r0, D far away:
    # the tail query (A, r0, ?) ties the two true tails at the top. Filtering the unsampled one too → rank 1 on
    # both sides, MRR 1; leaving it in would tie it with the answer (realistic rank 1.5, MRR 0.83).
    test, train = (TriplesFactory(mapped_triples=torch.as_tensor(t), entity_to_id=dict(zip("ABCD", range(4))),
                                  relation_to_id={"r0": R0}) for t in ([[A, R0, B], [A, R0, C]], [[D, R0, D]]))
    model = TransE(triples_factory=train, embedding_dim=2, scoring_fct_norm=2)
    with torch.no_grad():
        model.entity_representations[0]._embeddings.weight[:] = torch.tensor([[0, 0], [1, 0], [1, 0], [9, 9.]])
        model.relation_representations[0]._embeddings.weight[:] = torch.tensor([[1, 0.]])
    metrics, ranks, scored = evaluate(model, test, [train, test], max_triples=1, batch_size=4, seed=0,
                                      progress=False)
    assert metrics["mrr"] == pytest.approx(1.0) and metrics["num_test_triples"] == 1
    assert ranks.tolist() == [[1.0, 1.0]] and scored.shape == (1, 3)


def test_evaluation_keeps_per_triple_ranks_in_triple_order() -> None:
    from pykeen.models import TransE
    from pykeen.triples import TriplesFactory

    from kg.embeddings import evaluate

    # As above, plus (A, r0, D) with D far away. Its tail query A + r0 = (1, 0): B and C are true tails (filtered),
    # A at distance 1 beats D → rank 2; its head query ? + r0 ≈ D: D itself is a true head ((D, r0, D) in train),
    # B and C (distance 11.4) beat A (12.0) → rank 3. The other two triples rank 1 on both sides.
    test, train = (TriplesFactory(mapped_triples=torch.as_tensor(t), entity_to_id=dict(zip("ABCD", range(4))),
                                  relation_to_id={"r0": R0})
                   for t in ([[A, R0, B], [A, R0, D], [A, R0, C]], [[D, R0, D]]))
    model = TransE(triples_factory=train, embedding_dim=2, scoring_fct_norm=2)
    with torch.no_grad():
        model.entity_representations[0]._embeddings.weight[:] = torch.tensor([[0, 0], [1, 0], [1, 0], [9, 9.]])
        model.relation_representations[0]._embeddings.weight[:] = torch.tensor([[1, 0.]])
    metrics, ranks, scored = evaluate(model, test, [train, test], max_triples=None, batch_size=2, seed=0,
                                      progress=False)
    assert scored.tolist() == test.mapped_triples.tolist()
    assert ranks.tolist() == [[1.0, 1.0], [3.0, 2.0], [1.0, 1.0]]  # (head, tail) per triple, in triple order
    assert metrics["mrr"] == pytest.approx((4 + 1 / 3 + 1 / 2) / 6)


def test_paired_comparison_by_hand(tmp_path: Path) -> None:
    # A ranks every triple half as deep as B on both sides: rr_A = 2·rr_B per triple, so every resample's ratio
    # is exactly 2; Δ = mean(rr_A − rr_B) = (0.5 + 0.25) / 2.
    a, b = np.array([[1.0, 1.0], [2.0, 2.0]]), np.array([[2.0, 2.0], [4.0, 4.0]])
    result = paired(a, b, rounds=500)
    assert (result["mrr"], result["other_mrr"], result["mrr_diff"]) == (0.75, 0.375, 0.375)
    assert result["mrr_ratio"] == 2.0 and result["mrr_ratio_ci95"] == [2.0, 2.0]
    assert 0.25 <= result["mrr_diff_ci95"][0] <= result["mrr_diff_ci95"][1] <= 0.5 and result["ci_excludes_zero"]
    triples = np.array([[0, 0, 1], [1, 0, 2]])
    for name, ranks, scored in (("a", a, triples), ("b", b, triples), ("c", b, triples[::-1])):
        save_ranks(tmp_path / name, {"test": ranks, "test_triples": scored})
    assert compare_exports(tmp_path / "b", tmp_path / "a", rounds=500)["mrr_diff"] == 0.375
    save_ranks(tmp_path / "d", {"test": b, "test_path_aware": a, "test_triples": triples})  # path-aware ranks
    assert compare_exports(tmp_path / "b", tmp_path / "d", rounds=500, path_aware=True)["mrr_diff"] == 0.375
    assert compare_exports(tmp_path / "d", tmp_path / "b", rounds=500, reference_path_aware=True)["mrr_diff"] == -0.375
    with pytest.raises(ValueError, match="no path-aware ranks"):
        compare_exports(tmp_path / "b", tmp_path / "a", path_aware=True)
    with pytest.raises(ValueError, match="different test triples"):
        compare_exports(tmp_path / "a", tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="no per-triple ranks"):
        load_ranks(tmp_path)
    script = [sys.executable, str(ROOT / "scripts" / "compare_embeddings.py"), "--rounds", "200"]
    ok = subprocess.run([*script, "--reference", str(tmp_path / "b"), "--others", str(tmp_path / "a"), "--out",
                         str(tmp_path / "cmp.json")], capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    assert json.loads((tmp_path / "cmp.json").read_text())["others"][str(tmp_path / "a")]["mrr_ratio"] == 2.0
    bad = subprocess.run([*script, "--reference", str(tmp_path / "a"), "--others", str(tmp_path / "c")],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "different test triples" in bad.stderr


def test_every_pykeen_model_is_one_name_away() -> None:
    from kg.embeddings import model_names

    assert {"transe", "transr", "ptranse", "rotate", "complex", "distmult"} <= set(model_names())
    assert EmbeddingConfig(kg="s", out="o", model="RotatE").model == "rotate"
    with pytest.raises(ValueError, match="unknown KG embedding model 'transz'"):
        EmbeddingConfig(kg="s", out="o", model="transz")
    with pytest.raises(ValueError, match="'nssa' does not go with training_loop 'lcwa'"):
        EmbeddingConfig(kg="s", out="o", model="complex", training_loop="lcwa", loss="nssa")
    with pytest.raises(ValueError, match="label_smoothing smooths lcwa's 1-N targets"):
        EmbeddingConfig(kg="s", out="o", model="transe", label_smoothing=0.1)
    with pytest.raises(ValueError, match="ptranse trains with sampled negatives"):
        EmbeddingConfig(kg="s", out="o", model="ptranse", training_loop="lcwa", loss="crossentropy")


def test_tuning_through_pykeen_hpo_resumes_and_writes_a_training_config(sample_snapshot: Path, tmp_path: Path
                                                                        ) -> None:
    import yaml

    from kg.embeddings.tune import TuneConfig, default_space, tune_embeddings

    config = TuneConfig(kg=sample_snapshot, out=tmp_path / "study", fixed={"model": "transe", "batch_size": 256},
                        trials=2, max_epochs=2, stop_frequency=1, patience=1, valid_max_triples=50)
    summary = tune_embeddings(config)
    assert [t["state"] for t in summary["trials"]] == ["COMPLETE", "COMPLETE"]
    assert summary["popularity"]["num_test_triples"] == summary["validation_triples"] == 50
    best = yaml.safe_load((tmp_path / "study" / "best.yaml").read_text())
    assert best["model"] == "transe" and best["batch_size"] == 256 and 32 <= best["dim"] <= 256
    assert best["lr"] == max(summary["trials"], key=lambda t: t["mrr"])["params"]["lr"]
    assert EmbeddingConfig(kg=sample_snapshot, out=tmp_path / "emb", **best).epochs in (1, 2)
    assert len(tune_embeddings(config)["trials"]) == 2  # resumed: nothing left to run
    assert len(tune_embeddings(config.model_copy(update={"trials": 3}))["trials"]) == 3
    fixed_dim = config.model_copy(update={"out": tmp_path / "fixed_dim", "trials": 1, "fixed": {
        "model": "transe", "batch_size": 256, "dim": 24}, "space": {"optimizer": default_space()["optimizer"]}})
    searched = tune_embeddings(fixed_dim)  # components left out of the space keep the fixed settings
    assert searched["best"]["settings"]["dim"] == 24 and set(searched["trials"][0]["params"]) == {"lr"}
    with pytest.raises(ValueError, match="cannot search"):
        TuneConfig(kg=sample_snapshot, out=tmp_path, space={"model": {"width": {"type": "int", "low": 1, "high": 2}}})
    one_to_all = {"model": "distmult", "batch_size": 256, "training_loop": "lcwa", "loss": "crossentropy"}
    cli = subprocess.run([sys.executable, str(ROOT / "scripts/tune_kg_embeddings.py"), "--kg", str(sample_snapshot),
                          "--out", str(tmp_path / "lcwa"), "--model", "distmult", "--training-loop", "lcwa", "--loss",
                          "crossentropy", "--set", "fixed.batch_size=256", "--trials", "1", "--max-epochs", "1",
                          "--stop-frequency", "1", "--patience", "1", "--valid-max-triples", "50"],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert cli.returncode == 0, cli.stderr
    lcwa = json.loads((tmp_path / "lcwa" / "trials.json").read_text())
    assert lcwa["trials"][0]["state"] == "COMPLETE"  # no negatives sampled, so none searched
    assert "num_negs_per_pos" not in lcwa["trials"][0]["params"] and 0 < lcwa["trials"][0]["mrr"] <= 1
    with pytest.raises(ValueError, match="lcwa samples no negatives"):
        TuneConfig(kg=sample_snapshot, out=tmp_path, fixed=one_to_all, space=default_space())
