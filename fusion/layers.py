"""CMedBERT knowledge-fusion layers (Zhang et al. 2021), one equation per module.

Shapes: B batch, L tokens, K entities per token, N entities per window, d_h hidden, d_e entity dimension.
Masks are boolean (True = real). Softmax over an empty set yields zeros (never NaN).
"""

from __future__ import annotations

import torch
from torch import nn


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """softmax over ``dim`` restricted to ``mask``; rows with no True entry give all zeros."""
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=dim) * mask
    return weights / weights.sum(dim=dim, keepdim=True).clamp(min=1e-12)


class LocalEntityAttention(nn.Module):
    """Token → its own entities.  α_ij = softmax_j(e_ijᵀ W h_i),  ē_i = Σ_j α_ij e_ij   (W: d_e×d_h)."""

    def __init__(self, hidden: int, entity_dim: int) -> None:
        super().__init__()
        self.W = nn.Linear(hidden, entity_dim, bias=False)  # W h_i ∈ ℝ^{d_e}

    def forward(self, h: torch.Tensor, entities: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h [B,L,d_h], entities [B,L,K,d_e], mask [B,L,K] → (ē [B,L,d_e], α [B,L,K])."""
        scores = torch.einsum("blkd,bld->blk", entities, self.W(h))
        alpha = masked_softmax(scores, mask)
        return torch.einsum("blk,blkd->bld", alpha, entities), alpha


class GlobalEntityAttention(nn.Module):
    """[CLS] → every entity of the window.  β_j = softmax_j(e_jᵀ W h_CLS),  ê = Σ_j β_j e_j."""

    def __init__(self, hidden: int, entity_dim: int) -> None:
        super().__init__()
        self.W = nn.Linear(hidden, entity_dim, bias=False)

    def forward(self, h_cls: torch.Tensor, entities: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """h_cls [B,d_h], entities [B,N,d_e], mask [B,N] → (ê [B,d_e], β [B,N])."""
        scores = torch.einsum("bnd,bd->bn", entities, self.W(h_cls))
        beta = masked_softmax(scores, mask)
        return torch.einsum("bn,bnd->bd", beta, entities), beta


class GatedFusion(nn.Module):
    """One loop step.  G = σ(tanh(W_g[hˡ; ē; ê])),  hˡ⁺¹ = G ⊙ hˡ.

    With ``residual`` (a stabilising variant, off by default) hˡ⁺¹ = h⁰ + G ⊙ hˡ: the encoder states are kept,
    so repeated gating (G ∈ (0.27, 0.73)) cannot shrink the representation towards zero.
    """

    def __init__(self, hidden: int, entity_dim: int, residual: bool = False) -> None:
        super().__init__()
        self.W_g = nn.Linear(hidden + 2 * entity_dim, hidden)
        self.residual = residual

    def forward(self, h: torch.Tensor, h0: torch.Tensor, local: torch.Tensor, global_: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """h, h0 [B,L,d_h], local [B,L,d_e], global_ [B,L,d_e] → (hˡ⁺¹, G)."""
        gate = torch.sigmoid(torch.tanh(self.W_g(torch.cat([h, local, global_], dim=-1))))
        out = gate * h
        return (h0 + out if self.residual else out), gate


class OutputMerge(nn.Module):
    """o_i = σ(W_o[h_i; h_iᴸ]): the encoder state and the knowledge-fused state of each token.

    ``residual`` (stabilising variant): o_i = h_i + tanh(W_o[h_i; h_iᴸ]) with W_o = 0 at the start, so the model
    starts as the baseline's function (heads carried over from a baseline see the states they were trained on)
    and learns how much knowledge to add.
    """

    def __init__(self, hidden: int, residual: bool = False) -> None:
        super().__init__()
        self.W_o = nn.Linear(2 * hidden, hidden)
        self.residual = residual
        if residual:
            nn.init.zeros_(self.W_o.weight)
            nn.init.zeros_(self.W_o.bias)

    def forward(self, h: torch.Tensor, h_fused: torch.Tensor) -> torch.Tensor:
        merged = self.W_o(torch.cat([h, h_fused], dim=-1))
        return h + torch.tanh(merged) if self.residual else torch.sigmoid(merged)


class DynamicLambda(nn.Module):
    """λ = max(0, cos(H_A, h_su)) weighting the support loss in L = L_A + λ·L_S.

    Pooled representations (masked to the passage): o_st = Σ softmax(start)_i o_i, o_ed = Σ softmax(end)_i o_i,
    o_sp = Σ softmax(support)_i o_i. Self-attention over the three: γ_x = softmax_x(vᵀ tanh(U o_x)).
    H_A = σ(W_A[γ_st o_st; γ_ed o_ed; γ_sp o_sp]).  h_su = mean of o over the gold support tokens of the window
    (windows without support tokens get λ = 0). λ is averaged over the batch.
    """

    def __init__(self, hidden: int, attention_dim: int = 128) -> None:
        super().__init__()
        self.U = nn.Linear(hidden, attention_dim)
        self.v = nn.Linear(attention_dim, 1, bias=False)
        self.W_A = nn.Linear(3 * hidden, hidden)

    def forward(self, o: torch.Tensor, start_logits: torch.Tensor, end_logits: torch.Tensor,
                support_logits: torch.Tensor, context_mask: torch.Tensor, support_labels: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """→ (λ scalar, per-window λ [B])."""
        pooled = []
        for logits in (start_logits, end_logits, support_logits):
            weights = masked_softmax(logits.float(), context_mask).to(o.dtype)
            pooled.append(torch.einsum("bl,bld->bd", weights, o))
        stacked = torch.stack(pooled, dim=1)  # [B, 3, d_h]
        gamma = torch.softmax(self.v(torch.tanh(self.U(stacked))).squeeze(-1), dim=1)  # [B, 3]
        h_a = torch.sigmoid(self.W_A((gamma.unsqueeze(-1) * stacked).flatten(1)))
        if support_labels is None:
            per_window = o.new_zeros(o.shape[0])
        else:
            gold = (support_labels == 1) & context_mask
            count = gold.sum(dim=1, keepdim=True)
            h_su = torch.einsum("bl,bld->bd", gold.to(o.dtype), o) / count.clamp(min=1)
            per_window = torch.relu(nn.functional.cosine_similarity(h_a, h_su, dim=-1)) * (count.squeeze(1) > 0)
        return per_window.mean(), per_window


class EntityRepresentation(nn.Module):
    """e_j = W_p [kg_j; name_j; type_j], the parts chosen by ``features`` (a subset of kg, name, type).

    kg_j: the KG-embedding row (TransE, PTransE, …); name_j = mean of the MRC encoder's own word embeddings of the
    entity name's sub-words (the encoder's space, trained with it); type_j: a learned embedding of the entity type
    from the index (疾病, 症状, 药物, 检查, …). With ``features == ("kg",)`` W_p is the identity (the paper).
    """

    def __init__(self, kg_table: torch.Tensor, features: tuple[str, ...], word_embeddings: nn.Embedding,
                 name_ids: torch.Tensor, type_ids: torch.Tensor, n_types: int, out_dim: int, type_dim: int = 32,
                 tune_kg: bool = False) -> None:
        super().__init__()
        self.features = features
        self.kg = nn.Embedding.from_pretrained(kg_table, freeze=not tune_kg, padding_idx=kg_table.shape[0] - 1)
        # The encoder's own embedding module, referenced but not registered: its weights stay the encoder's
        # (one copy in the state dict, moved with the encoder).
        self.__dict__["word_embeddings"] = word_embeddings
        self.register_buffer("name_ids", name_ids, persistent=True)  # [E+1, T], -1 padded
        self.register_buffer("type_ids", type_ids, persistent=True)  # [E+1], n_types = untyped / padding
        self.types = nn.Embedding(n_types + 1, type_dim) if "type" in features else None
        widths = {"kg": kg_table.shape[1], "name": word_embeddings.embedding_dim, "type": type_dim}
        width = sum(widths[f] for f in features)
        self.project = nn.Identity() if features == ("kg",) else nn.Linear(width, out_dim)
        self.dim = kg_table.shape[1] if features == ("kg",) else out_dim

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [...] (padding row for none) → e [..., dim]."""
        parts = []
        for feature in self.features:
            if feature == "kg":
                parts.append(self.kg(ids))
            elif feature == "name":
                tokens = self.name_ids[ids]  # [..., T]
                mask = (tokens >= 0).unsqueeze(-1)
                vectors = self.word_embeddings(tokens.clamp(min=0)) * mask
                parts.append(vectors.sum(-2) / mask.sum(-2).clamp(min=1))
            else:
                parts.append(self.types(self.type_ids[ids]))
        return self.project(torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0])


class ScaleShift(nn.Module):
    """Knowledge as a feature-wise scale and shift of each token state (KALA-style):
    o_i = h_i ⊙ (1 + tanh(W_γ[ē_i; ê])) + W_β[ē_i; ê], with W_γ = W_β = 0 at the start (o = h: the baseline)."""

    def __init__(self, hidden: int, entity_dim: int) -> None:
        super().__init__()
        self.gamma = nn.Linear(2 * entity_dim, hidden)
        self.beta = nn.Linear(2 * entity_dim, hidden)
        for layer in (self.gamma, self.beta):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, h: torch.Tensor, local: torch.Tensor, global_: torch.Tensor) -> torch.Tensor:
        knowledge = torch.cat([local, global_], dim=-1)
        return h * (1 + torch.tanh(self.gamma(knowledge))) + self.beta(knowledge)


class KnowledgeSpanHead(nn.Module):
    """Span logits that only the entities can give: a token's entity summary ē_i against the question-aware
    [CLS] state, s_i = ē_iᵀ W_s h_CLS and e_i = ē_iᵀ W_e h_CLS (tokens without entities score 0). Trained as an
    auxiliary loss, it teaches the entity attention and vectors to mark answers."""

    def __init__(self, hidden: int, entity_dim: int) -> None:
        super().__init__()
        self.W = nn.Linear(hidden, 2 * entity_dim, bias=False)

    def forward(self, local: torch.Tensor, h_cls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """local [B,L,d_e], h_cls [B,d_h] → (start, end) logits [B,L]."""
        queries = self.W(h_cls).view(h_cls.shape[0], 2, local.shape[-1])
        return torch.einsum("bld,bkd->blk", local, queries).unbind(-1)
