"""The cross-validation protocol: figures and paired CIs by hand, and a tiny end-to-end run that resumes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import ROOT
from mrc.crossval import (CVConfig, chosen_epoch, current_runs, recorded_elsewhere, run_config, run_cv, run_hash,
                          summarize)
from mrc.cv_report import markdown_table, verdicts
from mrc.data import read_dataset
from mrc.train import TrainConfig, sample_passages, write_squad

SAMPLE = ROOT / "examples" / "sample_mrc.json"


def _run(scores: dict[str, float], validation_f1: float = 50.0) -> dict:
    return {"questions": {q: {"em": v, "f1": v} for q, v in scores.items()}, "validation": {"f1": validation_f1}}


def test_summary_pairs_on_shared_questions_and_seeds() -> None:
    base = {"0/1": _run({"a": 0, "b": 1}), "1/1": _run({"c": 0, "d": 0}), "0/2": _run({"a": 1, "b": 1})}
    better = {"0/1": _run({"a": 1, "b": 1}), "1/1": _run({"c": 1, "d": 0})}  # no seed 2 yet
    summary = summarize({"baseline": base, "kg": better}, CVConfig(folds=2, seeds=[1, 2], bootstrap=1000))
    # baseline per question: a = mean(0, 1), b = 1, c = 0, d = 0 → EM 37.5
    assert summary["variants"]["baseline"]["em"] == 37.5 and summary["variants"]["kg"]["em"] == 75.0
    paired = summary["paired"]["kg"]
    # paired on runs 0/1 and 1/1 only: differences a +1, b 0, c +1, d 0 → +50
    assert paired["em_diff"] == 50.0 and paired["runs"] == 2 and paired["questions"] == 4
    assert paired["em_ci95"][0] <= 50.0 <= paired["em_ci95"][1]
    assert summary["best_variant"] == "baseline"  # validation F1 50 each: the first; the test folds choose nothing
    assert paired["em_sign_test"] == {"better": 2, "worse": 0, "p": 0.5}   # two up, two ties: 2 · (1/2)^2
    assert "kg: EM +50.00" in verdicts(summary)[0]
    assert verdicts(summary)[0].endswith("; 2 questions better, 0 worse, sign test p = 0.5")
    better["0/1"]["validation"]["f1"] = better["1/1"]["validation"]["f1"] = 60.0
    assert summarize({"baseline": base, "kg": better}, CVConfig(folds=2, seeds=[1, 2]))["best_variant"] == "kg"
    base["0/1"]["validation"]["f1"] = base["1/1"]["validation"]["f1"] = base["0/2"]["validation"]["f1"] = 70.0
    assert summarize({"baseline": base, "kg": better}, CVConfig(folds=2, seeds=[1, 2]))["best_variant"] == \
        "baseline"  # better on test, worse on validation: validation decides


def test_folds_that_disagree_are_shown_apart() -> None:
    # fold 0 (a, b): the variant gains both questions; fold 1 (c, d): it loses both — pooled, nothing
    base = {"0/1": _run({"a": 0, "b": 0}), "1/1": _run({"c": 1, "d": 1})}
    kg = {"0/1": _run({"a": 1, "b": 1}), "1/1": _run({"c": 0, "d": 0})}
    summary = summarize({"baseline": base, "kg": kg}, CVConfig(folds=2, seeds=[1], bootstrap=1000))
    paired = summary["paired"]["kg"]
    assert paired["em_diff"] == 0.0
    assert paired["per_fold"]["0"] == {"questions": 2, "runs": 1, "em_diff": 100.0, "em_ci95": [100.0, 100.0],
                                       "f1_diff": 100.0, "f1_ci95": [100.0, 100.0]}
    assert paired["per_fold"]["1"]["em_diff"] == -100.0 and paired["per_fold"]["1"]["em_ci95"] == [-100.0, -100.0]
    assert "; per fold +100.00, -100.00; 2 questions better, 2 worse" in verdicts(summary)[0]
    assert paired["fold_heterogeneity"] == {}   # no spread within a fold: no Q test
    # fold 0 gains one of two questions, fold 1 loses one: per fold +50 and −50 (SE 50 each), Q = 2, p = 0.1573
    kg["0/1"]["questions"]["b"] = {"em": 0, "f1": 0}
    kg["1/1"]["questions"]["d"] = {"em": 1, "f1": 1}
    paired = summarize({"baseline": base, "kg": kg}, CVConfig(folds=2, seeds=[1], bootstrap=1000))["paired"]["kg"]
    assert paired["fold_heterogeneity"]["em"] == {"q": 2.0, "df": 1, "p": 0.1573, "p_permutation": 1.0}
    assert "; per fold +50.00, -50.00 (folds agree? Cochran's Q p = 0.157, permutation p = 1);" in verdicts(
        {"paired": {"kg": paired}})[0]
    one_fold = summarize({"baseline": {"0/1": base["0/1"]}, "kg": {"0/1": kg["0/1"]}}, CVConfig(folds=2, seeds=[1]))
    assert "per_fold" not in one_fold["paired"]["kg"] and "per fold" not in verdicts(one_fold)[0]


def _seeds_that_disagree() -> tuple[dict, dict]:
    """Questions a, b (fold 0) and c, d (fold 1), seeds 1 and 2: the baseline gets none right; "kg" gets every
    question right with seed 1 and none with seed 2."""
    questions = ["a", "b", "c", "d"]
    base = {f"{fold}/{seed}": _run({q: 0 for q in questions[2 * fold:2 * fold + 2]}) for fold in (0, 1)
            for seed in (1, 2)}
    kg = {f"{fold}/{seed}": _run({q: int(seed == 1) for q in questions[2 * fold:2 * fold + 2]}) for fold in (0, 1)
          for seed in (1, 2)}
    return base, kg


def test_paired_seeds_get_a_multi_bootstrap_interval_that_holds_their_disagreement() -> None:
    base, kg = _seeds_that_disagree()
    kg["0/3"] = _run({"a": 1, "b": 1})   # the baseline has no seed 3: left out of both intervals
    summary = summarize({"baseline": base, "kg": kg}, CVConfig(folds=2, seeds=[1, 2, 3], bootstrap=2000))
    paired = summary["paired"]["kg"]
    # seed 1 gains on every question, seed 2 on none: averaged over seeds every question gains +50, so the
    # bootstrap over questions is [50, 50]; over seeds × questions the draws are seeds {1,1}, {1,2}, {2,2}
    assert paired["em_diff"] == 50.0 and paired["em_ci95"] == [50.0, 50.0] and paired["em_ci_excludes_zero"]
    assert paired["em_ci95_seeds"] == [0.0, 100.0] and not paired["em_ci_excludes_zero_seeds"]
    # by variance components, within each fold: all of it is between the two runs (per fold SS_run 2·2·50², one
    # degree of freedom; pooled MS_run 20000 / 2 = 10000), so 50 ± t(0.975, 2)·√(10000 / (2 seeds · 4 questions))
    # = 50 ± 4.303·35.36
    assert paired["em_ci95_components"] == pytest.approx([-102.12, 202.12], abs=0.01)
    assert not paired["em_ci_excludes_zero_components"]
    assert "over seeds × questions [+0.00, +100.00] — not distinguishable from baseline" in verdicts(summary)[0]


def test_the_table_holds_every_variant_and_pair_with_its_intervals() -> None:
    base, kg = _seeds_that_disagree()
    twin = {"0/1": _run({"a": 1, "b": 0}), "1/1": _run({"c": 0, "d": 0})}    # one seed only
    summary = summarize({"baseline": base, "kg": kg, "twin": twin},
                        CVConfig(folds=2, seeds=[1, 2], bootstrap=2000, pairs=[("kg", "twin")]))
    lines = markdown_table(summary, "baseline").splitlines()
    assert lines[0] == "| variant | questions × runs | EM | F1 | Δ EM | Δ F1 |"   # no support or category scores
    assert lines[2] == "| `baseline` | 4 × 4 | 0.00 | 0.00 |  |  |"
    # kg: +50 on every question averaged over seeds; over seeds × questions the seeds disagree (as above)
    assert lines[3] == ("| `kg` | 4 × 4 | 50.00 | 50.00 | +50.00 [+50.00, +50.00] [+0.00, +100.00] | "
                        "+50.00 [+50.00, +50.00] [+0.00, +100.00] |")
    assert lines[4].startswith("| `twin` | 4 × 2 | 25.00 | 25.00 | +25.00 [")
    assert lines[4].count("[") == 2                                        # one seed: no interval over seeds
    # the pair, on seed 1 only: kg gets a, b, c, d right, twin only a
    assert lines[5].startswith("| `kg` − `twin` | 4 × 2 |  |  | +75.00 [")
    assert "Δ: the variant − `baseline`" in lines[-1]


def test_several_seeds_get_a_t_interval_over_seed_means() -> None:
    def run(em: list[float], gold: list[str], predicted: list[str], prefix: str = "q") -> dict:
        return {"questions": {f"{prefix}{i}": {"em": v, "categories": {"gold": [g], "predicted": [p]}}
                              for i, (v, g, p) in enumerate(zip(em, gold, predicted))}}

    gold = ["A", "B", "A", "B"]
    runs = {"0/1": run([1, 1, 0, 0], gold, gold),           # with fold 1 below, seed 1: EM 40, macro F1 100
            "0/2": run([1, 1, 1, 0], gold, ["A"] * 4),      # seed 2: EM 60, macro F1 (F1(A) 3/4 + F1(B) 0) / 2
            "0/3": run([1, 1, 1, 1], gold, gold),           # seed 3: EM 80, macro F1 100
            "0/4": run([0, 0, 0, 0], gold, gold)}           # seed 4 has fold 0 only: left out of the interval
    runs.update({f"1/{seed}": run([0], ["A"], ["A"], prefix="r") for seed in (1, 2, 3)})
    seeds = summarize({"baseline": runs}, CVConfig(folds=2, seeds=[1, 2, 3, 4], bootstrap=200))["variants"][
        "baseline"]["over_seeds"]
    half = 4.303 * 20.0 / np.sqrt(3)  # t(0.975, 2) · s / √3 with s = 20 over the seed means 40, 60, 80
    assert seeds["seeds"] == [1, 2, 3] and seeds["em"] == 60.0
    assert seeds["em_ci95"] == pytest.approx([60 - half, 60 + half], abs=0.01)
    assert seeds["category_macro_f1"] == pytest.approx((200 + 37.5) / 3, abs=0.01)
    assert "over_seeds" not in summarize({"baseline": {"0/1": runs["0/1"]}}, CVConfig(folds=2, seeds=[1]))[
        "variants"]["baseline"]  # one seed: no interval over seeds


def test_the_recorded_epoch_is_the_one_the_selection_kept() -> None:
    def epoch(n: int, f1: float, support_f1: float) -> dict[str, Any]:
        return {"epoch": n, "validation": {"overall": {"f1": f1, "support_f1": support_f1}}}

    history = [epoch(1, 30.0, 40.0), epoch(2, 20.0, 60.0), epoch(3, 30.0, 55.0)]
    assert chosen_epoch(history, TrainConfig(train=[SAMPLE])) == 1  # answer F1; a tie keeps the first
    assert chosen_epoch(history, TrainConfig(train=[SAMPLE], selection="support_f1")) == 2
    assert chosen_epoch(history, TrainConfig(train=[SAMPLE], selection="tasks")) == 3  # mean of F1 and support F1
    assert chosen_epoch([{"epoch": 1}], TrainConfig(train=[SAMPLE])) == 0


def test_run_identity_follows_the_labels_content(tmp_path: Path) -> None:
    labels = tmp_path / "labels.json"
    config = CVConfig(base={"train": [str(SAMPLE)]},
                      variants={"baseline": {}, "joint": {"categories": str(labels)}}, folds=2, seeds=[1])
    joint, baseline = run_config(config, "joint", 0, 1), run_config(config, "baseline", 0, 1)
    absent = run_hash(joint)
    labels.write_text('{"categories": ["A", "B"], "labels": {"q": {"A": 1.0}}}', encoding="utf-8")
    first = run_hash(joint)
    labels.write_text('{"categories": ["A", "B"], "labels": {"q": {"B": 1.0}}}', encoding="utf-8")
    relabelled = run_hash(joint)
    assert len({absent, first, relabelled, run_hash(baseline)}) == 4  # same path, new labels: a new run
    assert run_hash(run_config(config, "joint", 0, 1)) == relabelled
    # the figures keep the runs of the config as it is now: not those on former labels, nor of dropped variants
    records = {"baseline": {"0/1": {"config_hash": run_hash(baseline)}},
               "joint": {"0/1": {"config_hash": first}, "1/1": {"config_hash": run_hash(run_config(config, "joint",
                                                                                                   1, 1))}},
               "gone": {"0/1": {"config_hash": first}}}
    current, stale = current_runs(records, config)
    assert current == {"baseline": records["baseline"], "joint": {"1/1": records["joint"]["1/1"]}}
    assert stale == ["joint 0/1", "gone 0/1"] and "0/1" in records["joint"]  # nothing deleted


def test_masked_runs_of_the_knowledge_ablation_are_never_taken_for_runs(tmp_path: Path) -> None:
    """A run scored with its entities masked keeps its run's hash; another protocol must not copy it as the run."""
    from bench.knowledge_ablation import output_paths

    run = {"config_hash": "abc", "overall": {"em": 20.0}, "questions": {}}
    (tmp_path / "fusion.runs.json").write_text(json.dumps({"cmedbert": {"0/1": run}}))
    name, masked = output_paths(Path("configs/cv/fusion.yaml"), tmp_path)
    assert name == "fusion_knowledge_ablation"
    masked.write_text(json.dumps({"cmedbert": {"0/1": {**run, "overall": {"em": 5.0}}}}))
    assert recorded_elsewhere(tmp_path / "other.runs.json") == {"abc": run}


def test_a_control_of_the_knowledge_ablation_has_its_own_files_and_parsed_settings() -> None:
    from bench.knowledge_ablation import MASKED, output_paths, parse_control

    assert parse_control(None) == MASKED == {"knowledge": False}
    control = parse_control(["entity_boundary_anchor=2", "global_order=evidence"])
    assert control == {"entity_boundary_anchor": 2, "global_order": "evidence"}
    name, path = output_paths(Path("configs/cv/fusion.yaml"), Path("r"), control)
    assert name == "fusion_control_entity_boundary_anchor-2_global_order-evidence"
    assert path == Path("r", f"{name}.masked.json")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_control(["entity_boundary_anchor"])


def test_the_knowledge_ablation_pairs_masked_runs_with_their_own_and_the_reference() -> None:
    """with − without on the masked runs; without − reference on the runs all three have (fold 1 is not masked)."""
    from bench.knowledge_ablation import compare

    fused = {"0/1": _run({"a": 1, "b": 1, "c": 0}), "1/1": _run({"d": 1})}
    masked = {"0/1": _run({"a": 1, "b": 0, "c": 0})}
    reference = {"0/1": _run({"a": 0, "b": 0, "c": 0}), "1/1": _run({"d": 0})}
    config = CVConfig(folds=2, seeds=[1], bootstrap=1000)
    figures = compare(fused, masked, "kg", config, reference=reference)
    assert figures["paired"]["em_diff"] == 33.33 and figures["answers_changed"] == 1
    against = figures["without_vs_reference"]
    assert against["em_diff"] == 33.33 and against["questions"] == 3
    assert against["against"] == "baseline" and figures["questions_scored"] == 3
    assert "without_vs_reference" not in compare(fused, masked, "kg", config)


def test_category_macro_f1_per_variant_and_paired() -> None:
    def run(pairs: dict[str, tuple[list[str], list[str]]]) -> dict:
        return {"questions": {q: {"em": 1.0, "category_acc": float(g == p),
                                  "categories": {"gold": g, "predicted": p}} for q, (g, p) in pairs.items()}}

    gold = {"a": ["A"], "b": ["B"], "c": ["A"], "d": ["B"]}
    joint = {"0/1": run({q: (g, g) for q, g in gold.items()})}          # all right: macro F1 100
    only = {"0/1": run({q: (g, ["A"]) for q, g in gold.items()})}       # always A: F1(A) 2/3, F1(B) 0
    summary = summarize({"baseline": only, "joint": joint, "twin": joint},
                        CVConfig(folds=2, seeds=[1], bootstrap=200, pairs=[("joint", "twin")]))
    assert summary["variants"]["joint"]["category_macro_f1"] == 100.0
    assert summary["variants"]["baseline"]["category_macro_f1"] == pytest.approx(100 / 3, abs=0.01)
    assert summary["variants"]["baseline"]["category_acc"] == 50.0
    paired = summary["paired"]["joint"]
    assert paired["category_macro_f1_diff"] == pytest.approx(200 / 3, abs=0.01)
    low, high = paired["category_macro_f1_ci95"]
    assert low <= paired["category_macro_f1_diff"] <= high
    assert summary["paired"]["joint-vs-twin"]["category_macro_f1_diff"] == 0.0
    assert summary["paired"]["joint-vs-twin"]["against"] == "twin"
    lines = verdicts(summary)  # EM and category macro F1, each with its verdict
    assert any(line.startswith("joint: category macro F1 +66.67") and "vs baseline on 4 questions" in line
               for line in lines)
    assert any(line.startswith("joint: EM +0.00") for line in lines)


def _tiny_config(tiny_encoder: Path, tmp_path: Path) -> CVConfig:
    """Two variants, two folds, one seed on the shipped sample, with a shared intermediate stage."""
    return CVConfig(
        base={"encoder": str(tiny_encoder), "train": [str(SAMPLE)], "epochs": 1, "progress": False,
              "features": {"max_seq_length": 160, "doc_stride": 64}, "split": {"validation_share": 0.3},
              "intermediate": {"data": [str(SAMPLE)], "cache": str(tmp_path / "intermediate")}},
        variants={"baseline": {}, "high_lr": {"lr": 3e-3}}, folds=2, seeds=[1], out=tmp_path / "runs", bootstrap=500)


def test_tiny_cross_validation_tests_every_question_once_and_resumes(tiny_encoder: Path, tmp_path: Path) -> None:
    config = _tiny_config(tiny_encoder, tmp_path)
    records_path = tmp_path / "tiny.runs.json"
    records = run_cv(config, records_path)
    ids = sorted(e.id for e in read_dataset(SAMPLE))
    for variant in ("baseline", "high_lr"):
        tested = [q for run in records[variant].values() for q in run["questions"]]
        assert sorted(tested) == ids  # each question held out exactly once per seed
    assert all("f1" in run["validation"] for runs in records.values() for run in runs.values())
    # one intermediate model per stage setting (high_lr's lr is part of its stage), each served both folds
    assert len(list((tmp_path / "intermediate").glob("*/best/stage.json"))) == 2
    saved = json.loads((tmp_path / "runs/baseline/fold0_seed1/train_config.json").read_text())
    assert saved["split"]["fold"] == 0 and saved["seed"] == 1
    best = json.loads((tmp_path / "runs/baseline/fold0_seed1/best/kgmrc_config.json").read_text())
    assert records["baseline"]["0/1"]["postprocessing"] == {  # the w and τ the test fold was scored with
        "sentence_weight": best["sentence_weight"], "support_threshold": best["support_threshold"]}

    def must_not_train(config):  # every run is recorded: a second invocation trains nothing
        raise AssertionError(f"retrained {config.out}")

    assert run_cv(config, records_path, train=must_not_train) == records
    # another protocol with the same baseline run copies it instead of training it again
    other = config.model_copy(update={"variants": {"baseline": {}}, "run_folds": [0]})
    copied = run_cv(other, tmp_path / "other.runs.json", train=must_not_train)
    assert copied["baseline"]["0/1"] == records["baseline"]["0/1"]
    # a recorded run whose config has changed since is trained again, never reused, and never overwritten: the
    # former run moves to "baseline@HASH" (named, not summarised) and comes back when the config does
    changed = config.model_copy(update={"variants": {"baseline": {"lr": 5e-4}}, "run_folds": [0]})
    with pytest.raises(AssertionError, match="retrained"):
        run_cv(changed, records_path, train=must_not_train)
    former = records["baseline"]["0/1"]
    after = run_cv(changed, records_path)
    new = after["baseline"]["0/1"]
    assert new["config_hash"] != former["config_hash"]
    assert after[f"baseline@{former['config_hash']}"] == {"0/1": former}
    assert current_runs(after, changed)[1] == ["baseline 1/1", "high_lr 0/1", "high_lr 1/1",
                                               f"baseline@{former['config_hash']} 0/1"]
    back = run_cv(config, records_path, train=must_not_train)
    assert back["baseline"]["0/1"] == former and back[f"baseline@{new['config_hash']}"] == {"0/1": new}
    assert f"baseline@{former['config_hash']}" not in back
    summary = summarize(records, config)
    assert summary["variants"]["baseline"]["questions"] == len(ids)
    assert set(summary["paired"]) == {"high_lr"}


def test_a_test_file_replaces_the_folds(tiny_encoder: Path, tmp_path: Path) -> None:
    train, test = sample_passages(read_dataset(SAMPLE), 4, seed=0)
    write_squad(train, tmp_path / "train.json")
    write_squad(test, tmp_path / "test.json")
    tiny = _tiny_config(tiny_encoder, tmp_path)
    config = tiny.model_copy(update={"base": {**tiny.base, "train": [str(tmp_path / "train.json")]},
                                     "test": tmp_path / "test.json"})
    records = run_cv(config, tmp_path / "held_out.runs.json")
    for variant in ("baseline", "high_lr"):  # one run per seed, scored on every question of the test file
        assert list(records[variant]) == ["0/1"]
        assert sorted(records[variant]["0/1"]["questions"]) == sorted(e.id for e in test)
    saved = json.loads((tmp_path / "runs/baseline/fold0_seed1/train_config.json").read_text())
    assert saved["split"]["fold"] is None and saved["test"] == str(tmp_path / "test.json")
    summary = summarize(records, config)
    assert summary["test_file"] == str(tmp_path / "test.json") and "folds" not in summary
    assert summary["paired"]["high_lr"]["questions"] == len(test)


def test_parallel_workers_record_the_same_protocol_and_merge_their_parts(tiny_encoder: Path, tmp_path: Path) -> None:
    config = _tiny_config(tiny_encoder, tmp_path)
    records_path = tmp_path / "par.runs.json"
    records = run_cv(config, records_path, workers=2)
    ids = sorted(e.id for e in read_dataset(SAMPLE))
    for variant in ("baseline", "high_lr"):
        assert sorted(records[variant]) == ["0/1", "1/1"]
        assert sorted(q for run in records[variant].values() for q in run["questions"]) == ids
    assert not list(tmp_path.glob("par.part-*.runs.json"))  # merged into the records, then removed
    assert sorted(p.name for p in (tmp_path / "runs").glob("worker-*.log")) == ["worker-f0-s1.log", "worker-f1-s1.log"]
    # both stage models trained here, before the workers: no two workers write one (they raced on it before)
    assert len(list((tmp_path / "intermediate").glob("*/best/stage.json"))) == 2
    assert not any("intermediate stage: 1 epoch" in log.read_text() for log in (tmp_path / "runs").glob("worker-*.log"))

    def must_not_train(config):
        raise AssertionError(f"retrained {config.out}")

    assert run_cv(config, records_path, train=must_not_train, workers=2) == records  # complete: no worker starts
    # a part left by an interrupted parallel run is merged by the next invocation
    (tmp_path / "par.part-f9-s9.runs.json").write_text(json.dumps({"extra": {"9/9": {"questions": {}}}}))
    assert run_cv(config, records_path, train=must_not_train)["extra"] == {"9/9": {"questions": {}}}


def test_changing_a_default_never_relabels_recorded_runs() -> None:
    """Fingerprints are relative to the recipe frozen in mrc/fingerprint_defaults.json, not to today's defaults."""
    from mrc.train import TrainConfig, fingerprint

    class Later(TrainConfig):  # a later recipe: 6 epochs by default, and a new setting
        epochs: int = 6
        new_setting: int = 3

    frozen = {"support_weight": 0.5}  # the frozen recipe's λ (today's default is 0.25)
    assert fingerprint(Later(epochs=4, model=frozen, sentence_weights=[0.0])) == "{}"  # the frozen recipe's run
    # the recipe changed three times already (4 → 8 epochs, λ 0.5 → 0.25, the sentence weight w tuned)
    assert json.loads(fingerprint(TrainConfig())) == {"model": {"support_weight": 0.25}, "epochs": 8,
                                                      "sentence_weights": [0, 0.5, 1, 2, 3, 4, 6, 8, 12, 16]}
    assert fingerprint(TrainConfig(epochs=4, model=frozen, sentence_weights=[0.0])) == "{}"
    assert json.loads(fingerprint(Later(model=frozen, sentence_weights=[0.0]))) == {"epochs": 6}  # a new run
    assert json.loads(fingerprint(Later(epochs=4, model=frozen, new_setting=5, sentence_weights=[0.0]))) == {
        "new_setting": 5}  # counts when set
    changed = json.loads(fingerprint(TrainConfig(lr=5e-5, model=frozen, features={"max_seq_length": 512},
                                                 sentence_weights=[0.0])))
    assert changed == {"epochs": 8, "features": {"max_seq_length": 512}, "lr": 5e-5}  # nested: only what differs
    # the category head's rate and weight changed once (head_lr → 1e-3, λ_C 1 → 4): they count for runs with the
    # head, and only for them
    former = TrainConfig(epochs=4, categories="c.json", category_lr=None, sentence_weights=[0.0],
                         model={"category_weight": 1.0, **frozen})
    assert fingerprint(former) == '{"categories":"c.json"}'
    assert json.loads(fingerprint(TrainConfig(epochs=4, categories="c.json", model=frozen,
                                              sentence_weights=[0.0]))) == {
        "categories": "c.json", "category_lr": 1e-3, "model": {"category_weight": 4.0}}


def test_the_intermediate_stage_does_not_follow_the_model_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """A medical run's hash does not hold its CMRC 2018 stage, so the stage must not change with the medical model
    or with a model default changed later: runs whose hashes match started from the same stage."""
    from mrc.model import ModelConfig
    from mrc.train import FINGERPRINT_DEFAULTS, TrainConfig, stage_settings

    def stages() -> set[tuple[str, str]]:
        return {(str(stage.out), stage_id) for stage, stage_id in (
            stage_settings(TrainConfig.model_validate({"model": model})) for model in (
                {}, {"question_boundary": True}, {"model_type": "cmedbert", "support_weight": 1.0}))}

    today = stages()
    assert len(today) == 1 and "model" not in json.loads(next(iter(today))[1])
    # a later default, changed as fingerprint_defaults.json says: the setting's first default is frozen there
    monkeypatch.setattr(ModelConfig.model_fields["question_boundary"], "default", True)
    monkeypatch.setitem(FINGERPRINT_DEFAULTS["model"], "question_boundary", False)
    ModelConfig.model_rebuild(force=True)
    try:
        assert ModelConfig().question_boundary and stages() == today
    finally:
        monkeypatch.undo()
        ModelConfig.model_rebuild(force=True)
    assert not ModelConfig().question_boundary


def test_a_family_setting_added_later_never_relabels_recorded_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model family's own settings (model.fusion) are fingerprinted against the family's frozen defaults."""
    from fusion.cmedbert import CMedBERT, FusionConfig
    from mrc.train import TrainConfig, fingerprint

    def run(**fusion: Any) -> str:
        return fingerprint(TrainConfig.model_validate({"model": {"model_type": "cmedbert", "support_weight": 0.5,
                                                                 "fusion": fusion}}))

    recorded = run(loops=1)
    assert json.loads(recorded)["model"] == {"model_type": "cmedbert", "fusion": {"loops": 1}}

    class Later(FusionConfig):  # a later family: a new setting, and the zero-start merge by default
        new_setting: int = 3
        merge_residual: bool = True

    monkeypatch.setattr(CMedBERT, "settings", Later)
    assert run(loops=1, merge_residual=False) == recorded  # the recorded run keeps its identity
    assert json.loads(run(loops=1))["model"]["fusion"] == {"loops": 1, "merge_residual": True}
    assert json.loads(run(loops=1, merge_residual=False, new_setting=5))["model"]["fusion"] == {
        "loops": 1, "new_setting": 5}


def test_power_pools_components_within_folds_and_single_runs_by_hand() -> None:
    from bench.power import pooled_components, single_run_variance

    zeros = {f"{fold}/{seed}": _run({q: 0 for q in qs}) for fold, qs in ((0, "ab"), (1, "cde")) for seed in (1, 2)}
    variant = {"0/1": _run({"a": 1, "b": 0}), "0/2": _run({"a": 1, "b": 1}),
               "1/1": _run({"c": 1, "d": 0, "e": 0}), "1/2": _run({"c": 0, "d": 0, "e": 1})}
    components, fold_runs, seeds, questions = pooled_components(variant, zeros, "em")
    assert (fold_runs, seeds, questions) == (4, 2, 5)
    # fold 0 [[100, 0], [100, 100]]: SS run, item, residual 2500 each on 1 df; fold 1 [[100, 0, 0], [0, 0, 100]]:
    # 0 on 1, 3333.3 on 2, 10000 on 2 → MS_run 1250, MS_item 1944.4, MS_res 4166.7: both components floor at 0
    assert components.residual == pytest.approx(12500 / 3) and components.run == components.item == 0.0
    # within each run, differences about the run's mean: 0/1 ±50, 0/2 0, 1/1 and 1/2 (66.7, −33.3, −33.3);
    # Σ² = 5000 + 2 · 6666.7 over 10 differences − 4 run means
    assert single_run_variance(variant, zeros, "em") == pytest.approx((5000 + 2 * 20000 / 3) / 6)
    assert pooled_components({"0/1": variant["0/1"]}, zeros, "em") is None      # one seed: nothing to estimate


@pytest.mark.parametrize(("shift", "seeds", "decision"), [(60.0, 2, "gain"), (0.0, 2, "futile"),
                                                          (0.0, 3, "not at a look"), (60.0, 1, "not at a look")])
def test_power_reads_the_records_at_the_look_they_reached(shift: float, seeds: int, decision: str) -> None:
    """5 folds × 2 seeds of a variant that gets every question right where the reference gets 40% right (+60 EM)
    or is the reference itself (0): read at the 2-seed look, the gain is claimed or excluded (futile); 3 seeds
    (no such look) and 1 seed (no interval) are not read."""
    import argparse

    from bench.power import read_at_look, sequential
    from kgutil.stats import VarianceComponents

    rng = np.random.default_rng(0)
    reference = {f"{f}/{s}": _run({f"q{f}_{i}": float(rng.random() < 0.4) for i in range(60)})
                 for f in range(5) for s in range(1, seeds + 1)}
    variant = {key: _run({q: 1.0 if shift else v["em"] for q, v in run["questions"].items()})
               for key, run in reference.items()}
    plan = {"effect": 1.5, **sequential(VarianceComponents(run=0.3, item=37.0, residual=507.0),
                                        argparse.Namespace(looks=[2, 4], folds=5, questions=300, effect=1.5),
                                        draws=2000)}
    assert [row["seeds"] for row in plan["looks"]] == [2, 4] and plan["looks"][0]["level"] > 0.99
    assert plan["if_effect"]["claims_gain"] > plan["if_no_difference"]["claims_gain"]
    assert read_at_look(variant, reference, "em", plan, folds=5)["decision"] == decision

