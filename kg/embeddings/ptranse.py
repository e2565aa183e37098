"""PTransE (Lin et al. 2015) on top of PyKEEN: a TransE model plus the reliability-weighted path term.

Scoring is TransE's, f(h, r, t) = −‖h + r − t‖ₚ, so PyKEEN evaluates and saves the model as any other.
Training adds, for every positive triple with paths P(h, t) from :mod:`kg.embeddings.pcra`::

    L_path = 1/Z Σ_{p ∈ P(h,t)} R(p|h,t) · [γ + E(p, r) − E(p, r′)]₊,    Z = Σ_p R(p|h,t)
    E(p, r) = ‖p − r‖ₚ,    p = Σ_i σ_i r_{s_i}   (composition by addition; σ = −1 for a reverse step)

with r′ a random relation ≠ r. PyKEEN's sLCWA loop computes the triple margin loss; :class:`PTransETrainingLoop`
adds L_path to it, the only part PyKEEN cannot express.
"""

from __future__ import annotations

from typing import Any

import torch
from pykeen.models import TransE
from pykeen.training import SLCWATrainingLoop

from kg.embeddings.pcra import PAD, PathSet


class PTransE(TransE):
    """TransE with relation-path buffers for the PTransE path loss."""

    def __init__(self, *, paths: PathSet | None = None, path_margin: float = 1.0, path_weight: float = 1.0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path_margin = path_margin
        self.path_weight = path_weight
        self.num_base_relations = self.num_relations
        if paths is None:  # an empty path set: PTransE degenerates to TransE
            paths = PathSet(torch.zeros((0, 3), dtype=torch.long).numpy(),
                            torch.full((0, 1, 2), PAD).numpy(), torch.zeros((0, 1)).numpy())
        triples = torch.as_tensor(paths.triples, dtype=torch.long)
        keys = self._keys(triples)
        order = torch.argsort(keys)
        self.register_buffer("path_keys", keys[order], persistent=False)
        self.register_buffer("path_steps", torch.as_tensor(paths.steps, dtype=torch.long)[order], persistent=False)
        self.register_buffer("path_reliability", torch.as_tensor(paths.reliability)[order], persistent=False)

    def _keys(self, triples: torch.Tensor) -> torch.Tensor:
        return (triples[:, 0] * self.num_relations + triples[:, 1]) * self.num_entities + triples[:, 2]

    def compose(self, steps: torch.Tensor) -> torch.Tensor:
        """Path embeddings p = Σ σ_i r_{s_i} for ``steps [..., L]`` (PAD steps contribute 0).

        Computed as C · R with the signed step-count matrix C [..., R]: a dense matmul, whose backward is far
        cheaper than scatter-adding thousands of gathered rows into a handful of relation vectors.
        """
        relation = self.relation_representations[0](indices=None)  # [R, d]
        base = torch.remainder(steps.clamp(min=0), self.num_base_relations)
        sign = torch.where(steps >= self.num_base_relations, -1.0, 1.0) * (steps != PAD).float()
        counts = (torch.nn.functional.one_hot(base, self.num_base_relations) * sign.unsqueeze(-1)).sum(dim=-2)
        return counts @ relation

    def path_energy(self, path: torch.Tensor, relation: torch.Tensor) -> torch.Tensor:
        """E(p, r) = ‖p − r‖ₚ for broadcastable ``path`` and ``relation`` embeddings."""
        return torch.linalg.vector_norm(path - relation, ord=self.interaction.p, dim=-1)

    def path_loss(self, positives: torch.Tensor) -> torch.Tensor:
        """Mean over ``positives [b, 3]`` of the reliability-weighted path margin loss (0 without paths)."""
        if self.path_keys.numel() == 0:
            return positives.new_zeros((), dtype=torch.float)
        keys = self._keys(positives)
        pos = torch.searchsorted(self.path_keys, keys).clamp(max=self.path_keys.numel() - 1)
        found = self.path_keys[pos] == keys
        if not found.any():
            return positives.new_zeros((), dtype=torch.float)
        steps = self.path_steps[pos[found]]  # [n, K, L]
        reliability = self.path_reliability[pos[found]]  # [n, K]
        relations = positives[found, 1]
        corrupt = torch.randint(1, self.num_base_relations, relations.shape, device=relations.device)
        corrupt = torch.remainder(relations + corrupt, self.num_base_relations)  # uniform over r′ ≠ r
        path = self.compose(steps)  # [n, K, d]
        e_pos = self.path_energy(path, self.compose(relations.view(-1, 1, 1)))
        e_neg = self.path_energy(path, self.compose(corrupt.view(-1, 1, 1)))
        hinge = torch.relu(self.path_margin + e_pos - e_neg)
        z = reliability.sum(dim=1).clamp(min=1e-12)
        per_triple = (reliability * hinge).sum(dim=1) / z
        return self.path_weight * per_triple.sum() / positives.shape[0]


class PTransETrainingLoop(SLCWATrainingLoop):
    """PyKEEN's sLCWA loop with the PTransE path term added to each batch loss."""

    def _process_batch(self, batch: Any, start: int, stop: int, label_smoothing: float = 0.0,
                       slice_size: int | None = None) -> torch.Tensor:
        loss = super()._process_batch(batch, start, stop, label_smoothing, slice_size)
        positives = batch["positives"][start:stop].to(self.model.device)
        return loss + self.model.path_loss(positives)
