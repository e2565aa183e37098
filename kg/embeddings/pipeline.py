"""KG embeddings with PyKEEN: any model of PyKEEN's registry (TransE, TransR, RotatE, ComplEx, …) and PTransE,
registered beside them, trained on one seeded split of a KG snapshot.

``train_embeddings(config)`` is the one entry point (cf. ``pykeen.pipeline``): split → (paths) → train with
per-epoch safetensors checkpoints (resumable) → filtered rank evaluation → export. The export directory holds
``embeddings.safetensors`` (``entity [E, d]`` aligned with the snapshot's entity ids, ``relation [R, d_r]``,
TransR's ``relation_projection [R, d, d_r]``), ``metadata.json``, ``metrics.json`` and the per-triple ranks of
model and popularity baseline (``ranks.safetensors``, for paired comparisons: :mod:`kg.embeddings.compare`).
:meth:`KGEmbeddings.load` refuses an export made for a different snapshot.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
import inspect

from pykeen.evaluation import RankBasedEvaluator
from pykeen.models import TransR, model_resolver
from pykeen.training import LCWATrainingLoop, SLCWATrainingLoop
from pykeen.triples import TriplesFactory
from safetensors.torch import save_file
from tqdm.auto import tqdm

from kgutil.device import resolve_device
from kgutil.checkpoint import load_checkpoint, save_checkpoint
from kgutil.io import atomic_path, atomic_write_text
from kg.embeddings.pcra import PathSet, extract_paths
from kg.embeddings.path_scoring import PathRules, evaluate_path_aware
from kg.embeddings.compare import mrr_ci, paired, save_ranks
from kg.embeddings.popularity import popularity_ranks, rank_metrics, sample_triples
from kg.embeddings.ptranse import PTransE, PTransETrainingLoop
from kg.embeddings.export import FORMAT_VERSION
from kg.snapshot import Snapshot

log = logging.getLogger(__name__)

if "ptranse" not in model_resolver.options:
    model_resolver.register(PTransE)


def model_names() -> list[str]:
    """Every model name ``EmbeddingConfig.model`` accepts: PyKEEN's registry, PTransE included."""
    return sorted(model_resolver.options)


class EmbeddingConfig(BaseModel):
    """``scripts/train_kg_embeddings.py`` settings."""

    model_config = ConfigDict(extra="forbid")

    kg: Path = Field(description="snapshot directory (from build_kg.py)")
    out: Path = Field(description="output directory")
    model: str = Field("transe", description="any PyKEEN model name (transe, transr, rotate, complex, …) or ptranse")
    training_loop: Literal["slcwa", "lcwa"] = Field(
        "slcwa", description="slcwa: sampled negatives per positive triple; lcwa: 1-N scoring, every (h, r) against "
        "all entities, with inverse relations so that heads are predicted as tails of (t, r⁻¹)")
    loss: Literal["marginranking", "nssa", "softplus", "crossentropy"] = Field(
        "marginranking", description="with slcwa: margin ranking, self-adversarial negative sampling (RotatE's "
        "loss) or softplus (ComplEx's logistic loss); with lcwa: softmax cross-entropy over all entities")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="lcwa: label smoothing ε of the 1-N targets")
    adversarial_temperature: float = Field(1.0, gt=0, description="NSSA temperature α")
    dim: int = Field(100, ge=2)
    relation_dim: int | None = Field(None, description="TransR relation space (default: dim)")
    epochs: int = Field(50, ge=1)
    batch_size: int = Field(1024, ge=1)
    lr: float = Field(0.001, gt=0, description="Adam learning rate")
    margin: float = Field(1.0, gt=0)
    norm: int = Field(1, ge=1, le=2, description="L1 or L2 distance")
    num_negs_per_pos: int = Field(1, ge=1)
    seed: int = 42
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    # PTransE
    path_max_length: int = Field(2, ge=1, le=3)
    path_max_per_triple: int = Field(8, ge=1)
    path_threshold: float = Field(0.01, ge=0, description="drop paths with R(p|h,t) below this")
    path_weight: float = Field(1.0, ge=0)
    path_margin: float | None = Field(
        None, gt=0, description="γ_path of the path hinge [γ_path + E(p, r) − E(p, r′)]₊ (default: margin). With "
        "nssa, margin is the distance offset of log σ(γ − d), not a separation, and a path margin equal to it "
        "can demand more than the triple loss does")
    # path-aware scoring at test time (kg.embeddings.path_scoring)
    path_aware: bool = Field(
        False, description="also score G = f + β·Σ_p Pr(r|p)·R(p|h,t) (the model plus the evidence of the training "
        "graph's paths of up to path_max_length steps, R ≥ path_threshold), β chosen on validation MRR")
    path_aware_betas: list[float] = Field([0, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64], min_length=1,
                                          description="the β grid of path-aware scoring (0: the model alone)")
    # evaluation
    eval_max_triples: int | None = Field(None, description="evaluate on this many test triples (seeded sample)")
    eval_batch_size: int = 256
    eval_memory_mb: int = Field(1024, ge=16, description="memory for scoring one evaluation batch (sliced to fit)")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1, ...")
    checkpoint_every: int = Field(1, ge=1, description="epochs between checkpoints")
    resume: bool = Field(True, description="continue from OUT/checkpoint when it matches this config")
    progress: bool = True

    @model_validator(mode="after")
    def _loss_fits_loop(self) -> "EmbeddingConfig":
        allowed = {"slcwa": {"marginranking", "nssa", "softplus"}, "lcwa": {"crossentropy"}}[self.training_loop]
        if self.loss not in allowed:
            raise ValueError(f"loss {self.loss!r} does not go with training_loop {self.training_loop!r}; "
                             f"choose {' or '.join(sorted(allowed))}")
        if self.label_smoothing and self.training_loop != "lcwa":
            raise ValueError("label_smoothing smooths lcwa's 1-N targets; set training_loop: lcwa or leave it 0")
        if self.model == "ptranse" and self.training_loop != "slcwa":
            raise ValueError("ptranse trains with sampled negatives (training_loop: slcwa)")
        return self

    @field_validator("model")
    @classmethod
    def _known_model(cls, name: str) -> str:
        normalized = model_resolver.normalize(name)
        if normalized not in model_resolver.options:
            raise ValueError(f"unknown KG embedding model {name!r}; choose one of {', '.join(model_names())}")
        return normalized


# settings added after checkpoints were first written: they enter a checkpoint's fingerprint only when set, so
# those checkpoints still resume
LATER_FIELDS = ("path_margin",)


@dataclass
class EmbeddingResult:
    config: EmbeddingConfig
    metrics: dict[str, float]
    seconds_per_epoch: float | None  # mean over the epochs trained (restored ones included); None if none timed
    path_seconds: float
    path_stats: dict[str, float]
    losses: list[float]
    out: Path
    popularity: dict[str, float] | None = None  # the calibration baseline on the same test triples
    validation_metrics: dict[str, float] | None = None  # the same measures on validation: what choices read
    ranks: dict[str, np.ndarray] = field(default_factory=dict)  # per-triple ranks (kg.embeddings.compare)
    path_aware: dict[str, object] | None = None  # path-aware scoring's figures (kg.embeddings.path_scoring)

    @cached_property
    def mrr_ci95(self) -> list[float]:
        """95% bootstrap CI of the test MRR over test triples."""
        return mrr_ci(self.ranks["test"])

    @cached_property
    def versus_popularity(self) -> dict[str, object]:
        """The test MRR against the popularity baseline's on the same triples: Δ and ratio with 95% CIs."""
        return paired(self.ranks["test"], self.ranks["popularity_test"])


def triples_factory(snapshot: Snapshot) -> TriplesFactory:
    """All snapshot triples with the snapshot's own entity and relation ids."""
    return TriplesFactory(
        mapped_triples=torch.as_tensor(snapshot.triples, dtype=torch.long),
        entity_to_id={n: i for i, n in enumerate(snapshot.entity_names)},
        relation_to_id={n: i for i, n in enumerate(snapshot.relation_names)},
    )


def split_snapshot(snapshot: Snapshot, ratios: tuple[float, float, float], seed: int
                   ) -> tuple[TriplesFactory, TriplesFactory, TriplesFactory]:
    """The fixed train/validation/test split every model shares (PyKEEN's split: all test entities in train)."""
    train, valid, test = triples_factory(snapshot).split(list(ratios), random_state=seed)
    return train, valid, test


def training_factory(config: EmbeddingConfig, train: TriplesFactory) -> TriplesFactory:
    """The triples a model trains on: ``train`` itself, or with lcwa ``train`` plus inverse triples (t, r⁻¹, h), which
    PyKEEN numbers 2r (forward) and 2r + 1 (inverse); the model then scores head prediction as tail prediction."""
    if config.training_loop == "slcwa":
        return train
    return TriplesFactory(mapped_triples=train.mapped_triples, entity_to_id=train.entity_to_id,
                          relation_to_id=train.relation_to_id, create_inverse_triples=True)


def model_kwargs(config: EmbeddingConfig, paths: PathSet | None) -> dict[str, Any]:
    """The settings the configured model's constructor takes beyond the dimension: the distance norm, TransR's
    relation space, PTransE's paths and path loss."""
    cls = model_resolver.lookup(config.model)
    accepted = {name for klass in cls.__mro__ for name in inspect.signature(klass.__init__).parameters}
    optional = {"scoring_fct_norm": config.norm, "relation_dim": config.relation_dim or config.dim, "paths": paths,
                "path_margin": config.path_margin or config.margin, "path_weight": config.path_weight}
    return {k: v for k, v in optional.items() if k in accepted}


def loss_kwargs(config: EmbeddingConfig) -> dict[str, float]:
    if config.loss in ("crossentropy", "softplus"):
        return {}
    if config.loss == "marginranking":
        return {"margin": config.margin}
    return {"margin": config.margin, "adversarial_temperature": config.adversarial_temperature}


def build_model(config: EmbeddingConfig, train: TriplesFactory, paths: PathSet | None) -> torch.nn.Module:
    """The configured model from PyKEEN's resolver; each model gets the settings its constructor takes."""
    return model_resolver.lookup(config.model)(triples_factory=train, embedding_dim=config.dim,
                                               random_seed=config.seed, loss=config.loss,
                                               loss_kwargs=loss_kwargs(config), **model_kwargs(config, paths))


def evaluate(model: torch.nn.Module, scored: TriplesFactory, known: list[TriplesFactory], *,
             max_triples: int | None, batch_size: int, seed: int, progress: bool,
             slice_size: int | None = None) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Filtered (realistic) MRR and Hits@1/3/10 over head and tail prediction of a seeded sample of ``scored``;
    every triple of ``known`` (all splits, the unsampled rest of ``scored`` included) is filtered, as in the
    popularity baseline and the tuning study. Returns the metrics, the per-triple ranks ``[n, 2]`` (head, tail)
    and the sampled triples ``[n, 3]`` they belong to."""
    mapped = torch.as_tensor(sample_triples(scored.mapped_triples.numpy(), max_triples, seed))
    evaluator = RankBasedEvaluator(filtered=True, clear_on_finalize=False)  # keep the ranks, in triple order
    evaluator.evaluate(model, mapped, batch_size=batch_size, slice_size=slice_size, use_tqdm=progress,
                       additional_filter_triples=[f.mapped_triples for f in known])
    ranks = np.stack([np.concatenate(evaluator.ranks[side, "realistic"]) for side in ("head", "tail")], axis=1)
    return rank_metrics(ranks), ranks, mapped.numpy()


def eval_slice_size(config: EmbeddingConfig, num_entities: int) -> int | None:
    """Entities scored at once in evaluation: scoring a batch against all entities materialises
    ``batch × entities × dim`` floats (h + r − t for every t), so the entities are sliced to fit
    ``eval_memory_mb`` (None = no slicing needed). Smaller batches would instead repeat the filter pass."""
    per_entity = 4 * config.eval_batch_size * max(config.dim, config.relation_dim or config.dim)
    fit = config.eval_memory_mb * 2**20 // per_entity
    return None if fit >= num_entities else max(1, fit)


def training_paths(config: EmbeddingConfig, train: TriplesFactory, snapshot: Snapshot
                   ) -> tuple[PathSet | None, float, dict[str, float]]:
    """PTransE's PCRA paths of the training triples (None for every other model), seconds, statistics."""
    if config.model != "ptranse":
        return None, 0.0, {}
    t0 = time.perf_counter()
    paths = extract_paths(train.mapped_triples.numpy(), snapshot.num_entities, snapshot.num_relations,
                          max_length=config.path_max_length, max_paths=config.path_max_per_triple,
                          threshold=config.path_threshold, progress=config.progress)
    seconds = time.perf_counter() - t0
    stats = {"paths": paths.num_paths, "coverage": paths.coverage(),
             "mean_paths_per_covered_triple": paths.num_paths / max(1, (paths.reliability > 0).any(1).sum())}
    log.info("PCRA: %d paths, %.1f%% of training triples covered, %.1f s", paths.num_paths,
             100 * paths.coverage(), seconds)
    return paths, seconds, stats


def train_embeddings(config: EmbeddingConfig) -> EmbeddingResult:
    """Split, (extract paths,) train, evaluate and export; resumes from ``OUT/checkpoint`` when possible."""
    snapshot = Snapshot.load(config.kg)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    train, valid, test = split_snapshot(snapshot, config.split, config.seed)
    log.info("split %s: train %d, valid %d, test %d", snapshot.path, train.num_triples, valid.num_triples,
             test.num_triples)
    paths, path_seconds, path_stats = training_paths(config, train, snapshot)
    trained_on = training_factory(config, train)
    model = build_model(config, trained_on, paths).to(device)
    optimizer = torch.optim.Adam(model.get_grad_params(), lr=config.lr)
    if config.training_loop == "lcwa":
        loop = LCWATrainingLoop(model=model, triples_factory=trained_on, optimizer=optimizer)
    else:
        loop_cls = PTransETrainingLoop if config.model == "ptranse" else SLCWATrainingLoop
        loop = loop_cls(model=model, triples_factory=trained_on, optimizer=optimizer, negative_sampler="basic",
                        negative_sampler_kwargs={"num_negs_per_pos": config.num_negs_per_pos})
    run_only = {"out", "resume", "progress", "epochs", "device", "eval_max_triples", "eval_batch_size", "eval_memory_mb",
                "checkpoint_every", "path_aware", "path_aware_betas"}
    unset_later = {name for name in LATER_FIELDS if getattr(config, name) is None}
    fingerprint = f"{snapshot.checksum}:{config.model_dump_json(exclude=run_only | unset_later)}"
    start, losses, epoch_seconds = 0, [], []
    if config.resume and (restored := load_checkpoint(config.out / "checkpoint", model, loop.optimizer, fingerprint)):
        start, losses = restored["epoch"], restored["losses"]
        epoch_seconds = restored.get("epoch_seconds", [])  # absent from checkpoints written before it was kept
        loop._epoch = start
        log.info("resumed from epoch %d", start)
    bar = tqdm(range(start + 1, config.epochs + 1), desc=f"training {config.model}", unit="epoch",
               disable=not config.progress, initial=start, total=config.epochs)
    for epoch in bar:
        torch.manual_seed(config.seed + epoch)
        t0 = time.perf_counter()
        epoch_losses = loop.train(triples_factory=trained_on, num_epochs=epoch, batch_size=config.batch_size,
                                  continue_training=epoch > 1, use_tqdm=False, use_tqdm_batch=False,
                                  label_smoothing=config.label_smoothing)
        epoch_seconds.append(time.perf_counter() - t0)
        losses.append(float(epoch_losses[-1]))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if epoch % config.checkpoint_every == 0 or epoch == config.epochs:
            save_checkpoint(config.out / "checkpoint", model, loop.optimizer, fingerprint,
                            {"epoch": epoch, "losses": losses, "epoch_seconds": epoch_seconds})
    slice_size = eval_slice_size(config, snapshot.num_entities)
    measured = {name: evaluate(model, split, [train, valid, test], max_triples=config.eval_max_triples,
                               batch_size=config.eval_batch_size, slice_size=slice_size, seed=config.seed,
                               progress=config.progress)
                for name, split in (("test", test), ("validation", valid))}
    metrics = measured["test"][0]
    known = np.concatenate([f.mapped_triples.numpy() for f in (train, valid, test)])
    popularity = popularity_ranks(train.mapped_triples.numpy(), known, measured["test"][2], snapshot.num_entities,
                                  snapshot.num_relations)
    ranks = {"test": measured["test"][1], "validation": measured["validation"][1], "popularity_test": popularity,
             "test_triples": measured["test"][2], "validation_triples": measured["validation"][2]}
    path_aware = None
    if config.path_aware:
        rules = PathRules.fit(train.mapped_triples.numpy(), snapshot.num_entities, snapshot.num_relations,
                              max_length=config.path_max_length, threshold=config.path_threshold,
                              progress=config.progress)
        path_aware, path_ranks = evaluate_path_aware(
            model, rules, {name: measured[name][2] for name in measured}, ranks, known, config.path_aware_betas,
            batch_size=config.eval_batch_size, slice_size=slice_size, progress=config.progress)
        ranks.update(path_ranks)
        log.info("path-aware scoring: β %s by validation MRR (%s); test MRR %.4f %s, Δ vs the model alone %+.4f %s",
                 path_aware["beta"], path_aware["validation_mrr"], path_aware["metrics"]["mrr"],
                 path_aware["mrr_ci95"], path_aware["versus_model"]["mrr_diff"],
                 path_aware["versus_model"]["mrr_diff_ci95"])
    seconds_per_epoch = float(np.mean(epoch_seconds)) if epoch_seconds else None
    result = EmbeddingResult(config, metrics, seconds_per_epoch, path_seconds, path_stats, losses, config.out,
                             rank_metrics(popularity), measured["validation"][0], ranks, path_aware)
    log.info("%s: test MRR %.4f %s, Hits@10 %.4f (popularity baseline: MRR %.4f, Hits@10 %.4f; ratio %.2f %s); "
             "validation MRR %.4f; %s s/epoch", config.model, metrics["mrr"], result.mrr_ci95, metrics["hits@10"],
             result.popularity["mrr"], result.popularity["hits@10"], result.versus_popularity["mrr_ratio"],
             result.versus_popularity["mrr_ratio_ci95"], result.validation_metrics["mrr"],
             f"{seconds_per_epoch:.1f}" if seconds_per_epoch is not None else "-")
    export(model, snapshot, result, split_sizes=(train.num_triples, valid.num_triples, test.num_triples))
    return result


def export(model: torch.nn.Module, snapshot: Snapshot, result: EmbeddingResult,
           split_sizes: tuple[int, int, int]) -> None:
    """Write embeddings.safetensors, metadata.json and metrics.json into ``result.out`` (each atomically)."""
    forward = torch.arange(snapshot.num_relations)  # the snapshot's relations (with lcwa the model also holds inverses)
    if model.use_inverse_triples:
        forward = model.relation_inverter.map(batch=forward.unsqueeze(1), index=0).squeeze(1)
    tensors = {"entity": _real(model.entity_representations[0](indices=None)),
               "relation": _real(model.relation_representations[0](indices=forward))}
    if isinstance(model, TransR):
        projection = model.relation_representations[1](indices=forward).detach().float().cpu()
        tensors["relation_projection"] = projection.reshape(snapshot.num_relations, -1).contiguous()
    config = result.config
    metadata = {
        "format_version": FORMAT_VERSION, "model": config.model, "dim": config.dim,
        "relation_dim": int(tensors["relation"].shape[1]), "epochs": config.epochs, "seed": config.seed,
        "snapshot_checksum": snapshot.checksum, "num_entities": snapshot.num_entities,
        "num_relations": snapshot.num_relations, "split": dict(zip(("train", "valid", "test"), split_sizes)),
        "metrics": result.metrics, "popularity_metrics": result.popularity,
        "validation_metrics": result.validation_metrics,
        "mrr_ci95": result.mrr_ci95, "versus_popularity": result.versus_popularity, "path_aware": result.path_aware,
        "seconds_per_epoch": result.seconds_per_epoch,
        "path_seconds": result.path_seconds, "path_stats": result.path_stats,
        "config": json.loads(config.model_dump_json()),
    }
    out = result.out
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "embeddings.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"snapshot_checksum": snapshot.checksum, "model": config.model})
    atomic_write_text(out / "metadata.json", json.dumps(metadata, ensure_ascii=False, indent=2))
    atomic_write_text(out / "metrics.json", json.dumps(result.metrics, indent=2))
    save_ranks(out, result.ranks)


def _real(x: torch.Tensor) -> torch.Tensor:
    """A representation as a real matrix: complex vectors (RotatE, ComplEx) as [re; im]."""
    x = x.detach().cpu()
    if x.is_complex():
        x = torch.cat([x.real, x.imag], dim=-1)
    return x.float().reshape(x.shape[0], -1).contiguous()
