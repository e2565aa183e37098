"""Inference over prepared windows: batching, forward passes, post-processing and scoring.

Imported by training, evaluation and prediction alike; it needs neither the trainer nor PyKEEN.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from kgutil.device import resolve_device
from mrc.data import Example
from mrc.features import IGNORE, Feature, FeatureConfig, prepare_features
from mrc.metrics import MetricChoice, dataset_metric, evaluate_predictions
from mrc.model import BaselineMRC, load_model, update_model_json
from mrc.postprocess import (SENTENCE_WEIGHTS, Prediction, WindowOutputs, postprocess, tune_sentence_weight,
                             tune_support_threshold)


def collate(features: Sequence[Feature], pad_id: int, with_labels: bool) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest window. Model-specific ``extra`` arrays are padded with -1."""
    n = max(len(f.input_ids) for f in features)
    batch: dict[str, Any] = {
        "input_ids": torch.full((len(features), n), pad_id, dtype=torch.long),
        "token_type_ids": torch.zeros((len(features), n), dtype=torch.long),
        "attention_mask": torch.zeros((len(features), n), dtype=torch.long),
        "context_mask": torch.zeros((len(features), n), dtype=torch.bool),
    }
    for i, f in enumerate(features):
        m = len(f.input_ids)
        batch["input_ids"][i, :m] = torch.tensor(f.input_ids)
        batch["token_type_ids"][i, :m] = torch.tensor(f.token_type_ids)
        batch["attention_mask"][i, :m] = 1
        batch["context_mask"][i, :m] = torch.tensor([o is not None for o in f.offsets])
    for key in features[0].extra:
        arrays = [np.asarray(f.extra[key]) for f in features]
        padded = np.full((len(features), n, *arrays[0].shape[1:]), -1, dtype=arrays[0].dtype)
        for i, a in enumerate(arrays):
            padded[i, : len(a)] = a
        batch[key] = torch.from_numpy(padded)
    if with_labels:
        batch["start_positions"] = torch.tensor([f.start for f in features])
        batch["end_positions"] = torch.tensor([f.end for f in features])
        support = torch.full((len(features), n), IGNORE, dtype=torch.long)
        for i, f in enumerate(features):
            support[i, : len(f.support)] = torch.tensor(f.support)
        batch["support_labels"] = support
        if any(f.category is not None for f in features):
            width = len(next(f.category for f in features if f.category is not None))
            batch["category_labels"] = torch.tensor([f.category if f.category is not None else [-1.0] * width
                                                     for f in features])
    return batch

def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Forward passes in bfloat16 where ``precision`` is bf16 (weights, optimiser and losses stay fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.float16 if precision == "fp16" else torch.bfloat16)


@torch.no_grad()
def predict_features(model: BaselineMRC, features: Sequence[Feature], pad_id: int, batch_size: int,
                     device: torch.device, progress: bool = False, precision: str = "fp32") -> WindowOutputs:
    """The model's outputs for every window."""
    model.eval()
    out = WindowOutputs([], [], [], [] if model.category is not None else None, [])
    for i in tqdm(range(0, len(features), batch_size), desc="predicting", disable=not progress):
        chunk = features[i:i + batch_size]
        batch = {k: v.to(device) for k, v in collate(chunk, pad_id, with_labels=False).items()}
        with autocast(device, precision):
            res = model(**batch)
        for j, f in enumerate(chunk):
            m = len(f.input_ids)
            out.starts.append(res.start_logits[j, :m].float().cpu().numpy())
            out.ends.append(res.end_logits[j, :m].float().cpu().numpy())
            out.supports.append(torch.sigmoid(res.support_logits[j, :m]).float().cpu().numpy())
            if out.categories is not None:
                out.categories.append(torch.sigmoid(res.category_logits[j]).float().cpu().numpy())
            out.details.append({k: v[j].float().cpu().numpy() for k, v in res.details.items()})
    return out


class InferenceConfig(BaseModel):
    """Settings of ``predict.py`` and ``evaluate.py`` (file ``--config`` ← flags ← ``--set``)."""

    model_config = ConfigDict(extra="forbid")

    model: Path | None = Field(None, description="kgmrc model directory")
    device: str = "auto"
    batch_size: int = Field(16, ge=1)
    metric: MetricChoice = Field("auto", description="auto: CMRC 2018 for a Chinese dataset, SQuAD for English")
    index: Path | None = Field(None, description="CMedBERT: the entity index, when it moved since training (an "
                                                 "index of another KG snapshot is refused)")
    max_passage_chars: int = Field(20_000, ge=0, description="warn above this passage length (0: never); long "
                                                             "passages take many windows")
    categories: Path | None = Field(None, description="answer-category labels of the dataset, to score the "
                                                      "model's categories (scripts/label_categories.py)")
    knowledge: bool = Field(True, description="CMedBERT: false masks every entity (the same model on an empty KG), "
                                              "to measure what its knowledge contributes")

    @property
    def settings(self) -> dict[str, Any] | None:
        """Overrides of the model family's saved settings (``load_model``)."""
        settings: dict[str, Any] = {"index": str(self.index)} if self.index else {}
        if not self.knowledge:
            settings["knowledge"] = False
        return settings or None


class TuneConfig(InferenceConfig):
    """Settings of ``tune_postprocessing.py``."""

    sentence_weights: list[float] = Field(default_factory=lambda: list(SENTENCE_WEIGHTS), min_length=1,
                                          description="grid of the sentence weight w, as in training")
    write: bool = Field(True, description="save the tuned w and τ in the model directory")


def evaluate_model(model: BaselineMRC, tokenizer: Any, examples: list[Example], features: list[Feature], *,
                   device: torch.device, batch_size: int = 16, precision: str = "fp32", n_best: int = 20,
                   max_answer_length: int = 100, metric: MetricChoice = "auto",
                   sentence_weights: Sequence[float] = SENTENCE_WEIGHTS, progress: bool = False,
                   per_question: bool = False) -> tuple[dict[str, Any], dict[str, Prediction], dict[str, float]]:
    """(metrics, predictions, post-processing): the sentence weight w (from ``sentence_weights``) and then the
    support threshold τ are tuned on ``examples``; the metrics are those of the tuned predictions."""
    outputs = predict_features(model, features, tokenizer.pad_token_id, batch_size, device, progress, precision)
    predictions = postprocess(examples, features, outputs, category_names=model.config.categories, n_best=n_best,
                              max_answer_length=max_answer_length)
    chosen = dataset_metric(examples, metric)
    tuned = {"sentence_weight": tune_sentence_weight(examples, predictions, chosen, sentence_weights)}
    tuned["support_threshold"] = tune_support_threshold(examples, predictions, chosen)
    metrics = evaluate_predictions(examples, {k: p.as_dict() for k, p in predictions.items()}, chosen, per_question)
    return {**metrics, **tuned}, predictions, tuned


def saved_postprocessing(saved: dict[str, Any]) -> dict[str, Any]:
    """``postprocess`` settings a model directory was saved with: answer length, support threshold τ and sentence
    weight w (0 for models saved before w existed: their top-scoring span)."""
    return {"max_answer_length": saved.get("max_answer_length", 100),
            "support_threshold": saved.get("support_threshold", 0.5),
            "sentence_weight": saved.get("sentence_weight", 0.0)}


def _prepared(path: Path, examples: list[Example], settings: dict[str, Any] | None, device: str
              ) -> tuple[BaselineMRC, Any, dict[str, Any], list[Feature], torch.device]:
    """(model on its device, tokenizer, saved settings, windows of ``examples``, device) of a model directory."""
    model, tokenizer, saved = load_model(path, settings)
    torch_device = resolve_device(device)
    model.to(torch_device)
    features = prepare_features(examples, tokenizer, FeatureConfig.model_validate(saved.get("features", {})))
    model.attach_inputs(features, examples, tokenizer)
    return model, tokenizer, saved, features, torch_device


def predict_saved_model(path: Path, examples: list[Example], *, batch_size: int = 16, device: str = "auto",
                        settings: dict[str, Any] | None = None, progress: bool = False
                        ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """(predictions by question id, post-processing) of a saved model directory on ``examples``, with its saved
    windows and ``saved_postprocessing`` (``settings`` override the model family's saved settings, see
    ``load_model``). The examples need no answers."""
    model, tokenizer, saved, features, torch_device = _prepared(path, examples, settings, device)
    chosen = saved_postprocessing(saved)
    outputs = predict_features(model, features, tokenizer.pad_token_id, batch_size, torch_device, progress)
    predictions = postprocess(examples, features, outputs, category_names=model.config.categories, **chosen)
    return {k: p.as_dict() for k, p in predictions.items()}, chosen


def tune_saved_model(path: Path, examples: list[Example], *, sentence_weights: Sequence[float] = SENTENCE_WEIGHTS,
                     metric: MetricChoice = "auto", batch_size: int = 16, device: str = "auto",
                     settings: dict[str, Any] | None = None, write: bool = True, source: str = "",
                     progress: bool = False) -> dict[str, Any]:
    """Tune a saved model's post-processing (w from ``sentence_weights``, then τ) on the labelled ``examples``
    as training does on validation, and with ``write`` save them in its kgmrc_config.json, appending the former
    values, ``source`` and the figures to its ``retuned`` list. Returns that record."""
    model, tokenizer, saved, features, torch_device = _prepared(path, examples, settings, device)
    former = saved_postprocessing(saved)
    metrics, _, tuned = evaluate_model(model, tokenizer, examples, features, device=torch_device,
                                       batch_size=batch_size, max_answer_length=former["max_answer_length"],
                                       metric=metric, sentence_weights=sentence_weights, progress=progress)
    record = {"data": source, "questions": len(examples), "grid": [float(w) for w in sentence_weights],
              "former": {k: former[k] for k in tuned}, "tuned": tuned, "figures": metrics["overall"]}
    if write:
        update_model_json(path, {**tuned, "retuned": [*saved.get("retuned", []), record]})
    return record


def evaluate_saved_model(path: Path, examples: list[Example], *, metric: MetricChoice = "auto",
                         batch_size: int = 16, device: str = "auto", per_question: bool = False,
                         settings: dict[str, Any] | None = None
                         ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(metrics, predictions) of a saved model directory on ``examples`` (``predict_saved_model``); the metrics
    carry the saved τ and w."""
    predictions, chosen = predict_saved_model(path, examples, batch_size=batch_size, device=device,
                                              settings=settings)
    metrics = evaluate_predictions(examples, predictions, dataset_metric(examples, metric), per_question)
    return {**metrics, "support_threshold": chosen["support_threshold"],
            "sentence_weight": chosen["sentence_weight"]}, predictions
