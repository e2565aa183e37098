"""An exported embeddings directory, read without PyKEEN: ``embeddings.safetensors`` (``entity [E, d]`` aligned
with the snapshot's entity ids, ``relation [R, d_r]``) and ``metadata.json`` (written by ``kg.embeddings.pipeline``).
Models that only consume the vectors (``fusion.cmedbert``) import this module alone."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from kg.snapshot import SnapshotError

FORMAT_VERSION = 1
TRANSLATIONAL = ("transe", "ptranse")  # models that score a triple by −‖e_h + r − e_t‖_p


@dataclass
class KGEmbeddings:
    """Exported embeddings: ``entity [E, d]`` row i = snapshot entity id i."""

    entity: torch.Tensor
    relation: torch.Tensor
    metadata: dict[str, Any]

    @classmethod
    def load(cls, directory: Path, *, snapshot_checksum: str | None = None) -> "KGEmbeddings":
        """Load an export; with ``snapshot_checksum`` refuse one made for another snapshot."""
        directory = Path(directory)
        meta_path = directory / "metadata.json"
        if not meta_path.is_file():
            raise SnapshotError(f"{directory}: no metadata.json; not a kgmrc embeddings export")
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
        if snapshot_checksum is not None and metadata["snapshot_checksum"] != snapshot_checksum:
            raise SnapshotError(
                f"{directory}: embeddings were trained on snapshot {metadata['snapshot_checksum'][:12]}…, "
                f"not on {snapshot_checksum[:12]}…; retrain them on this snapshot")
        tensors = load_file(str(directory / "embeddings.safetensors"))
        if tensors["entity"].shape[0] != metadata["num_entities"]:
            raise SnapshotError(f"{directory}: entity matrix has {tensors['entity'].shape[0]} rows, metadata says "
                                f"{metadata['num_entities']}")
        return cls(entity=tensors["entity"], relation=tensors["relation"], metadata=metadata)

    def translation_scores(self, sources: np.ndarray, targets: np.ndarray,
                           relations: np.ndarray | None = None) -> np.ndarray:
        """``[T]``: for each target t, max over s ∈ ``sources``, r ∈ ``relations`` (ids; default all) and both
        directions of −‖e_s + r − e_t‖_p and −‖e_t + r − e_s‖_p (the model's own distance), i.e. how well some
        triple (s, r, t) or (t, r, s) fits the vectors. Only for translational models (``TRANSLATIONAL``)."""
        if self.metadata["model"] not in TRANSLATIONAL:
            raise ValueError(f"translation scores need a translational model {TRANSLATIONAL}, not "
                             f"{self.metadata['model']!r} (retrain the embeddings with one of them)")
        p = self.metadata.get("config", {}).get("norm", 1)
        e, r = self.entity.float().numpy(), self.relation.float().numpy()
        if relations is not None:
            r = r[np.asarray(relations, dtype=np.int64)]
        best = np.full(len(targets), -np.inf, dtype=np.float64)
        for s in np.asarray(sources, dtype=np.int64):  # one source at a time: memory [T, R, d]
            diff = e[s][None, :] - e[np.asarray(targets, dtype=np.int64)]
            for sign in (1.0, -1.0):  # e_s + r − e_t, and −(e_t + r − e_s)
                dist = np.linalg.norm(diff[:, None, :] + sign * r[None, :, :], ord=p, axis=-1)
                best = np.maximum(best, -dist.min(axis=1))
        return best
