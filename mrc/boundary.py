"""The boundary head: logits of where the answer starts and ends relative to anchor tokens of the window.

The anchor is a [B, L] bool mask. The baseline family anchors it on the question's own words in the passage
(:func:`question_anchor`, ``ModelConfig.question_boundary``: text alone, no knowledge); ``fusion.cmedbert`` also
anchors it on a KG-ranked or linked passage entity (``fusion.entity_boundary``). With b_i the offset buckets of
:func:`anchor_offsets` and m the mean output state over the anchor tokens,
    start_i += ρ·β_s[b_i,0] + o_iᵀ U_s m / √d_h,    end_i += ρ·β_e[b_i,1] + o_iᵀ U_e m / √d_h
β and U start at 0 (the model without the head); a window without an anchor gets 0.
"""

from __future__ import annotations

import torch
from torch import nn

BOUNDARY_RATE = 100.0  # ρ: Adam's steps do not depend on scale, so ρ·β moves ρ× faster (a few numbers to log-odds)


def anchor_offsets(anchor: torch.Tensor, radius: int) -> torch.Tensor:
    """Offset buckets of every token from its window's anchor mentions (runs of True in ``anchor`` [B, L]):
    [..., 0] from the nearest mention's first token, [..., 1] from the nearest mention's last token. With
    d = i − j: bucket d + R + 2 for |d| ≤ R, 1 beyond, 0 in a window without an anchor (ties: the earlier
    mention) → [B, L, 2] long."""
    b, n = anchor.shape
    position = torch.arange(n, device=anchor.device)
    none = anchor.new_zeros(b, 1)
    first = anchor & ~torch.cat([none, anchor[:, :-1]], dim=1)
    last = anchor & ~torch.cat([anchor[:, 1:], none], dim=1)
    delta = position[:, None] - position[None, :]  # [L, L]: i − j
    out = []
    for marks in (first, last):
        distance = torch.where(marks[:, None, :], delta.abs(), 2 * n)  # [B, L, L]
        d = position - distance.argmin(dim=-1)  # i − nearest j
        out.append(torch.where(d.abs() <= radius, d + radius + 2, 1))
    return torch.stack(out, dim=-1) * anchor.any(dim=1)[:, None, None]


def question_tokens(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """[B, L] bool: the question segment of each window ([CLS] and [SEP] included, padding not)."""
    return (batch["token_type_ids"] == 0) & ~batch["context_mask"] & batch["attention_mask"].bool()


def shared_bigram_tokens(input_ids: torch.Tensor, question: torch.Tensor, passage: torch.Tensor) -> torch.Tensor:
    """Passage tokens inside a token bigram that also occurs in the question: token i is marked when (t_i, t_i+1) or
    (t_i−1, t_i) lies in the passage and equals a bigram of question tokens (``input_ids`` [B, L], ``question`` and
    ``passage`` [B, L] bool) → [B, L] bool."""
    first, second = input_ids[:, :-1], input_ids[:, 1:]
    same = (first[:, :, None] == first[:, None, :]) & (second[:, :, None] == second[:, None, :])  # [B, L-1, L-1]
    asked = (question[:, :-1] & question[:, 1:])[:, None, :]
    hit = passage[:, :-1] & passage[:, 1:] & (same & asked).any(dim=-1)
    none = hit.new_zeros(hit.shape[0], 1)
    return torch.cat([hit, none], dim=1) | torch.cat([none, hit], dim=1)


def question_anchor(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The text anchor: the passage tokens in a bigram shared with the question (no knowledge) → [B, L] bool."""
    return shared_bigram_tokens(batch["input_ids"], question_tokens(batch), batch["context_mask"])


class BoundaryHead(nn.Module):
    """Answer-boundary logits around the window's anchor (the module docstring's equation): the bias learns where
    answers start and end relative to the anchor, U which tokens belong with it."""

    def __init__(self, hidden: int, radius: int, rate: float = BOUNDARY_RATE) -> None:
        super().__init__()
        self.radius, self.rate = radius, rate
        self.offset_bias = nn.Embedding(2 * radius + 3, 2, padding_idx=0)
        self.U = nn.Linear(hidden, 2 * hidden, bias=False)
        nn.init.zeros_(self.offset_bias.weight)
        nn.init.zeros_(self.U.weight)

    def forward(self, o: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        """o [B,L,d_h], anchor [B,L] bool → span bias [B,L,2]."""
        buckets = anchor_offsets(anchor, self.radius)
        bias = self.rate * torch.stack([self.offset_bias(buckets[..., k])[..., k] for k in (0, 1)], dim=-1)
        weights = anchor.unsqueeze(-1).to(o.dtype)
        m = (o * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)  # [B, d_h]; 0 without an anchor
        queries = self.U(m).view(o.shape[0], 2, o.shape[-1])
        return bias + torch.einsum("bld,bkd->blk", o, queries) / o.shape[-1] ** 0.5
