"""K-fold cross-validation by passage with paired comparisons: the protocol for every accuracy figure of record.

Each run trains one variant on one fold with one seed (``train_mrc`` with ``split.fold``); the fold it holds out
chose nothing. Runs go seed-major (seed 1 on every fold first, so each question is held out once before any is
held out twice) and are recorded, with their per-question scores, after each run: an interrupted protocol
resumes from its records. Per question, scores are averaged over the seeds that both sides of a comparison have;
a variant's paired difference to the reference is the mean over questions of those averaged differences, with a
95% percentile-bootstrap CI over questions and, with two or more seeds, two CIs over seeds × questions, which also
hold the variance between training runs: the multi-bootstrap (``kgutil.stats.multi_bootstrap_ci``), the verdict of
record of the rules fixed so far, and the variance-components interval (``kgutil.stats.components_ci``), which
simulation shows calibrated where the multi-bootstrap over-covers (the run × question interaction dominates) or
under-covers (one seed stands out among a few).

With ``workers`` > 1 the (seed, fold) groups run in that many worker processes (``python -m mrc.crossval``, one
GPU shared, or one core each), each recording into its own part file beside the records
(``NAME.part-f{fold}-s{seed}.runs.json``); the parts are merged into the records when the workers end, and at the
start of any later invocation, so an interrupted parallel protocol resumes like a serial one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from kgutil.cli import set_dotted, setup_logging
from kgutil.distributed import setup
from kgutil.io import atomic_write_text
from kgutil.stats import bootstrap_ci, components_ci, heterogeneity, multi_bootstrap_ci, sign_test, t_interval
from mrc.categories import labels_digest, set_metrics
from mrc.train import TrainConfig, fingerprint, intermediate_stage, selection_score, train_mrc

log = logging.getLogger(__name__)

SCORES = ("em", "f1", "support_em", "support_f1", "category_acc")


class CVConfig(BaseModel):
    """The protocol: a base training config, named variants (dotted overrides), folds and seeds."""

    model_config = ConfigDict(extra="forbid")

    base: dict[str, Any] = Field(default_factory=dict, description="a TrainConfig mapping shared by every run")
    variants: dict[str, dict[str, Any]] = Field(default_factory=lambda: {"baseline": {}},
                                                description="name → dotted overrides of the base config")
    reference: str = Field("baseline", description="the variant every other one is paired with")
    pairs: list[tuple[str, str]] = Field(default_factory=list, description="further comparisons (variant, against), "
                                                                          "reported as 'variant-vs-against'")
    folds: int = Field(5, ge=2)
    test: Path | None = Field(None, description="a test file instead of cross-validation: every run trains on "
                                                "base.train (less its validation share) and is scored on this file; "
                                                "recorded as fold 0, folds and run_folds unused")
    run_folds: list[int] | None = Field(None, description="only these folds (screening: [0]); None: all")
    seeds: list[int] = Field(default_factory=lambda: [1, 2, 3])
    out: Path = Field(Path("runs/cv"), description="run directories")
    bootstrap: int = Field(10_000, ge=100)


def run_config(config: CVConfig, variant: str, fold: int, seed: int) -> TrainConfig:
    """The validated training config of one run."""
    data = json.loads(json.dumps(config.base, default=str))
    for key, value in config.variants[variant].items():
        set_dotted(data, key, value)
    if config.test is not None:
        data["test"] = str(config.test)
    else:
        set_dotted(data, "split.folds", config.folds)
        set_dotted(data, "split.fold", fold)
    data.update(seed=seed, out=str(config.out / variant / f"fold{fold}_seed{seed}"))
    return TrainConfig.model_validate(data)


def run_folds(config: CVConfig) -> list[int]:
    """The folds to run: ``run_folds``, else all of them; [0] with a test file."""
    if config.test is not None:
        return [0]
    return config.run_folds if config.run_folds is not None else list(range(config.folds))


def run_hash(run: TrainConfig) -> str:
    """Identity of a run's result: its training config except where it writes (``mrc.train.fingerprint``), and
    the category labels it trains on (``mrc.categories.labels_digest``: labels are this project's artifact, so
    relabelled answers at the same path are a new run; the datasets themselves are fixed inputs, named by their
    paths)."""
    identity = fingerprint(run, {"out", "progress"})
    if run.categories is not None:  # absent labels match no recorded run (and training says the file is missing)
        identity += "|labels:" + (labels_digest(run.categories) if run.categories.is_file() else "absent")
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def recorded_elsewhere(records_path: Path) -> dict[str, dict[str, Any]]:
    """Runs recorded by other protocols beside ``records_path`` (``*.runs.json``), by run hash: a baseline
    trained for one protocol serves every protocol whose run is the same."""
    found: dict[str, dict[str, Any]] = {}
    for other in sorted(records_path.parent.glob("*.runs.json")):
        if other != records_path:
            found.update(by_hash(json.loads(other.read_text(encoding="utf-8"))))
    return found


def by_hash(records: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every run of ``records`` (any label, superseded ones included) by its run hash."""
    return {r["config_hash"]: r for runs in records.values() for r in runs.values() if "config_hash" in r}


def store(records: dict[str, Any], variant: str, key: str, run: dict[str, Any]) -> None:
    """Record ``run`` as ``variant``'s run ``key`` ("fold/seed"). A run recorded there under another run hash (a
    former config, e.g. other epochs) moves to the label ``variant@HASH`` — named, not summarised, and found again
    by its hash when the config returns to it — so no recorded run is ever overwritten."""
    former = records.get(variant, {}).get(key)
    if former is not None and former.get("config_hash") != run.get("config_hash"):
        records.setdefault(f"{variant}@{former.get('config_hash', 'unhashed')}", {})[key] = former
    records.setdefault(variant, {})[key] = run
    returning = f"{variant}@{run.get('config_hash')}"
    if records.get(returning, {}).pop(key, None) is not None and not records[returning]:
        del records[returning]


def run_cv(config: CVConfig, records_path: Path, train: Callable[[TrainConfig], Any] = train_mrc,
           workers: int = 1) -> dict[str, Any]:
    """Train every missing (seed, fold, variant) run, recording after each; returns the records. A run already
    recorded with the same training config (by another protocol, or here under a former config) is copied, not
    retrained; a recorded run whose config has changed since is trained again, the former run kept (``store``).
    ``workers`` > 1 runs the (seed, fold) groups in worker processes."""
    merge_parts(records_path)
    if workers > 1:
        _run_workers(config, records_path, workers)
    records = json.loads(records_path.read_text(encoding="utf-8")) if records_path.exists() else {}
    elsewhere = recorded_elsewhere(records_path) if records_path.parent.exists() else {}
    add_hashes(records, config, elsewhere)
    folds = run_folds(config)
    order = [(seed, fold, variant) for seed in config.seeds for fold in folds for variant in config.variants]
    for n, (seed, fold, variant) in enumerate(order, 1):
        key = f"{fold}/{seed}"
        run = run_config(config, variant, fold, seed)
        digest = run_hash(run)
        if _is_recorded(records, variant, fold, seed, digest):
            continue
        if key in records.get(variant, {}):
            log.warning("%s, fold %d, seed %d: its config changed since it was recorded; the former run stays "
                        "recorded as %s@%s", variant, fold, seed, variant, records[variant][key].get("config_hash"))
        found = by_hash(records).get(digest) or elsewhere.get(digest)
        if found is not None:
            log.info("cross-validation run %d/%d: %s, fold %d, seed %d recorded before (this or another protocol)",
                     n, len(order), variant, fold, seed)
            store(records, variant, key, found)
            atomic_write_text(records_path, json.dumps(records, ensure_ascii=False))
            continue
        log.info("cross-validation run %d/%d: %s, fold %d, seed %d", n, len(order), variant, fold, seed)
        result = train(run)
        test = result.test_metrics
        store(records, variant, key, {
            "config_hash": digest, "overall": test["overall"], "questions": test["questions"],
            "validation": _validation_figures(result.best_metrics),
            "epochs_chosen": chosen_epoch(result.history, run),
            "postprocessing": {k: test[k] for k in ("sentence_weight", "support_threshold")},
            "train_seconds": round(sum(h["seconds"] for h in result.history), 1)})
        atomic_write_text(records_path, json.dumps(records, ensure_ascii=False))
    return records


def _is_recorded(records: dict[str, Any], variant: str, fold: int, seed: int, digest: str) -> bool:
    """Whether ``records`` hold this run trained with the config whose run hash is ``digest``."""
    return records.get(variant, {}).get(f"{fold}/{seed}", {}).get("config_hash") == digest


def _part_path(records_path: Path, fold: int, seed: int) -> Path:
    return records_path.with_name(records_path.name.replace(".runs.json", f".part-f{fold}-s{seed}.runs.json"))


def merge_parts(records_path: Path) -> None:
    """Fold the workers' part files into the records (atomically), then remove them."""
    parts = sorted(records_path.parent.glob(records_path.name.replace(".runs.json", ".part-*.runs.json")))
    if not parts:
        return
    records = json.loads(records_path.read_text(encoding="utf-8")) if records_path.exists() else {}
    for part in parts:
        for variant, runs in json.loads(part.read_text(encoding="utf-8")).items():
            for key, run in runs.items():
                store(records, variant, key, run)
    atomic_write_text(records_path, json.dumps(records, ensure_ascii=False))
    for part in parts:
        part.unlink()
    log.info("merged %d worker part(s) into %s", len(parts), records_path)


def _run_workers(config: CVConfig, records_path: Path, workers: int) -> None:
    """The (seed, fold) groups in ``workers`` processes, after the variants' intermediate models are trained here
    (so no two workers train one). Each worker gets an equal share of the CPU threads; its log is
    ``OUT/worker-f{fold}-s{seed}.log``. Raises when a worker fails, after merging what the others recorded."""
    folds = run_folds(config)
    records = json.loads(records_path.read_text(encoding="utf-8")) if records_path.exists() else {}
    groups = [(seed, fold) for seed in config.seeds for fold in folds
              if not all(_is_recorded(records, v, fold, seed, run_hash(run_config(config, v, fold, seed)))
                         for v in config.variants)]
    if not groups:
        return
    seed, fold = groups[0]
    runs = [run_config(config, variant, fold, seed) for variant in config.variants]
    ctx = setup(runs[0].device)
    for run in runs:  # each distinct stage (variants may differ in it, e.g. in lr) once, here; workers reuse them
        intermediate_stage(run, ctx)
    config.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // workers)),
           "TOKENIZERS_PARALLELISM": "false"}

    def work(group: tuple[int, int]) -> tuple[tuple[int, int], int]:
        seed, fold = group
        spec = config.model_copy(update={"run_folds": [fold], "seeds": [seed]}).model_dump_json()
        with open(config.out / f"worker-f{fold}-s{seed}.log", "w", encoding="utf-8") as out:
            done = subprocess.run([sys.executable, "-m", "mrc.crossval", str(_part_path(records_path, fold, seed))],
                                  input=spec, text=True, stdout=out, stderr=subprocess.STDOUT, env=env)
        return group, done.returncode

    log.info("cross-validation: %d (seed, fold) groups in %d worker processes", len(groups), workers)
    with ThreadPoolExecutor(workers) as pool:
        failed = [group for group, code in pool.map(work, groups) if code != 0]
    merge_parts(records_path)
    if failed:
        raise RuntimeError("cross-validation workers failed for (seed, fold) " + ", ".join(map(str, failed)) +
                           f"; see {config.out}/worker-f*-s*.log (a second invocation resumes)")


def _validation_figures(best: dict[str, Any]) -> dict[str, float]:
    """The chosen epoch's validation figures (what selection may look at)."""
    figures = dict(best.get("overall", {}))
    if "categories" in best:
        figures["category_macro_f1"] = best["categories"]["macro_f1"]
    return figures


def add_hashes(records: dict[str, Any], config: CVConfig, elsewhere: dict[str, dict[str, Any]] | None = None
               ) -> None:
    """Give records made before run hashes (or validation figures) were recorded the hash of the run ``config``
    describes (and the validation figures its run directory kept, or that another protocol recorded for the
    same run: ``elsewhere``, by run hash)."""
    elsewhere = elsewhere or {}
    for variant, runs in records.items():
        for key, run in runs.items():
            if variant not in config.variants:
                continue
            fold, seed = map(int, key.split("/"))
            train_config = run_config(config, variant, fold, seed)
            if "config_hash" not in run:
                run["config_hash"] = run_hash(train_config)
            metrics = train_config.out / "metrics.json"
            if "validation" not in run and metrics.exists():
                run["validation"] = _validation_figures(json.loads(metrics.read_text(encoding="utf-8"))["best"])
            elif "validation" not in run and "validation" in elsewhere.get(run["config_hash"], {}):
                run["validation"] = elsewhere[run["config_hash"]]["validation"]


def current_runs(records: dict[str, Any], config: CVConfig) -> tuple[dict[str, Any], list[str]]:
    """The recorded runs of ``config``'s variants whose run hash is that of the run ``config`` describes now (the
    figures of record), and the names of the others ("variant fold/seed"): trained under a former config or on
    former labels, or of a variant the config no longer has. Nothing is deleted from the records."""
    current: dict[str, Any] = {}
    stale: list[str] = []
    for variant, runs in records.items():
        for key, run in runs.items():
            fold, seed = map(int, key.split("/"))
            if variant in config.variants and run.get("config_hash") == run_hash(run_config(config, variant, fold,
                                                                                               seed)):
                current.setdefault(variant, {})[key] = run
            else:
                stale.append(f"{variant} {key}")
    return current, stale


def per_question(runs: dict[str, Any], keys: set[str] | None = None) -> dict[str, dict[str, float]]:
    """question id → score → mean over the runs (``fold/seed`` keys) given (numeric scores only)."""
    sums: dict[str, dict[str, list[float]]] = {}
    for key, run in runs.items():
        if keys is not None and key not in keys:
            continue
        for qid, scores in run["questions"].items():
            for name, value in scores.items():
                if isinstance(value, (int, float)):
                    sums.setdefault(qid, {}).setdefault(name, []).append(value)
    return {qid: {k: float(np.mean(v)) for k, v in s.items()} for qid, s in sums.items()}


CategorySets = dict[int, dict[str, tuple[set[str], set[str]]]]


def _category_sets(runs: dict[str, Any], keys: set[str] | None = None) -> CategorySets:
    """seed → question id → (gold set, predicted set) of answer categories."""
    by_seed: CategorySets = {}
    for key, run in runs.items():
        if keys is None or key in keys:
            for qid, scores in run["questions"].items():
                if "categories" in scores:
                    by_seed.setdefault(int(key.split("/")[1]), {})[qid] = (
                        set(scores["categories"]["gold"]), set(scores["categories"]["predicted"]))
    return by_seed


def _macro_f1(by_seed: CategorySets, ids: Any) -> float:
    """Category macro F1 (×100) over ``ids`` (with repeats), computed per seed and averaged over seeds."""
    values = []
    for sets in by_seed.values():
        pairs = [sets[q] for q in ids if q in sets]
        names = sorted({c for g, p in pairs for c in g | p})
        values.append(set_metrics(pairs, names)["macro_f1"])
    return float(np.mean(values))


def macro_f1_ci(mine: CategorySets, theirs: CategorySets | None = None, rounds: int = 2000, seed: int = 0
                ) -> tuple[float, tuple[float, float]]:
    """Category macro F1 of ``mine`` (or its difference to ``theirs`` on the questions both have) with a 95%
    percentile-bootstrap CI over questions."""
    ids = sorted({q for sets in mine.values() for q in sets})
    if theirs is not None:
        ids = sorted(set(ids) & {q for sets in theirs.values() for q in sets})
    stat = (lambda sample: _macro_f1(mine, sample)) if theirs is None else (
        lambda sample: _macro_f1(mine, sample) - _macro_f1(theirs, sample))
    rng = np.random.default_rng(seed)
    draws = [stat([ids[i] for i in rng.integers(0, len(ids), len(ids))]) for _ in range(rounds)]
    low, high = np.percentile(draws, [2.5, 97.5])
    return stat(ids), (float(low), float(high))


def complete_seeds(runs: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """seed → its runs (``fold/seed`` keys), for the seeds with a run on every fold that ``runs`` hold (a seed
    part-way through would be scored on other questions)."""
    by_seed: dict[int, dict[str, Any]] = {}
    for key, run in runs.items():
        by_seed.setdefault(int(key.split("/")[1]), {})[key] = run
    folds = {key.split("/")[0] for key in runs}
    return {seed: r for seed, r in sorted(by_seed.items()) if {key.split("/")[0] for key in r} == folds}


def over_seeds(runs: dict[str, Any]) -> dict[str, Any]:
    """Per score, the mean over seeds of each seed's mean (×100) with its 95% Student-t interval over seeds (the
    seeds are the independent replicates: t = 4.303 for 3 seeds). Only the ``complete_seeds`` count; empty for
    fewer than two."""
    by_seed = complete_seeds(runs)
    if len(by_seed) < 2:
        return {}
    figures: dict[str, Any] = {"seeds": sorted(by_seed)}
    for score in SCORES:
        means = [[s[score] for s in per_question(seed_runs).values() if score in s] for seed_runs in by_seed.values()]
        if all(means):
            values = np.array([np.mean(m) for m in means]) * 100
            figures[score] = round(float(values.mean()), 2)
            figures[f"{score}_ci95"] = [round(x, 2) for x in t_interval(values)]
    sets = _category_sets({key: run for seed_runs in by_seed.values() for key, run in seed_runs.items()})
    if len(sets) == len(by_seed):
        values = np.array([_macro_f1({seed: s}, list(s)) for seed, s in sets.items()])
        figures["category_macro_f1"] = round(float(values.mean()), 2)
        figures["category_macro_f1_ci95"] = [round(x, 2) for x in t_interval(values)]
    return figures


def summarize(records: dict[str, Any], config: CVConfig) -> dict[str, Any]:
    """Figures of record: per variant the mean scores (×100) with 95% bootstrap CIs over questions, with several
    seeds also over seeds (``over_seeds``), and the mean validation F1 of its chosen epochs; per variant the paired
    difference to the reference on the questions and seeds both have, with its 95% CI; the best variant by
    validation F1 (None until every variant has validation figures)."""
    variants: dict[str, Any] = {}
    for name, runs in records.items():
        per_q = per_question(runs)
        figures: dict[str, Any] = {"questions": len(per_q), "runs": len(runs)}
        for score in SCORES:
            values = np.array([s[score] for s in per_q.values() if score in s]) * 100
            if len(values):
                figures[score] = round(float(values.mean()), 2)
                figures[f"{score}_ci95"] = [round(x, 2) for x in bootstrap_ci(values, config.bootstrap)]
        if sets := _category_sets(runs):
            value, ci = macro_f1_ci(sets)
            figures["category_macro_f1"], figures["category_macro_f1_ci95"] = round(value, 2), [round(x, 2) for x in ci]
        if seeds := over_seeds(runs):
            figures["over_seeds"] = seeds
        validation = [run["validation"]["f1"] for run in runs.values() if "f1" in run.get("validation", {})]
        if len(validation) == len(runs):
            figures["validation_f1"] = round(float(np.mean(validation)), 2)
        variants[name] = figures
    comparisons = [(name, config.reference, name) for name in records if name != config.reference]
    comparisons += [(a, b, f"{a}-vs-{b}") for a, b in config.pairs if a in records and b in records]
    paired: dict[str, Any] = {}
    for name, against, key in comparisons:
        if entry := paired_difference(records[name], records.get(against, {}), config.bootstrap):
            paired[key] = {**entry, "against": against}
    # the best variant is chosen on validation (the test folds chose nothing), by answer F1
    chosen = [v for v in variants if "validation_f1" in variants[v]]
    best = max(chosen, key=lambda v: variants[v]["validation_f1"]) if chosen and len(chosen) == len(variants) else None
    protocol = {"test_file": str(config.test)} if config.test is not None else {"folds": config.folds}
    return {**protocol, "seeds": config.seeds, "variants": variants, "paired": paired,
            "best_variant": best, "best_variant_by": "validation_f1"}


def chosen_epoch(history: list[dict[str, Any]], config: TrainConfig) -> int:
    """The epoch training kept: the first with the best validation figure under ``config.selection`` (0 when no
    epoch was validated)."""
    validated = [h for h in history if "validation" in h]
    return max(validated, key=lambda h: selection_score(h["validation"], config))["epoch"] if validated else 0


def seed_difference_blocks(runs: dict[str, Any], reference: dict[str, Any]) -> dict[str, list[np.ndarray]]:
    """Differences (×100) of ``runs`` to ``reference`` per score, one block [S, n_f] per fold: rows the complete
    seeds both have (a run on every fold), columns the fold's questions every one of them scores on both sides, in
    question order. Only scores with such a question; empty with fewer than two such seeds."""
    common = set(runs) & set(reference)
    seeds = sorted(complete_seeds({key: runs[key] for key in common}))
    if len(seeds) < 2:
        return {}
    blocks: dict[str, list[np.ndarray]] = {}
    for fold in sorted({key.split("/")[0] for key in common}, key=int):
        per_seed = [(per_question(runs, {f"{fold}/{seed}"}), per_question(reference, {f"{fold}/{seed}"}))
                    for seed in seeds]
        for score in SCORES:
            shared = sorted(q for q in per_seed[0][0]
                            if all(score in a.get(q, {}) and score in b.get(q, {}) for a, b in per_seed))
            if shared:
                blocks.setdefault(score, []).append(
                    np.array([[a[q][score] - b[q][score] for q in shared] for a, b in per_seed]) * 100)
    return blocks


def paired_difference(runs: dict[str, Any], reference: dict[str, Any], rounds: int) -> dict[str, Any] | None:
    """Mean paired differences (×100) of ``runs`` to ``reference`` over the questions and runs both have, with
    95% bootstrap CIs over questions of the seed-averaged differences (``SCORE_ci95``), their exact sign test
    (``SCORE_sign_test``: questions better, worse, p — the check where few questions change) and, with two or more
    complete seeds in common, CIs over seeds × questions — multi-bootstrap (``SCORE_ci95_seeds``) and variance
    components (``SCORE_ci95_components``) — which also hold the variance between training runs that the first
    leave out; with two or more folds in common, the same per fold and a test that the folds agree (``per_fold``,
    ``fold_heterogeneity``: ``fold_differences``). None when they share no question."""
    common = set(runs) & set(reference)
    mine, theirs = per_question(runs, common), per_question(reference, common)
    ids = sorted(set(mine) & set(theirs))
    if not ids:
        return None
    entry: dict[str, Any] = {"questions": len(ids), "runs": len(common)}
    seed_blocks = seed_difference_blocks(runs, reference)
    for score in SCORES:
        if len(diffs := _differences(mine, theirs, score)):
            low, high = bootstrap_ci(diffs, rounds)
            entry[f"{score}_diff"] = round(float(diffs.mean()), 2)
            entry[f"{score}_ci95"] = [round(low, 2), round(high, 2)]
            entry[f"{score}_sign_test"] = sign_test(diffs)
        if blocks := seed_blocks.get(score):
            matrix = np.concatenate(blocks, axis=1)   # seeds × every question, for the multi-bootstrap
            entry[f"{score}_ci95_seeds"] = [round(x, 2) for x in multi_bootstrap_ci(matrix, rounds)]
            if all(block.shape[1] >= 2 for block in blocks):   # the ANOVA needs two questions in every fold
                entry[f"{score}_ci95_components"] = [round(x, 2) for x in components_ci(blocks)]
    if (sets := _category_sets(runs, common)) and (ref_sets := _category_sets(reference, common)):
        value, ci = macro_f1_ci(sets, ref_sets)
        entry["category_macro_f1_diff"] = round(value, 2)
        entry["category_macro_f1_ci95"] = [round(x, 2) for x in ci]
    for key in ("em_ci95", "em_ci95_seeds", "em_ci95_components"):
        if key in entry:
            entry[key.replace("ci95", "ci_excludes_zero")] = entry[key][0] > 0 or entry[key][1] < 0
    per_fold, fold_tests = fold_differences(runs, reference, rounds)
    if per_fold:
        entry["per_fold"], entry["fold_heterogeneity"] = per_fold, fold_tests
    return entry


def _differences(mine: dict[str, dict[str, float]], theirs: dict[str, dict[str, float]], score: str) -> np.ndarray:
    """mine − theirs (×100) of ``score`` per question both score, in question-id order."""
    return np.array([mine[q][score] - theirs[q][score] for q in sorted(set(mine) & set(theirs))
                     if score in mine[q] and score in theirs[q]]) * 100


def fold_differences(runs: dict[str, Any], reference: dict[str, Any], rounds: int
                     ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, float]]]:
    """fold → the paired differences (×100) on that fold's questions alone, seed-averaged as in
    ``paired_difference`` (per score its mean and 95% bootstrap CI over the fold's questions); and per score
    Cochran's Q test that every fold shares one difference (``kgutil.stats.heterogeneity``: χ² and permutation p
    over ``rounds`` shuffles; a small p: the folds differ by more than their questions explain — by their data or,
    with one seed, by their runs' luck). Whether the folds agree, or one carries the pooled figure. Both empty when
    the two sides share fewer than two folds."""
    common = set(runs) & set(reference)
    folds = sorted({key.split("/")[0] for key in common}, key=int)
    if len(folds) < 2:
        return {}, {}
    per_fold: dict[str, dict[str, Any]] = {}
    groups: dict[str, list[np.ndarray]] = {}
    for fold in folds:
        keys = {key for key in common if key.split("/")[0] == fold}
        mine, theirs = per_question(runs, keys), per_question(reference, keys)
        entry: dict[str, Any] = {"questions": len(set(mine) & set(theirs)), "runs": len(keys)}
        for score in SCORES:
            if len(diffs := _differences(mine, theirs, score)):
                entry[f"{score}_diff"] = round(float(diffs.mean()), 2)
                entry[f"{score}_ci95"] = [round(x, 2) for x in bootstrap_ci(diffs, rounds)]
                groups.setdefault(score, []).append(diffs)
        per_fold[fold] = entry
    tests = {score: test for score, fold_diffs in groups.items()
             if len(fold_diffs) == len(folds) and (test := heterogeneity(fold_diffs, rounds))}
    return per_fold, tests


if __name__ == "__main__":  # a worker of run_cv(workers > 1): the CVConfig JSON on stdin, the part file as argument
    setup_logging()
    run_cv(CVConfig.model_validate_json(sys.stdin.read()), Path(sys.argv[1]))
