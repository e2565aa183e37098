"""An exported embeddings directory, read without PyKEEN: ``embeddings.safetensors`` (``entity [E, d]`` aligned
with the snapshot's entity ids, ``relation [R, d_r]``) and ``metadata.json`` (written by ``kg.embeddings.pipeline``).
Models that only consume the vectors (``fusion.cmedbert``) import this module alone."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
