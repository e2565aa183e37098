"""Dense name embeddings from any Hugging Face encoder: mean-pooled last hidden states, L2-normalised."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer


@lru_cache(maxsize=2)
def _load(encoder: str) -> tuple[AutoTokenizer, AutoModel]:
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    model = AutoModel.from_pretrained(encoder).eval()
    return tokenizer, model


@torch.no_grad()
def encode_names(names: list[str], encoder: str, *, batch_size: int = 256, progress: bool = False) -> np.ndarray:
    """``[N, d]`` float32 unit vectors: e = mean_i(h_i over non-pad tokens) / ‖·‖."""
    tokenizer, model = _load(encoder)
    out = []
    for start in tqdm(range(0, len(names), batch_size), desc="encoding names", disable=not progress):
        batch = tokenizer(names[start:start + batch_size], padding=True, truncation=True, max_length=32,
                          return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        out.append(torch.nn.functional.normalize(pooled, dim=-1).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.hidden_size), dtype=np.float32)
