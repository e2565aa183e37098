"""Hyper-parameter search for KG embeddings through PyKEEN's HPO (``pykeen.hpo.hpo_pipeline``, optuna TPE).

``tune_embeddings(config)`` searches the ranges of ``config.space`` (a component it leaves out keeps the ``fixed``
settings, see ``fixed_kwargs``) for ``config.fixed.model`` on the fixed split
of ``kg.embeddings.split_snapshot``. Each trial trains with Adam and PyKEEN's early stopper, which scores a seeded
sample of ``valid_max_triples`` validation triples every ``stop_frequency`` epochs, stops after ``patience``
evaluations without improvement and restores the best epoch's weights; the trial's value is the filtered
(realistic, both-sided) MRR on that sample. The test split is never read. The study lives in ``OUT/study.db``
(SQLite), so a second invocation resumes it; PyKEEN draws each trial's training seed (recorded). Written
atomically:

- ``OUT/trials.json``: every trial (value, Hits@10, parameters, best epoch) and the relation-conditional
  popularity baseline on the same validation triples;
- ``OUT/best.yaml``: the best trial as a ``train_kg_embeddings.py`` config (epochs = its best epoch), which
  trains and exports the vectors and scores them on the test split.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pykeen.hpo import hpo_pipeline

from kg.embeddings.pipeline import (EmbeddingConfig, eval_slice_size, loss_kwargs, model_kwargs, split_snapshot,
                                   training_factory, training_paths)
from kg.embeddings.popularity import popularity_metrics, sample_triples
from kg.embeddings.ptranse import PTransETrainingLoop
from kg.snapshot import Snapshot
from kgutil.device import resolve_device
from kgutil.io import atomic_write_text

log = logging.getLogger(__name__)

METRIC = "both.realistic.inverse_harmonic_mean_rank"
# PyKEEN's trial parameter → the EmbeddingConfig field it sets
PARAMETERS = {"model.embedding_dim": "dim", "model.relation_dim": "relation_dim", "optimizer.lr": "lr", "negative_sampler.num_negs_per_pos":
              "num_negs_per_pos", "loss.margin": "margin", "loss.adversarial_temperature": "adversarial_temperature"}


def default_space() -> dict[str, dict[str, dict[str, Any]]]:
    """Ranges in PyKEEN's format, per component (loss ranges: PyKEEN's defaults for the chosen loss)."""
    return {"model": {"embedding_dim": {"type": "int", "low": 32, "high": 256, "q": 32}},
            "optimizer": {"lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True}},
            "negative_sampler": {"num_negs_per_pos": {"type": "int", "low": 1, "high": 32, "log": True}},
            "loss": {}}


class TuneConfig(BaseModel):
    """``scripts/tune_kg_embeddings.py`` settings."""

    model_config = ConfigDict(extra="forbid")

    kg: Path = Field(description="snapshot directory (from build_kg.py)")
    out: Path = Field(description="study directory")
    fixed: dict[str, Any] = Field(default_factory=dict, description="EmbeddingConfig settings every trial shares "
                                  "(model, loss, norm, batch_size, seed, split, path settings, …)")
    space: dict[str, dict[str, dict[str, Any]]] = Field(
        default_factory=default_space,
        description="ranges per component (PyKEEN's format); a component left out is fixed at the `fixed` settings")
    trials: int = Field(20, ge=1, description="trials of the study in all (a resumed study runs the rest)")
    max_epochs: int = Field(100, ge=1)
    valid_max_triples: int | None = Field(2000, ge=1, description="validation triples scored (seeded sample)")
    stop_frequency: int = Field(5, ge=1, description="epochs between early-stopping evaluations")
    patience: int = Field(2, ge=1, description="evaluations without improvement before a trial stops")
    relative_delta: float = Field(0.01, ge=0, description="smallest relative MRR gain that counts")

    @model_validator(mode="after")
    def _known(self) -> "TuneConfig":
        if self.embedding_config().training_loop == "lcwa" and "negative_sampler" in self.space:
            if "space" in self.model_fields_set:
                raise ValueError("space: training_loop lcwa samples no negatives; leave negative_sampler out")
            self.space = {c: r for c, r in self.space.items() if c != "negative_sampler"}  # the default space
        unknown = sorted({f"{c}.{n}" for c, ranges in self.space.items() for n in ranges} - set(PARAMETERS))
        if unknown or set(self.space) - {"model", "optimizer", "negative_sampler", "loss"}:
            raise ValueError(f"space: cannot search {unknown or sorted(self.space)}; searchable: "
                             f"{', '.join(PARAMETERS)}")
        return self

    def embedding_config(self, **params: Any) -> EmbeddingConfig:
        return EmbeddingConfig.model_validate({**self.fixed, **params, "kg": self.kg, "out": self.out / "best"})


def fixed_kwargs(base: EmbeddingConfig, model: dict[str, Any], space: dict[str, dict[str, dict[str, Any]]]
                 ) -> dict[str, dict[str, Any]]:
    """The settings PyKEEN must not search, per component: a component left out of ``space`` is fixed at the
    ``fixed`` settings (dimension, margin, lr, negatives); a component in ``space`` (even ``{}``) is searched over
    PyKEEN's default ranges for it, updated by the given ones. Structural model settings (norm, paths) are fixed
    always."""
    searchable = {"embedding_dim", "relation_dim"}
    structural = {k: v for k, v in model.items() if k not in searchable}
    fixed = {"model": {**model, "embedding_dim": base.dim},
             "loss": loss_kwargs(base), "optimizer": {"lr": base.lr},
             "negative_sampler": {"num_negs_per_pos": base.num_negs_per_pos}}
    if "model" in space and base.relation_dim is not None and "relation_dim" in model \
            and "relation_dim" not in space["model"]:
        structural["relation_dim"] = base.relation_dim
    return {component: (structural if component == "model" else {}) if component in space else kwargs
            for component, kwargs in fixed.items()}


def _completed(study: optuna.Study) -> int:
    return sum(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL) for t in study.trials)


def best_epoch(trial: optuna.trial.FrozenTrial, config: TuneConfig) -> int:
    """The epoch whose weights the early stopper kept: the stop came ``patience`` evaluations after it."""
    stopped = trial.user_attrs.get("stopped_epoch")
    return config.max_epochs if stopped is None else max(1, int(stopped) - config.patience * config.stop_frequency)


def tune_embeddings(config: TuneConfig) -> dict[str, Any]:
    """Run (or resume) the study; returns the summary written to ``OUT/trials.json``."""
    base = config.embedding_config()
    snapshot = Snapshot.load(config.kg)
    train, valid, test = split_snapshot(snapshot, base.split, base.seed)
    sample = sample_triples(valid.mapped_triples.numpy(), config.valid_max_triples, base.seed)
    scored = valid.clone_and_exchange_triples(mapped_triples=valid.mapped_triples.new_tensor(sample))
    known = np.concatenate([f.mapped_triples.numpy() for f in (train, valid, test)])
    popularity = popularity_metrics(train.mapped_triples.numpy(), known, sample, snapshot.num_entities,
                                    snapshot.num_relations, max_triples=None, seed=base.seed)
    paths, _, _ = training_paths(base, train, snapshot)
    fixed = fixed_kwargs(base, model_kwargs(base, paths), config.space)
    slice_size = eval_slice_size(base, snapshot.num_entities)
    config.out.mkdir(parents=True, exist_ok=True)
    study_name = "kgmrc"
    storage = f"sqlite:///{(config.out / 'study.db').resolve()}"
    study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize", load_if_exists=True)
    remaining = config.trials - _completed(study)
    log.info("%s on %s: %d trials to run (%d recorded); validation sample %d triples, popularity MRR %.4f",
             base.model, snapshot.path, max(0, remaining), _completed(study), len(sample), popularity["mrr"])
    if remaining > 0:
        if base.training_loop == "lcwa":  # 1-N scoring: no negatives to sample (or search)
            loop: dict[str, Any] = {"training_loop": "lcwa"}
        else:
            loop = {"training_loop": PTransETrainingLoop if base.model == "ptranse" else "slcwa",
                    "negative_sampler": "basic", "negative_sampler_kwargs": fixed["negative_sampler"],
                    "negative_sampler_kwargs_ranges": config.space.get("negative_sampler")}
        hpo_pipeline(
            training=training_factory(base, train), validation=scored, testing=scored,
            model=base.model, model_kwargs=fixed["model"], model_kwargs_ranges=config.space.get("model"),
            loss=base.loss, loss_kwargs=fixed["loss"], loss_kwargs_ranges=config.space.get("loss") or None,
            optimizer="adam", optimizer_kwargs=fixed["optimizer"],
            optimizer_kwargs_ranges=config.space.get("optimizer"),
            **loop,
            training_kwargs={"num_epochs": config.max_epochs, "batch_size": base.batch_size, "use_tqdm": False,
                             "label_smoothing": base.label_smoothing},
            stopper="early", stopper_kwargs={"frequency": config.stop_frequency, "patience": config.patience,
                                             "relative_delta": config.relative_delta, "metric": METRIC,
                                             "evaluation_batch_size": base.eval_batch_size,
                                             "evaluation_slice_size": slice_size},
            evaluation_kwargs={"batch_size": base.eval_batch_size, "slice_size": slice_size, "use_tqdm": False,
                               "additional_filter_triples": [valid.mapped_triples, test.mapped_triples]},
            # the stopper re-reads its batch and slice sizes from the evaluator after its first evaluation
            evaluator_kwargs={"filtered": True, "batch_size": base.eval_batch_size, "slice_size": slice_size},
            metric=METRIC, device=resolve_device(base.device),
            storage=storage, study_name=study_name, load_if_exists=True,
            sampler="tpe", sampler_kwargs={"seed": base.seed}, n_trials=remaining)
        study = optuna.load_study(study_name=study_name, storage=storage)
    return write_summary(study, config, popularity)


def write_summary(study: optuna.Study, config: TuneConfig, popularity: dict[str, float]) -> dict[str, Any]:
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]  # pruned: stopped unfinished
    trials = [{"number": t.number, "state": t.state.name, "mrr": t.value,
               "hits@10": t.user_attrs.get("both.realistic.hits_at_10"),
               "params": {PARAMETERS.get(k, k): v for k, v in t.params.items()},
               "best_epoch": best_epoch(t, config) if t.state == optuna.trial.TrialState.COMPLETE else None,
               "training_seed": t.user_attrs.get("random_seed")}
              for t in study.trials]
    summary: dict[str, Any] = {"model": config.embedding_config().model, "validation_triples":
                               config.valid_max_triples, "popularity": popularity, "trials": trials}
    if done:
        best = max(done, key=lambda t: t.value)
        params = {PARAMETERS[k]: v for k, v in best.params.items() if k in PARAMETERS}
        if len(params) < len(best.params):  # PyKEEN's default ranges of a model may search more
            log.warning("best.yaml leaves out %s (no EmbeddingConfig field)", sorted(set(best.params) - set(PARAMETERS)))
        chosen = config.embedding_config(**params, epochs=best_epoch(best, config))
        settings = {"model": chosen.model, **chosen.model_dump(mode="json", exclude={"kg", "out", "model"},
                                                               exclude_defaults=True)}
        summary["best"] = {"trial": best.number, "mrr": best.value, "settings": settings}
        header = (f"# best of {len(done)} trials by validation MRR {best.value:.4f} (popularity baseline "
                  f"{popularity['mrr']:.4f} on the same {config.valid_max_triples} triples): tune_kg_embeddings.py\n")
        atomic_write_text(config.out / "best.yaml", header + yaml.safe_dump(settings, sort_keys=False,
                                                                            allow_unicode=True))
    atomic_write_text(config.out / "trials.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return summary
