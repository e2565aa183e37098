"""KG embeddings: the training pipeline (``pipeline``), PTransE (``ptranse``) with its PCRA relation paths
(``pcra``), and the relation-conditional popularity baseline (``popularity``)."""

from kg.embeddings.pipeline import (EmbeddingConfig, EmbeddingResult, KGEmbeddings, eval_slice_size, evaluate,
                                    model_names, split_snapshot, train_embeddings, triples_factory)

__all__ = ["EmbeddingConfig", "EmbeddingResult", "KGEmbeddings", "eval_slice_size", "evaluate", "model_names",
           "split_snapshot", "train_embeddings", "triples_factory"]
