"""An exported embeddings directory, read without PyKEEN: ``embeddings.safetensors`` (``entity [E, d]`` aligned
with the snapshot's entity ids, ``relation [R, d_r]``) and ``metadata.json`` (written by ``kg.embeddings.pipeline``).
Models that only consume the vectors (``fusion.cmedbert``) import this module alone."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import load_file

from kg.snapshot import SnapshotError

FORMAT_VERSION = 1


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

    def fit_scores(self, sources: np.ndarray, targets: np.ndarray,
                   relations: np.ndarray | None = None) -> np.ndarray:
        """``[T]``: for each target t, max over s ∈ ``sources``, r ∈ ``relations`` (ids; default all) and both
        directions of the model's own triple score f(s, r, t) and f(t, r, s), i.e. how well some triple (s, r, t)
        or (t, r, s) fits the vectors. f is −‖h + r − t‖_p (TransE, PTransE; p from the config), −‖h ∘ r − t‖₂
        over complex vectors (RotatE), Σ h·r·t (DistMult) or Re Σ h·r·t̄ (ComplEx); other models are refused."""
        model = self.metadata["model"]
        if model not in FIT_SCORES:
            raise ValueError(f"fit scores are defined for {sorted(FIT_SCORES)}, not {model!r} (retrain the "
                             f"embeddings with one of them)")
        score = FIT_SCORES[model]
        s = _rows(self.entity, sources)  # only the rows scored: CMeKG has ≈ 137k entities
        t = _rows(self.entity, targets)
        r = self.relation.float().numpy() if relations is None else _rows(self.relation, relations)
        if model in COMPLEX:
            s, t, r = _complex(s), _complex(t), _complex(r)
        p = self.metadata.get("config", {}).get("norm", 1)
        best = np.full(len(t), -np.inf, dtype=np.float64)
        for source in s:  # one source at a time: memory [T, R, d]
            forward = score(source[None, None, :], r[None, :, :], t[:, None, :], p)   # f(s, r, t): [T, R]
            backward = score(t[:, None, :], r[None, :, :], source[None, None, :], p)  # f(t, r, s)
            best = np.maximum(best, np.maximum(forward, backward).max(axis=1))
        return best


def _rows(matrix: torch.Tensor, ids: np.ndarray) -> np.ndarray:
    """The rows ``ids`` of ``matrix`` as float32 numpy (the gather before any conversion)."""
    return matrix[torch.as_tensor(np.asarray(ids, dtype=np.int64))].float().numpy()


def _complex(x: np.ndarray) -> np.ndarray:
    """Exported [re; im] rows back to complex vectors."""
    half = x.shape[-1] // 2
    return x[..., :half] + 1j * x[..., half:]


def _translation(h: np.ndarray, r: np.ndarray, t: np.ndarray, p: int) -> np.ndarray:
    return -np.linalg.norm(h + r - t, ord=p, axis=-1)


FIT_SCORES: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray, int], np.ndarray]] = {
    "transe": _translation,
    "ptranse": _translation,
    "rotate": lambda h, r, t, p: -np.linalg.norm(h * r - t, axis=-1),
    "distmult": lambda h, r, t, p: (h * r * t).sum(axis=-1),
    "complex": lambda h, r, t, p: (h * r * np.conj(t)).sum(axis=-1).real,
}  # f(h, r, t) of each model, as PyKEEN scores it (RotatE's relations are unit rotations)
COMPLEX = ("rotate", "complex")  # models exported as [re; im]
