"""Training and evaluation of MRC models: one entry point, ``train_mrc(config)``.

Data: training files (CMedMRC or SQuAD layout), optionally split by passage (never by question) into train and
held-out parts, which are written to OUT as SQuAD-layout JSON. Each epoch: train, evaluate on the held-out part,
tune the support threshold, keep the best model (``OUT/best``) by answer F1; ``OUT/checkpoint`` allows resuming.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from common.device import resolve_device
from kg.checkpoint import load_checkpoint, save_checkpoint
from kg.io import atomic_write_text
from mrc.data import Example, read_dataset
from mrc.features import FeatureConfig, prepare_features
from mrc.inference import autocast, collate, evaluate_model
from mrc.metrics import MetricChoice
from mrc.model import BaselineMRC, ModelConfig, build_model, load_model, model_class, save_model

log = logging.getLogger(__name__)


class TrainConfig(BaseModel):
    """``scripts/train_mrc.py`` settings."""

    model_config = ConfigDict(extra="forbid")

    model: ModelConfig = Field(default_factory=ModelConfig)
    encoder: str = Field("../shared/models/m3e-small", description="Hugging Face encoder name or path")
    init_from: Path | None = Field(None, description="start from this kgmrc model directory (intermediate training)")
    train: list[Path] = Field(default_factory=list)
    validation: Path | None = None
    split_by_passage: float | None = Field(None, gt=0, lt=1, description="train share of the passages")
    out: Path = Path("runs/mrc")
    seed: int = 1
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    epochs: int = Field(2, ge=0)
    batch_size: int = Field(8, ge=1)
    eval_batch_size: int = Field(16, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(5e-5, gt=0)
    head_lr: float | None = Field(None, description="learning rate of the non-encoder parameters (default lr)")
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    negative_windows: float = Field(1.0, ge=0, le=1, description="share of answerless windows kept for training")
    max_answer_length: int = Field(100, ge=1, description="characters")
    n_best: int = 20
    support_threshold: float = 0.5
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    device: str = "auto"
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="bf16 = bfloat16 autocast of forward passes (CPUs with AVX512-BF16/AMX, Ampere+ GPUs)")
    resume: bool = True
    progress: bool = True
    answer_policy: Literal["repair", "strict"] = "repair"
    metric: MetricChoice = Field("auto", description="auto: CMRC 2018 for Chinese data, SQuAD for English")


@dataclass
class TrainResult:
    best_metrics: dict[str, Any]
    history: list[dict[str, Any]]
    out: Path


def split_by_passage(examples: list[Example], train_share: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Shuffle passages with ``seed``; the first ``train_share`` of them (and all their questions) train."""
    passages = sorted({e.passage_id for e in examples})
    random.Random(seed).shuffle(passages)
    train_ids = set(passages[: round(train_share * len(passages))])
    return [e for e in examples if e.passage_id in train_ids], [e for e in examples if e.passage_id not in train_ids]


def write_squad(examples: Sequence[Example], path: Path) -> None:
    """Examples as a SQuAD-layout file (CMedMRC fields kept: 1-based support, question/context types)."""
    paragraphs: dict[str, dict[str, Any]] = {}
    for e in examples:
        para = paragraphs.setdefault(e.passage_id, {"id": e.passage_id, "context": e.context, "qas": []})
        qa: dict[str, Any] = {"id": e.id, "question": e.question,
                              "answers": [{"text": a.text, "answer_start": a.start} for a in e.answers]}
        if e.support is not None:
            qa["support sentence"] = ",".join(str(s + 1) for s in e.support)
        for key, value in (("question type", e.question_type), ("context type", e.context_type)):
            if value:
                qa[key] = value
        para["qas"].append(qa)
    data = {"version": "kgmrc", "data": [{"title": pid, "paragraphs": [p]} for pid, p in paragraphs.items()]}
    atomic_write_text(path, json.dumps(data, ensure_ascii=False))


def load_examples(config: TrainConfig) -> tuple[list[Example], list[Example]]:
    examples = [e for path in config.train for e in read_dataset(path, answer_policy=config.answer_policy)]
    if config.validation is not None:
        held_out = read_dataset(config.validation, answer_policy=config.answer_policy)
        train = examples
    elif config.split_by_passage is not None:
        train, held_out = split_by_passage(examples, config.split_by_passage, config.seed)
    else:
        train, held_out = examples, []
    unusable = [e for e in train if not e.answers and not e.is_impossible]
    if unusable:  # answerable questions whose answers are not in the passage cannot be labelled
        log.warning("%d training questions have no answer inside their passage; left out of training",
                    len(unusable))
        train = [e for e in train if e.answers or e.is_impossible]
    if config.max_train_examples is not None:
        train = train[: config.max_train_examples]
    if config.max_eval_examples is not None:
        held_out = held_out[: config.max_eval_examples]
    return train, held_out


def init_from(path: Path, config: ModelConfig) -> tuple[BaselineMRC, Any]:
    """Start from a saved model. Across families (e.g. a baseline after intermediate training → CMedBERT) the
    encoder and the span/support heads are carried over and the new family's other layers start fresh."""
    loaded, tokenizer, _ = load_model(path)
    if loaded.config.model_type == config.model_type:
        return loaded, tokenizer
    model = model_class(config.model_type)(loaded.encoder, config)
    for head in ("span", "support"):
        getattr(model, head).load_state_dict(getattr(loaded, head).state_dict())
    log.info("initialised %s from the encoder and heads of %s model %s", config.model_type,
             loaded.config.model_type, path)
    return model, tokenizer


def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up to 1, then linear decay to 0."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


def train_mrc(config: TrainConfig) -> TrainResult:
    """Train, evaluate every epoch, keep the best model; resumable from ``OUT/checkpoint``."""
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    train_examples, held_out = load_examples(config)
    write_squad(train_examples, out / "train.json")
    if held_out:
        write_squad(held_out, out / "held_out.json")
    log.info("train: %d questions on %d passages; held out: %d questions", len(train_examples),
             len({e.passage_id for e in train_examples}), len(held_out))
    if config.init_from is not None:
        model, tokenizer = init_from(config.init_from, config.model)
    else:
        from transformers import AutoTokenizer

        model, tokenizer = build_model(config.encoder, config.model), AutoTokenizer.from_pretrained(config.encoder)
    model.to(device)
    train_features = prepare_features(train_examples, tokenizer, config.features)
    rng = random.Random(config.seed)
    train_features = [f for f in train_features if f.has_answer or rng.random() < config.negative_windows]
    held_features = prepare_features(held_out, tokenizer, config.features) if held_out else []
    model.attach_inputs(train_features, train_examples, tokenizer)
    model.attach_inputs(held_features, held_out, tokenizer)

    head_lr = config.head_lr or config.lr
    groups = [  # encoder weights (decayed), encoder biases/norms (not decayed), task layers
        {"params": [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("encoder.")
                    and p.ndim > 1], "lr": config.lr, "weight_decay": config.weight_decay},
        {"params": [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("encoder.")
                    and p.ndim <= 1], "lr": config.lr, "weight_decay": 0.0},
        {"params": [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("encoder.")],
         "lr": head_lr, "weight_decay": config.weight_decay},
    ]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]])
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    steps_per_epoch = math.ceil(len(train_features) / (config.batch_size * config.grad_accum))
    total_steps = steps_per_epoch * config.epochs
    warmup = int(config.warmup_ratio * total_steps)
    fingerprint = config.model_dump_json(exclude={"epochs", "resume", "progress", "out", "device", "precision",
                                                  "eval_batch_size", "max_eval_examples"})
    start_epoch, step, history, best = 0, 0, [], None
    if config.resume and (state := load_checkpoint(out / "checkpoint", model, optimizer, fingerprint)):
        start_epoch, step, history, best = state["epoch"], state["step"], state["history"], state["best"]
        log.info("resumed from epoch %d (step %d)", start_epoch, step)
    for epoch in range(start_epoch + 1, config.epochs + 1):
        model.train()
        order = list(range(len(train_features)))
        random.Random(config.seed * 1000 + epoch).shuffle(order)
        t0 = time.perf_counter()
        losses: dict[str, list[float]] = {"loss": [], "answer": [], "support": [], "lambda": []}
        bar = tqdm(range(0, len(order), config.batch_size), desc=f"epoch {epoch}/{config.epochs}",
                   disable=not config.progress)
        batches = math.ceil(len(order) / config.batch_size)
        log_every = max(1, batches // 10)  # without a bar, a log line every tenth of an epoch
        for k, i in enumerate(bar):
            batch = collate([train_features[j] for j in order[i:i + config.batch_size]], tokenizer.pad_token_id,
                            with_labels=True)
            with autocast(device, config.precision):
                output = model(**{key: v.to(device) for key, v in batch.items()})
            (output.loss / config.grad_accum).backward()
            losses["loss"].append(output.loss.item())
            losses["answer"].append(output.answer_loss.item())
            losses["support"].append(output.support_loss.item())
            losses["lambda"].append(float(output.support_weight))
            if (k + 1) % config.grad_accum == 0 or i + config.batch_size >= len(order):
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                factor = _lr_factor(step, total_steps, warmup)
                for group, base in zip(optimizer.param_groups, base_lrs):
                    group["lr"] = base * factor
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
            bar.set_postfix(loss=f"{np.mean(losses['loss'][-20:]):.3f}")
            if not config.progress and (k + 1) % log_every == 0:
                log.info("epoch %d: batch %d/%d, loss %.3f, %.0f s", epoch, k + 1, batches,
                         np.mean(losses["loss"][-log_every:]), time.perf_counter() - t0)
        record: dict[str, Any] = {"epoch": epoch, "seconds": round(time.perf_counter() - t0, 1),
                                  **{f"train_{k}": round(float(np.mean(v)), 4) for k, v in losses.items() if v}}
        if held_out:
            metrics, predictions, tau = evaluate_model(
                model, tokenizer, held_out, held_features, device=device, batch_size=config.eval_batch_size,
                precision=config.precision, n_best=config.n_best, max_answer_length=config.max_answer_length,
                metric=config.metric, progress=config.progress)
            record["validation"] = metrics
            log.info("epoch %d: EM %.2f F1 %.2f support EM %.2f F1 %.2f (τ=%.2f)", epoch,
                     metrics["overall"].get("em", 0), metrics["overall"].get("f1", 0),
                     metrics["overall"].get("support_em", 0), metrics["overall"].get("support_f1", 0), tau)
            if best is None or metrics["overall"]["f1"] > best["overall"]["f1"]:
                best = metrics
                save_model(model, tokenizer, out / "best", {"support_threshold": tau, "features": json.loads(
                    config.features.model_dump_json()), "max_answer_length": config.max_answer_length})
                atomic_write_text(out / "predictions.json", json.dumps(
                    {k: p.as_dict() for k, p in predictions.items()}, ensure_ascii=False, indent=1))
        history.append(record)
        save_checkpoint(out / "checkpoint", model, optimizer, fingerprint,
                        {"epoch": epoch, "step": step, "history": history, "best": best})
        atomic_write_text(out / "metrics.json", json.dumps({"best": best, "history": history}, ensure_ascii=False,
                                                           indent=2))
    if not held_out:
        save_model(model, tokenizer, out / "best", {"support_threshold": config.support_threshold,
                                                    "features": json.loads(config.features.model_dump_json()),
                                                    "max_answer_length": config.max_answer_length})
    return TrainResult(best_metrics=best or {}, history=history, out=out)
