"""CMedBERT: the multi-task MRC model with KG entity embeddings fused into the encoder states.

    h⁰ = H = encoder(question, passage)
    for l in 0..L-1:  ē = LocalAttention(hˡ, entities of each token);  ê = GlobalAttention(hˡ_CLS, window entities)
                      hˡ⁺¹ = GatedFusion(hˡ, ē, ê)
    o = σ(W_o[H; hᴸ]);  span and support heads on o (as the baseline);  L = L_A + λ·L_S with dynamic λ
    (+ μ·L_K with ``knowledge_span_weight`` μ > 0: L_K is the span loss of the last loop's ē alone).
Token features add zero-start embeddings to o: the KG relation to a question entity (``relation_feature``) and the
KG-score rank bucket b_i of the token's entity (``kg_score_feature``; ``fusion.entities``); ``kg_score_bias`` adds
a zero-start prior to the span logits instead: start_i += β_s[b_i], end_i += β_e[b_i]; ``entity_boundary`` adds
zero-start logits of where the answer starts and ends around the window's top-ranked entity (its offset from the
entity's mentions and its state, mrc.boundary.BoundaryHead; ``entity_boundary_source`` anchors it on every
linked entity or, a control without knowledge, on the passage text shared with the question).
Ablations: ``local=False`` (ē = 0), ``global_=False`` (ê = 0), ``dynamic_lambda=False`` (fixed λ), ``loops``.
With every entity masked, ē = ê = 0 and the model is the same computation as with fusion on an empty KG.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from fusion.entities import KG_SCORE_BUCKETS, EntityInputs
from fusion.layers import (DynamicLambda, EntityRepresentation, GatedFusion, GlobalEntityAttention,
                           KnowledgeSpanHead, LocalEntityAttention, OutputMerge, ScaleShift)
from kg.embeddings.export import KGEmbeddings
from mrc.boundary import BoundaryHead, question_anchor, question_tokens
from mrc.model import BaselineMRC, ModelConfig, answerable, span_loss
from retrieval.index import EntityIndex


_NAME_TOKENS = 8  # sub-words kept of an entity name
KG_BIAS_RATE = 100.0  # the KG-score bias is 100·θ: 14 numbers that must reach log-odds within one run


class FusionConfig(BaseModel):
    """CMedBERT settings (``ModelConfig.fusion``)."""

    model_config = ConfigDict(extra="forbid")

    index: str | None = Field(None, description="entity index directory")
    embeddings: str | None = Field(None, description="KG embeddings directory (train_kg_embeddings.py)")
    entities_per_token: int = Field(4, ge=1, description="K")
    max_window_entities: int = Field(64, ge=1, description="N: entities of a window for global attention")
    tune_entities: bool = False
    local: bool = True
    global_: bool = True
    dynamic_lambda: bool = True
    lambda_grad: bool = Field(False, description="let gradients flow through λ (else λ is a stop-gradient weight)")
    loops: int = Field(2, ge=1, description="gated-loop iterations L")
    residual: bool = Field(False, description="hˡ⁺¹ = h⁰ + G ⊙ hˡ (stabilising variant)")
    merge_residual: bool = Field(False, description="o = h + tanh(W_o[h; hᴸ]), W_o = 0 at the start: training "
                                                     "starts from the baseline's function (stabilising variant)")
    linker: dict[str, Any] = Field(default_factory=dict, description="retrieval.linker.LinkerConfig overrides")
    cache_dir: str | None = Field(None, description="entity-input cache (default: INDEX/cache)")
    snapshot_checksum: str | None = Field(None, description="the KG snapshot of the entity table, recorded when "
                                                            "the model is built; an index of another is refused")
    entity_features: list[Literal["kg", "name", "type"]] = Field(
        default_factory=lambda: ["kg"], description="what an entity vector is made of: its KG embedding, its name "
        "in the encoder's own word embeddings, its type (the paper: kg only)")
    entity_dim: int | None = Field(None, ge=8, description="projected entity width when more than kg is used "
                                                           "(default: the encoder's hidden size)")
    global_order: Literal["first", "evidence"] = Field(
        "first", description="which N entities of a window global attention sees: by first occurrence (the "
        "paper), or by evidence (question entities, then best per-token rank, then mention count)")
    scale_shift: bool = Field(False, description="add knowledge as a zero-start scale and shift of the token "
                                                 "states (KALA-style) instead of the σ output merge")
    lambda_floor: float = Field(0.0, ge=0, description="dynamic λ is at least this (keeps the support loss)")
    relation_feature: bool = Field(False, description="a token feature: the KG relation between a question entity "
                                   "and the token's entity (retrieval.relations), a zero-start embedding added to "
                                   "the output states")
    kg_score_feature: bool = Field(False, description="a token feature: the rank of the token's entity among the "
                                   "window's passage entities by how well the KG vectors fit a triple from a question "
                                   "entity over the relations the question names (fusion.entities), bucketed, a "
                                   "zero-start embedding added to the output states; the vectors' model must have a "
                                   "triple score in KGEmbeddings.fit_scores (TransE, PTransE, RotatE, DistMult, "
                                   "ComplEx)")
    kg_score_bias: bool = Field(False, description="the same rank buckets as a prior on the span: a zero-start "
                                "bias per bucket added to the start and end logits (the log-odds the KG ranking is "
                                "worth), moving at KG_BIAS_RATE × the learning rate")
    entity_boundary: bool = Field(False, description="answer-boundary logits conditioned on the window's top "
                                  "KG-ranked passage entity (bucket 1 of the KG-score ranking; another anchor with "
                                  "entity_boundary_source): a zero-start bias by offset from its mentions' first and "
                                  "last tokens and a bilinear score of each token against the entity's mean state "
                                  "(mrc.boundary.BoundaryHead)")
    entity_boundary_radius: int = Field(16, ge=1, description="offsets beyond ± this many tokens share one bias")
    entity_boundary_anchor: int = Field(1, ge=1, le=len(KG_SCORE_BUCKETS) + 1, description="the KG-score bucket "
                                        "whose tokens anchor the head: 1, the top-ranked entity; another is a control "
                                        "of what the ranking contributes (bench/knowledge_ablation.py --control)")
    entity_boundary_source: Literal["kg_rank", "linked", "question_overlap"] = Field(
        "kg_rank", description="what anchors the boundary head: kg_rank, the passage entity of KG-score bucket "
        "entity_boundary_anchor; linked, every linked passage entity (the linker, no KG scores); question_overlap, the "
        "passage tokens in a bigram shared with the question (text alone, no knowledge: a control, which "
        "knowledge=false leaves in place; the anchor of every family's model.question_boundary head, kept here for "
        "the recorded runs, whose head is named entity_boundary)")
    snapshot: str | None = Field(None, description="KG snapshot of the index, for the relation and KG-score features "
                                                   "(default: the path the index recorded)")
    knowledge_span_weight: float = Field(0.0, ge=0, description="μ of an auxiliary loss L += μ·L_K: the answer "
                                         "span predicted from the entities alone (fusion.layers.KnowledgeSpanHead), a "
                                         "training signal only the knowledge path can answer; 0 = off")
    knowledge: bool = Field(True, description="false masks every entity, relation and KG score (ē = ê = 0): the "
                                              "same model on an empty KG, the inference-time ablation that measures "
                                              "what its knowledge contributes (bench/knowledge_ablation.py)")

    @property
    def uses_kg_scores(self) -> bool:
        """Whether the model reads the KG-score rank buckets (``kg_score_ids``)."""
        return (self.kg_score_feature or self.kg_score_bias
                or (self.entity_boundary and self.entity_boundary_source == "kg_rank"))


class CMedBERT(BaselineMRC):
    model_type = "cmedbert"
    settings = FusionConfig
    added_modules = ("entities", "local_attention", "global_attention", "gate", "merge", "dynamic_lambda", "relation",
                     "kg_score", "kg_score_bias", "knowledge_span", "entity_boundary")
    frozen_settings = json.loads(Path(__file__).with_name("fingerprint_defaults.json").read_text(encoding="utf-8"))

    def __init__(self, encoder: nn.Module, config: ModelConfig, *, tables: dict[str, torch.Tensor] | None = None
                 ) -> None:
        """``tables`` (kg, name_ids, type_ids, n_types, n_relations) rebuild a saved model; without them they come
        from the configured KG-embeddings export and entity index."""
        self.fusion = FusionConfig.model_validate(config.fusion)
        super().__init__(encoder, config)
        self._inputs: EntityInputs | None = None
        hidden = encoder.config.hidden_size
        tables = tables or self._build_tables(encoder)
        kg = tables["kg"].float()
        kg = torch.cat([kg, kg.new_zeros(1, kg.shape[1])])  # row E: the padding entity, a zero vector
        self.entities = EntityRepresentation(
            kg, tuple(self.fusion.entity_features), encoder.get_input_embeddings(), tables["name_ids"],
            tables["type_ids"], int(tables["n_types"]), self.fusion.entity_dim or hidden,
            tune_kg=self.fusion.tune_entities)
        d_e = self.entities.dim
        self.local_attention = LocalEntityAttention(hidden, d_e)
        self.global_attention = GlobalEntityAttention(hidden, d_e)
        self.gate = GatedFusion(hidden, d_e, residual=self.fusion.residual)
        self.merge = ScaleShift(hidden, d_e) if self.fusion.scale_shift else \
            OutputMerge(hidden, residual=self.fusion.merge_residual)
        self.dynamic_lambda = DynamicLambda(hidden)
        if self.fusion.knowledge_span_weight > 0:
            self.knowledge_span = KnowledgeSpanHead(hidden, d_e)
        if self.fusion.relation_feature:  # row 0: no relation; every row starts at 0, so o starts unchanged
            self.relation = nn.Embedding(int(tables["n_relations"]) + 1, hidden, padding_idx=0)
            nn.init.zeros_(self.relation.weight)
        if self.fusion.kg_score_feature:  # row 0: no scored entity; zero-start like the relation feature
            self.kg_score = nn.Embedding(len(KG_SCORE_BUCKETS) + 2, hidden, padding_idx=0)
            nn.init.zeros_(self.kg_score.weight)
        if self.fusion.kg_score_bias:  # [start, end] bias per bucket, zero at the start
            self.kg_score_bias = nn.Embedding(len(KG_SCORE_BUCKETS) + 2, 2, padding_idx=0)
            nn.init.zeros_(self.kg_score_bias.weight)
        if self.fusion.entity_boundary:
            self.entity_boundary = BoundaryHead(hidden, self.fusion.entity_boundary_radius)

    @classmethod
    def from_state(cls, encoder: nn.Module, config: ModelConfig, state: dict[str, torch.Tensor]) -> "CMedBERT":
        """Rebuild a saved model: the entity tables come from its own weights, not from the export paths."""
        types, relations = state.get("entities.types.weight"), state.get("relation.weight")
        return cls(encoder, config, tables={
            "kg": state["entities.kg.weight"][:-1], "name_ids": state["entities.name_ids"],
            "type_ids": state["entities.type_ids"],
            "n_types": types.shape[0] - 1 if types is not None else int(state["entities.type_ids"].max()),
            "n_relations": relations.shape[0] - 1 if relations is not None else 0})

    def _build_tables(self, encoder: nn.Module) -> dict[str, Any]:
        """KG vectors of the embeddings export (checked against the index's snapshot), each entity's name as
        encoder sub-word ids and its type id. The snapshot checksum and the absolute index path are recorded in
        the model's settings, so a saved model finds its index from anywhere and refuses one of another KG."""
        if not self.fusion.index or not self.fusion.embeddings:
            raise ValueError("cmedbert needs fusion.index and fusion.embeddings (--index, --embeddings)")
        index = EntityIndex.load(self.fusion.index)
        kg = KGEmbeddings.load(self.fusion.embeddings, snapshot_checksum=index.snapshot_checksum).entity
        self.fusion = self.fusion.model_copy(update={
            "index": str(Path(self.fusion.index).resolve()), "embeddings": str(Path(self.fusion.embeddings).resolve()),
            "snapshot": str(Path(self.fusion.snapshot).resolve()) if self.fusion.snapshot else None,
            "snapshot_checksum": index.snapshot_checksum})
        self.config = self.config.model_copy(update={"fusion": self.fusion.model_dump()})
        vocabulary = sorted({t for t in index.types if t})
        type_of = {t: i for i, t in enumerate(vocabulary)}
        type_ids = torch.tensor([type_of.get(t, len(vocabulary)) for t in index.types] + [len(vocabulary)])
        name_ids = torch.full((len(index.names) + 1, 1), -1, dtype=torch.long)
        if "name" in self.fusion.entity_features:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(encoder.config.name_or_path)
            encoded = tokenizer(index.names, add_special_tokens=False, truncation=True, max_length=_NAME_TOKENS)
            name_ids = torch.full((len(index.names) + 1, _NAME_TOKENS), -1, dtype=torch.long)
            for i, ids in enumerate(encoded["input_ids"]):
                name_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        n_relations = self.entity_inputs().relations.num_relations if self.fusion.relation_feature else 0
        return {"kg": kg, "name_ids": name_ids, "type_ids": type_ids, "n_types": len(vocabulary),
                "n_relations": n_relations}

    @property
    def num_entities(self) -> int:
        return self.entities.kg.num_embeddings - 1

    # -- inputs -------------------------------------------------------------------------------------------------
    def entity_inputs(self) -> EntityInputs:
        if self._inputs is None:
            self._inputs = EntityInputs(self.fusion)
        return self._inputs

    def attach_inputs(self, features: list[Any], examples: list[Any], tokenizer: Any) -> None:
        self.entity_inputs().attach(features, examples)

    # -- fusion -------------------------------------------------------------------------------------------------
    def _lookup(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = ids >= 0
        return self.entities(torch.where(mask, ids, self.num_entities)), mask

    @staticmethod
    def window_entities(ids: torch.Tensor, limit: int, order: str = "first",
                        question: torch.Tensor | None = None) -> torch.Tensor:
        """The distinct entity ids of each window, [B, N] padded with -1: the first ``limit`` by first
        occurrence, or by evidence: question entities first (``question`` [B, L] marks question tokens), then
        the best per-token rank (slot 0 = the token's best-scored link), then more mentions, then first
        occurrence."""
        out = torch.full((ids.shape[0], limit), -1, dtype=ids.dtype, device=ids.device)
        for b in range(ids.shape[0]):
            grid = ids[b].cpu().numpy()  # [L, K]
            tokens, slots = np.nonzero(grid >= 0)
            if not len(tokens):
                continue
            flat = grid[tokens, slots]
            uniq, first, counts = np.unique(flat, return_index=True, return_counts=True)
            if order == "evidence":
                in_question = np.zeros(len(uniq), dtype=bool)
                best_slot = np.full(len(uniq), grid.shape[1])
                where = np.searchsorted(uniq, flat)
                np.minimum.at(best_slot, where, slots)
                if question is not None:
                    q = question[b].cpu().numpy().astype(bool)[tokens]
                    np.logical_or.at(in_question, where, q)
                rank = np.lexsort((first, -counts, best_slot, ~in_question))
            else:
                rank = np.argsort(first)
            chosen = uniq[rank][:limit]
            out[b, : len(chosen)] = torch.from_numpy(chosen).to(ids.device)
        return out

    def represent(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        ids = batch.get("entity_ids")
        if ids is None:
            raise ValueError("cmedbert inputs lack entity_ids; call model.attach_inputs(features, ...) first")
        mask = batch["attention_mask"].bool().unsqueeze(-1) & self.fusion.knowledge
        ids = ids.masked_fill(~mask, -1)
        token_entities, token_mask = self._lookup(ids)  # [B,L,K,d_e]
        question = question_tokens(batch)
        window_ids = self.window_entities(ids, self.fusion.max_window_entities, self.fusion.global_order, question)
        window_entities, window_mask = self._lookup(window_ids)  # [B,N,d_e]
        h = hidden
        zeros = hidden.new_zeros(*hidden.shape[:2], token_entities.shape[-1])
        alpha = beta = None
        local = global_ = zeros
        for _ in range(self.fusion.loops):
            local, alpha = self.local_attention(h, token_entities, token_mask) if self.fusion.local else (zeros, None)
            if self.fusion.global_:
                g, beta = self.global_attention(h[:, 0], window_entities, window_mask)
                global_ = g.unsqueeze(1).expand_as(zeros)
            else:
                global_ = zeros
            h, _ = self.gate(h, hidden, local, global_)
        details = {"entity_ids": ids, "window_entity_ids": window_ids}
        if self.fusion.knowledge_span_weight > 0 and "start_positions" in batch:
            start, end = (answerable(x.float(), batch["context_mask"])
                          for x in self.knowledge_span(local, hidden[:, 0]))
            details["auxiliary_loss"] = self.fusion.knowledge_span_weight * span_loss(
                start, end, batch["start_positions"], batch["end_positions"])
        if alpha is not None:
            details["local_attention"] = alpha
        if beta is not None:
            details["global_attention"] = beta
        # the last loop's knowledge scales and shifts the encoder states, or the σ merge combines h⁰ and hᴸ
        o = self.merge(hidden, local, global_) if self.fusion.scale_shift else self.merge(hidden, h)
        if self.fusion.relation_feature:
            relations = batch.get("relation_ids")
            if relations is None:
                raise ValueError("cmedbert inputs lack relation_ids; call model.attach_inputs(features, ...) first")
            o = o + self.relation(relations.clamp(min=0) * self.fusion.knowledge)
        buckets = None
        if self.fusion.uses_kg_scores:
            buckets = batch.get("kg_score_ids")
            if buckets is None:
                raise ValueError("cmedbert inputs lack kg_score_ids; call model.attach_inputs(features, ...) first")
            buckets = buckets.clamp(min=0) * self.fusion.knowledge
            if self.fusion.kg_score_feature:
                o = o + self.kg_score(buckets)
            if self.fusion.kg_score_bias:  # Adam's steps do not depend on scale: ×rate moves the bias rate× faster
                details["span_bias"] = KG_BIAS_RATE * self.kg_score_bias(buckets)
        if self.fusion.entity_boundary:
            bias = self.entity_boundary(o, self.boundary_anchor(ids, buckets, batch))
            details["span_bias"] = details["span_bias"] + bias if "span_bias" in details else bias
        return o, details

    def boundary_anchor(self, ids: torch.Tensor, buckets: torch.Tensor | None,
                        batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """[B, L] bool: the tokens that anchor the boundary head (``entity_boundary_source``); ``ids`` and
        ``buckets`` are already masked when ``knowledge`` is false."""
        source, passage = self.fusion.entity_boundary_source, batch["context_mask"]
        if source == "linked":
            return passage & (ids >= 0).any(dim=-1)
        if source == "question_overlap":
            return question_anchor(batch)
        return buckets == self.fusion.entity_boundary_anchor

    def support_weight(self, o: torch.Tensor, hidden: torch.Tensor, start_logits: torch.Tensor,
                       end_logits: torch.Tensor, support_logits: torch.Tensor,
                       batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if not self.fusion.dynamic_lambda:
            return super().support_weight(o, hidden, start_logits, end_logits, support_logits, batch)
        lam, _ = self.dynamic_lambda(o, start_logits, end_logits, support_logits, batch["context_mask"],
                                     batch.get("support_labels"))
        lam = lam.clamp(min=self.fusion.lambda_floor)
        return lam if self.fusion.lambda_grad else lam.detach()

    # -- inspection ---------------------------------------------------------------------------------------------
    def describe_entities(self, feature: Any, details: dict[str, np.ndarray], tokenizer: Any, question: str,
                          passage: str) -> list[dict[str, Any]]:
        """Linked entities of one window with their mean local attention over the linked tokens and their
        global attention from [CLS]."""
        return self.entity_inputs().describe(feature, details, question, passage)
