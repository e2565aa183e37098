"""CMedBERT: the multi-task MRC model with KG entity embeddings fused into the encoder states.

    h⁰ = H = encoder(question, passage)
    for l in 0..L-1:  ē = LocalAttention(hˡ, entities of each token);  ê = GlobalAttention(hˡ_CLS, window entities)
                      hˡ⁺¹ = GatedFusion(hˡ, ē, ê)
    o = σ(W_o[H; hᴸ]);  span and support heads on o (as the baseline);  L = L_A + λ·L_S with dynamic λ.
Ablations: ``local=False`` (ē = 0), ``global_=False`` (ê = 0), ``dynamic_lambda=False`` (fixed λ), ``loops``.
With every entity masked, ē = ê = 0 and the model is the same computation as with fusion on an empty KG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from fusion.entities import EntityInputs
from fusion.layers import DynamicLambda, GatedFusion, GlobalEntityAttention, LocalEntityAttention, OutputMerge
from kg.embeddings import KGEmbeddings
from mrc.model import BaselineMRC, ModelConfig
from retrieval.index import EntityIndex


class FusionConfig(BaseModel):
    """CMedBERT settings (``ModelConfig.fusion``)."""

    model_config = ConfigDict(extra="forbid")

    index: str | None = Field(None, description="entity index directory")
    embeddings: str | None = Field(None, description="KG embeddings directory (#3 export)")
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


class CMedBERT(BaselineMRC):
    model_type = "cmedbert"
    settings = FusionConfig

    def __init__(self, encoder: nn.Module, config: ModelConfig, *, entity_matrix: torch.Tensor | None = None
                 ) -> None:
        self.fusion = FusionConfig.model_validate(config.fusion)
        super().__init__(encoder, config)
        hidden = encoder.config.hidden_size
        if entity_matrix is None:
            entity_matrix = self._load_entity_matrix()
        # Row E is the padding entity: a zero vector.
        table = torch.cat([entity_matrix.float(), entity_matrix.new_zeros(1, entity_matrix.shape[1]).float()])
        self.entity_embeddings = nn.Embedding.from_pretrained(table, freeze=not self.fusion.tune_entities,
                                                              padding_idx=table.shape[0] - 1)
        d_e = table.shape[1]
        self.local_attention = LocalEntityAttention(hidden, d_e)
        self.global_attention = GlobalEntityAttention(hidden, d_e)
        self.gate = GatedFusion(hidden, d_e, residual=self.fusion.residual)
        self.merge = OutputMerge(hidden, residual=self.fusion.merge_residual)
        self.dynamic_lambda = DynamicLambda(hidden)
        self._inputs: EntityInputs | None = None

    @classmethod
    def from_state(cls, encoder: nn.Module, config: ModelConfig, state: dict[str, torch.Tensor]) -> "CMedBERT":
        """Rebuild a saved model: the entity table comes from its own weights, not from the export paths."""
        return cls(encoder, config, entity_matrix=state["entity_embeddings.weight"][:-1])

    def _load_entity_matrix(self) -> torch.Tensor:
        """Entity embeddings of the KG-embeddings export, checked against the snapshot of the entity index. The
        snapshot checksum and the absolute index path are recorded in the model's settings, so a saved model
        finds its index from anywhere and refuses one built from another snapshot."""
        if not self.fusion.index or not self.fusion.embeddings:
            raise ValueError("cmedbert needs fusion.index and fusion.embeddings (--index, --embeddings)")
        index = EntityIndex.load(self.fusion.index)
        matrix = KGEmbeddings.load(self.fusion.embeddings, snapshot_checksum=index.snapshot_checksum).entity
        self.fusion = self.fusion.model_copy(update={
            "index": str(Path(self.fusion.index).resolve()), "embeddings": str(Path(self.fusion.embeddings).resolve()),
            "snapshot_checksum": index.snapshot_checksum})
        self.config = self.config.model_copy(update={"fusion": self.fusion.model_dump()})
        return matrix

    @property
    def num_entities(self) -> int:
        return self.entity_embeddings.num_embeddings - 1

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
        return self.entity_embeddings(torch.where(mask, ids, self.num_entities)), mask

    @staticmethod
    def window_entities(ids: torch.Tensor, limit: int) -> torch.Tensor:
        """The distinct entity ids of each window, [B, N] padded with -1 (first ``limit`` by first occurrence)."""
        out = torch.full((ids.shape[0], limit), -1, dtype=ids.dtype, device=ids.device)
        for b in range(ids.shape[0]):
            flat = ids[b].flatten()
            flat = flat[flat >= 0]
            if flat.numel():
                uniq, first = np.unique(flat.cpu().numpy(), return_index=True)
                chosen = uniq[np.argsort(first)][:limit]
                out[b, : len(chosen)] = torch.from_numpy(chosen).to(ids.device)
        return out

    def represent(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        ids = batch.get("entity_ids")
        if ids is None:
            raise ValueError("cmedbert inputs lack entity_ids; call model.attach_inputs(features, ...) first")
        ids = ids.masked_fill(~batch["attention_mask"].bool().unsqueeze(-1), -1)
        token_entities, token_mask = self._lookup(ids)  # [B,L,K,d_e]
        window_ids = self.window_entities(ids, self.fusion.max_window_entities)
        window_entities, window_mask = self._lookup(window_ids)  # [B,N,d_e]
        h = hidden
        zeros = hidden.new_zeros(*hidden.shape[:2], token_entities.shape[-1])
        alpha = beta = None
        for _ in range(self.fusion.loops):
            local, alpha = self.local_attention(h, token_entities, token_mask) if self.fusion.local else (zeros, None)
            if self.fusion.global_:
                g, beta = self.global_attention(h[:, 0], window_entities, window_mask)
                global_ = g.unsqueeze(1).expand_as(zeros)
            else:
                global_ = zeros
            h, _ = self.gate(h, hidden, local, global_)
        details = {"entity_ids": ids, "window_entity_ids": window_ids}
        if alpha is not None:
            details["local_attention"] = alpha
        if beta is not None:
            details["global_attention"] = beta
        return self.merge(hidden, h), details

    def support_weight(self, o: torch.Tensor, hidden: torch.Tensor, start_logits: torch.Tensor,
                       end_logits: torch.Tensor, support_logits: torch.Tensor,
                       batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if not self.fusion.dynamic_lambda:
            return super().support_weight(o, hidden, start_logits, end_logits, support_logits, batch)
        lam, _ = self.dynamic_lambda(o, start_logits, end_logits, support_logits, batch["context_mask"],
                                     batch.get("support_labels"))
        return lam if self.fusion.lambda_grad else lam.detach()

    # -- inspection ---------------------------------------------------------------------------------------------
    def describe_entities(self, feature: Any, details: dict[str, np.ndarray], tokenizer: Any, question: str,
                          passage: str) -> list[dict[str, Any]]:
        """Linked entities of one window with their mean local attention over the linked tokens and their
        global attention from [CLS]."""
        return self.entity_inputs().describe(feature, details, question, passage)
