"""KG embeddings: the training pipeline (``pipeline``), PTransE (``ptranse``) with its PCRA relation paths
(``pcra``), path-aware scoring at test time (``path_scoring``), the relation-conditional popularity baseline
(``popularity``), paired comparisons of exports on the same test triples (``compare``) and the export reader
(``export``).

The names below load on first use (PEP 562), so reading an export (``kg.embeddings.export``) imports no PyKEEN.
"""

from __future__ import annotations

import importlib
from typing import Any

_PIPELINE = ("EmbeddingConfig", "EmbeddingResult", "eval_slice_size", "evaluate", "model_names", "split_snapshot",
             "train_embeddings", "triples_factory")
__all__ = ["KGEmbeddings", *_PIPELINE]


def __getattr__(name: str) -> Any:
    if name == "KGEmbeddings":
        return importlib.import_module("kg.embeddings.export").KGEmbeddings
    if name in _PIPELINE:
        return getattr(importlib.import_module("kg.embeddings.pipeline"), name)
    raise AttributeError(f"module 'kg.embeddings' has no attribute {name!r}")
