"""Multi-task MRC models: any Hugging Face encoder + span head + support-sentence head.

Baseline (the paper's "BERT base" multi-task row), with H = encoder(question, passage) ∈ ℝ^{L×d}:
    o = H;  start/end = softmax over w₁·o, w₂·o (context tokens and [CLS]);  p_support_i = σ(w_s·o_i)
    L = λ_A·L_A + λ·L_S,   L_A = ½(CE(start) + CE(end)),   L_S = BCE(p_support, support labels)   (λ fixed)
With answer categories (Clinical QA 2.0), a head on the answer representation a (o_[CLS], or the span pooling
½(Σ_i p_start,i·o_i + Σ_i p_end,i·o_i) with the span probabilities detached):
    p_category = σ(W₂·ReLU(W₁·a)) ∈ [0,1]^{|C|},   L_C = Σ_c w_c·BCE(p_c, y_c) / |C|,   L += λ_C·L_C
with class weights w_c = N / (|C|·count_c) from the training labels (``mrc.categories``); with
``category_weighting: positive`` w_c weights only the positive term: −[w_c·y_c·log p_c + (1 − y_c)·log(1 − p_c)].
With ``question_boundary``, a zero-start boundary head (``mrc.boundary``) adds logits of where the answer starts
and ends relative to the passage tokens in a bigram shared with the question (text alone, no knowledge); with
``boundary_dropout`` p, training leaves that head out of a window with probability p.
Subclasses change ``represent`` (o from H) and ``support_weight`` (λ); see ``fusion.cmedbert``. When the batch
holds answer positions, ``represent`` may return a training term of its own as ``details["auxiliary_loss"]``
(already weighted): L += L_aux.

Model directories are self-contained: ``config.json`` (encoder), ``kgmrc_config.json`` (model type and
settings; from training also ``trained``: the epoch kept, its validation figures, the whole training config),
``model.safetensors`` and the tokenizer files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer

from kgutil.io import atomic_path, atomic_write_text
from mrc.boundary import BoundaryHead, question_anchor
from mrc.registry import model_class

KGMRC_CONFIG = "kgmrc_config.json"
WEIGHTS = "model.safetensors"


class ModelConfig(BaseModel):
    """Settings saved with a model. ``fusion`` holds the family's own settings, validated by the family's
    ``settings`` class when the config is read (a typo such as ``fusion.loopz`` fails there)."""

    model_config = ConfigDict(extra="forbid")

    model_type: str = "baseline"
    support_weight: float = Field(0.25, ge=0, description="λ of the baseline (fixed; 0.25 is the recipe of record: "
                                  "it led 0.5 on the validation of folds 0 and 1, README)")
    dropout: float = Field(0.1, ge=0, lt=1)
    answer_weight: float = Field(1.0, ge=0, description="λ_A (0: no span training, e.g. a category-only model)")
    categories: list[str] = Field(default_factory=list, description="answer categories (empty: no category head)")
    category_weight: float = Field(4.0, ge=0, description="λ_C of the category loss (4: chosen on validation macro "
                                   "F1 over 1, one-fold screening, README)")
    category_hidden: int = Field(256, ge=1, description="the category head's hidden layer (d → hidden → |C|)")
    category_pooling: Literal["cls", "span"] = Field("cls", description="answer representation for categories")
    category_class_weights: list[float] = Field(default_factory=list, description="w_c (set from training labels)")
    category_weighting: Literal["class", "positive"] = Field(
        "class", description="class: w_c scales category c's whole BCE term (the paper's class weights); positive: "
                             "w_c scales only its positive examples (BCE pos_weight), which counters the rarity of "
                             "positives that class weights leave in place")
    question_boundary: bool = Field(False, description="a boundary head anchored on the passage tokens in a bigram "
                                    "shared with the question (mrc.boundary: zero-start logits of where the answer "
                                    "starts and ends relative to them; text alone, no knowledge)")
    boundary_radius: int = Field(16, ge=1, description="the boundary head's offsets beyond ± this many tokens share "
                                                       "one bias")
    boundary_dropout: float = Field(0.0, ge=0, lt=1, description="in training, the question-anchored boundary head "
                                    "is left out of a window with this probability (not rescaled: a kept window sees "
                                    "the bias inference sees), so that another anchor (fusion.entity_boundary) must "
                                    "carry those windows; 0 = off")
    fusion: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _family_settings(self) -> "ModelConfig":
        if self.boundary_dropout and not self.question_boundary:
            raise ValueError("boundary_dropout needs question_boundary (it drops that head)")
        if self.category_class_weights and len(self.category_class_weights) != len(self.categories):
            raise ValueError(f"{len(self.category_class_weights)} category class weights for "
                             f"{len(self.categories)} categories")
        family = model_class(self.model_type)
        if family.settings is not None:
            self.fusion = family.settings.model_validate(self.fusion).model_dump()
        elif self.fusion:
            raise ValueError(f"model type {self.model_type!r} takes no fusion settings")
        return self


@dataclass
class MRCOutput:
    start_logits: torch.Tensor
    end_logits: torch.Tensor
    support_logits: torch.Tensor
    loss: torch.Tensor | None = None
    answer_loss: torch.Tensor | None = None
    support_loss: torch.Tensor | None = None
    support_weight: torch.Tensor | None = None
    category_logits: torch.Tensor | None = None
    category_loss: torch.Tensor | None = None
    auxiliary_loss: torch.Tensor | None = None
    details: dict[str, torch.Tensor] = field(default_factory=dict)


def answerable(logits: torch.Tensor, context_mask: torch.Tensor) -> torch.Tensor:
    """Span logits [B, L] restricted to where an answer may start or end: context tokens and [CLS] (position 0,
    "not in this window")."""
    allowed = context_mask.clone()
    allowed[:, 0] = True
    return logits.masked_fill(~allowed, torch.finfo(logits.dtype).min)


def span_loss(start_logits: torch.Tensor, end_logits: torch.Tensor, start_positions: torch.Tensor,
              end_positions: torch.Tensor) -> torch.Tensor:
    """L_A = ½(CE(start) + CE(end))."""
    ce = nn.functional.cross_entropy
    return 0.5 * (ce(start_logits, start_positions) + ce(end_logits, end_positions))


class BaselineMRC(nn.Module):
    """Encoder + span head + support head, trained with L = L_A + λ·L_S."""

    model_type: ClassVar[str] = "baseline"
    settings: ClassVar[type[BaseModel] | None] = None  # the family's own settings (ModelConfig.fusion)
    # their defaults when the family's fingerprints began (``mrc.train.fingerprint``; never edit them)
    frozen_settings: ClassVar[dict[str, Any]] = {}
    added_modules: ClassVar[tuple[str, ...]] = ()  # the modules a family adds to the baseline (``knowledge_lr``)

    def __init__(self, encoder: nn.Module, config: ModelConfig) -> None:
        super().__init__()
        self.encoder = encoder
        self.config = config
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(config.dropout)
        self.span = nn.Linear(self.output_size(hidden), 2)
        self.support = nn.Linear(self.output_size(hidden), 1)
        self.category = nn.Sequential(
            nn.Linear(self.output_size(hidden), config.category_hidden), nn.ReLU(), nn.Dropout(config.dropout),
            nn.Linear(config.category_hidden, len(config.categories))) if config.categories else None
        self.boundary = BoundaryHead(self.output_size(hidden), config.boundary_radius) \
            if config.question_boundary else None

    def output_size(self, hidden: int) -> int:
        """Width of the representation o fed to the heads."""
        return hidden

    @classmethod
    def from_state(cls, encoder: nn.Module, config: ModelConfig, state: dict[str, torch.Tensor]) -> "BaselineMRC":
        """An instance shaped to receive ``state`` (the saved weights)."""
        return cls(encoder, config)

    def attach_inputs(self, features: list[Any], examples: list[Any], tokenizer: Any) -> None:
        """Add model-specific inputs to ``features[i].extra`` (none for the baseline)."""

    def represent(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        """o from the encoder states H (identity for the baseline), and details: tensors to inspect, plus two keys
        the forward pass takes out: ``auxiliary_loss`` (added to the loss) and ``span_bias`` ([B, L, 2], added to
        the start/end logits)."""
        return hidden, {}

    def support_weight(self, o: torch.Tensor, hidden: torch.Tensor, start_logits: torch.Tensor,
                       end_logits: torch.Tensor, support_logits: torch.Tensor,
                       batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """λ of L = L_A + λ·L_S (fixed for the baseline)."""
        return o.new_tensor(self.config.support_weight)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor,
                context_mask: torch.Tensor, start_positions: torch.Tensor | None = None,
                end_positions: torch.Tensor | None = None, support_labels: torch.Tensor | None = None,
                category_labels: torch.Tensor | None = None, **extra: torch.Tensor) -> MRCOutput:
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids,
                 "context_mask": context_mask, **extra}
        if support_labels is not None:
            batch["support_labels"] = support_labels
        if start_positions is not None and end_positions is not None:
            batch.update(start_positions=start_positions, end_positions=end_positions)
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state
        o, details = self.represent(hidden, batch)
        auxiliary_loss, span_bias = details.pop("auxiliary_loss", None), details.pop("span_bias", None)
        if self.boundary is not None:
            bias = self.boundary(o, question_anchor(batch))
            if self.training and self.config.boundary_dropout:
                bias = bias * (torch.rand(bias.shape[0], 1, 1, device=bias.device) >= self.config.boundary_dropout)
            span_bias = bias if span_bias is None else span_bias + bias
        o = self.dropout(o)
        span_logits = self.span(o).float()  # fp32 logits and losses under autocast
        if span_bias is not None:  # [B, L, 2] added to the start/end logits by a family's represent()
            span_logits = span_logits + span_bias.float()
        start_logits, end_logits = span_logits.unbind(-1)
        start_logits, end_logits = answerable(start_logits, context_mask), answerable(end_logits, context_mask)
        support_logits = self.support(o).squeeze(-1).float()
        out = MRCOutput(start_logits, end_logits, support_logits, details=details)
        if self.category is not None:
            out.category_logits = self.category(self._answer_state(o, start_logits, end_logits)).float()
        if start_positions is not None and end_positions is not None:
            out.answer_loss = span_loss(start_logits, end_logits, start_positions, end_positions)
            out.support_loss = support_logits.new_zeros(())
            if support_labels is not None and (labelled := support_labels != -100).any():
                out.support_loss = nn.functional.binary_cross_entropy_with_logits(
                    support_logits[labelled], support_labels[labelled].to(support_logits.dtype))
            out.support_weight = self.support_weight(o, hidden, start_logits, end_logits, support_logits, batch)
            out.loss = self.config.answer_weight * out.answer_loss + out.support_weight * out.support_loss
            if auxiliary_loss is not None:
                out.auxiliary_loss = auxiliary_loss.float()
                out.loss = out.loss + out.auxiliary_loss
            if out.category_logits is not None and category_labels is not None:
                out.category_loss = self._category_loss(out.category_logits, category_labels)
                out.loss = out.loss + self.config.category_weight * out.category_loss
        return out

    def _answer_state(self, o: torch.Tensor, start_logits: torch.Tensor, end_logits: torch.Tensor) -> torch.Tensor:
        """a: o at [CLS], or the span pooling ½(Σ p_start·o + Σ p_end·o) with detached probabilities."""
        if self.config.category_pooling == "cls":
            return o[:, 0]
        weights = 0.5 * (start_logits.softmax(-1) + end_logits.softmax(-1)).detach().to(o.dtype)
        return torch.einsum("bl,bld->bd", weights, o)

    def _category_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Class-weighted BCE over the windows whose question has labels (unlabelled rows are −1)."""
        labelled = labels[:, 0] >= 0
        if not labelled.any():
            return logits.new_zeros(())
        weights = logits.new_tensor(self.config.category_class_weights) if self.config.category_class_weights \
            else None
        key = "pos_weight" if self.config.category_weighting == "positive" else "weight"
        return nn.functional.binary_cross_entropy_with_logits(logits[labelled], labels[labelled].to(logits.dtype),
                                                              **{key: weights})


def build_model(encoder: str | Path, config: ModelConfig, **kwargs: Any) -> BaselineMRC:
    """A fresh model on a pretrained encoder (Hugging Face name or path)."""
    return model_class(config.model_type)(AutoModel.from_pretrained(str(encoder)), config, **kwargs)


def save_model(model: BaselineMRC, tokenizer: Any, out: Path, extra_json: dict[str, Any] | None = None) -> None:
    """Write a self-contained model directory atomically (safetensors weights, no pickle)."""
    with atomic_path(out) as tmp:
        tmp.mkdir()
        model.encoder.config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS))
        payload = {"config": json.loads(model.config.model_dump_json()), **(extra_json or {})}
        (tmp / KGMRC_CONFIG).write_text(json.dumps(payload, ensure_ascii=False, indent=2), encoding="utf-8")


def read_model_json(path: Path) -> dict[str, Any]:
    file = Path(path) / KGMRC_CONFIG
    if not file.is_file():
        raise FileNotFoundError(f"{path}: not a kgmrc model directory (no {KGMRC_CONFIG})")
    return json.loads(file.read_text(encoding="utf-8"))


def update_model_json(path: Path, updates: dict[str, Any]) -> dict[str, Any]:
    """Merge ``updates`` into a model directory's kgmrc_config.json (atomically); the new contents."""
    payload = {**read_model_json(path), **updates}
    atomic_write_text(Path(path) / KGMRC_CONFIG, json.dumps(payload, ensure_ascii=False, indent=2))
    return payload


def load_model(path: Path, settings: dict[str, Any] | None = None) -> tuple[BaselineMRC, Any, dict[str, Any]]:
    """(model, tokenizer, kgmrc_config.json contents) from a directory written by :func:`save_model`;
    ``settings`` override the family's saved settings (e.g. ``{"index": DIR}`` for a moved entity index)."""
    payload = read_model_json(path)
    config = ModelConfig.model_validate(payload["config"])
    if settings:
        config = ModelConfig.model_validate({**config.model_dump(), "fusion": {**config.fusion, **settings}})
    encoder = AutoModel.from_config(AutoConfig.from_pretrained(str(path)))
    state = load_file(str(Path(path) / WEIGHTS))
    model = model_class(config.model_type).from_state(encoder, config, state)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.endswith("position_ids")]:
        raise ValueError(f"{path}: weights do not fit a {config.model_type} model "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model, AutoTokenizer.from_pretrained(str(path)), payload
