"""Paired comparisons of link predictors scored on the same test triples.

Each export keeps its per-triple filtered ranks (``ranks.safetensors``: ``test``, ``validation`` and
``popularity_test``, each ``[n, 2]`` head/tail realistic ranks, with the scored triples ``test_triples`` and
``validation_triples`` ``[n, 3]``). With rr_i = (1/rank_head,i + 1/rank_tail,i) / 2 per triple, MRR = mean(rr);
two predictors A, B on the same triples are compared by

    Δ = mean(rr_A − rr_B)            ratio = mean(rr_A) / mean(rr_B)

each with a 95% percentile-bootstrap CI over test triples (pairs resampled together). The CI covers the choice of
test triples, not training noise (another seed is another model).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from kgutil.io import atomic_path
from kgutil.stats import bootstrap_ci, paired_ci

RANKS_FILE = "ranks.safetensors"


def reciprocal_ranks(ranks: np.ndarray) -> np.ndarray:
    """Per triple, the mean of its head and tail reciprocal ranks (MRR is their mean)."""
    return (1 / np.asarray(ranks, dtype=float)).mean(axis=1)


def mrr_ci(ranks: np.ndarray, rounds: int = 10_000, seed: int = 0) -> list[float]:
    """95% bootstrap CI of the MRR of ``ranks [n, 2]`` over test triples."""
    return [round(x, 4) for x in bootstrap_ci(reciprocal_ranks(ranks), rounds, seed)]


def paired(ranks_a: np.ndarray, ranks_b: np.ndarray, rounds: int = 10_000, seed: int = 0) -> dict[str, object]:
    """A against B on the same triples (rows aligned): MRRs, Δ and ratio with their 95% CIs, and whether the Δ
    interval excludes 0."""
    if ranks_a.shape != ranks_b.shape:
        raise ValueError(f"rank arrays differ in shape: {ranks_a.shape} vs {ranks_b.shape}")
    a, b = reciprocal_ranks(ranks_a), reciprocal_ranks(ranks_b)
    (low, high), ratio = paired_ci(a, b, rounds, seed)
    return {"mrr": round(float(a.mean()), 4), "other_mrr": round(float(b.mean()), 4),
            "mrr_diff": round(float((a - b).mean()), 4), "mrr_diff_ci95": [round(low, 4), round(high, 4)],
            "ci_excludes_zero": bool(low > 0 or high < 0),
            "mrr_ratio": round(float(a.mean() / b.mean()), 3),
            "mrr_ratio_ci95": [round(x, 3) for x in ratio], "num_triples": len(a)}


def save_ranks(out: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``OUT/ranks.safetensors`` atomically."""
    with atomic_path(out / RANKS_FILE) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))


def load_ranks(export: Path) -> dict[str, np.ndarray]:
    """The per-triple ranks of an export; a clear error for exports written before ranks were kept."""
    path = Path(export) / RANKS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no per-triple ranks (exports from before they were kept): re-run the "
                                f"export's train_kg_embeddings.py command to evaluate it again")
    return load_file(str(path))


def compare_exports(reference: Path, other: Path, split: str = "test", rounds: int = 10_000, seed: int = 0,
                    *, path_aware: bool = False, reference_path_aware: bool = False) -> dict[str, object]:
    """``other`` against ``reference`` on ``split``; ``path_aware`` / ``reference_path_aware`` read that export's
    path-aware ranks (``{split}_path_aware``, :mod:`kg.embeddings.path_scoring`) instead of the model's alone.
    Refuses exports scored on different triples."""
    ref, oth = load_ranks(reference), load_ranks(other)
    if not np.array_equal(ref[f"{split}_triples"], oth[f"{split}_triples"]):
        raise ValueError(f"{reference} and {other} were scored on different {split} triples (another snapshot, "
                         f"split seed or sample size): a paired comparison needs the same ones")
    return paired(ranks_of(other, oth, split, path_aware), ranks_of(reference, ref, split, reference_path_aware),
                  rounds, seed)


def ranks_of(export: Path, ranks: dict[str, np.ndarray], split: str, path_aware: bool) -> np.ndarray:
    """The export's ranks on ``split``: its path-aware ones (``{split}_path_aware``) or the model's alone."""
    key = f"{split}_path_aware" if path_aware else split
    if key not in ranks:
        raise ValueError(f"{export} has no path-aware ranks: re-run its train_kg_embeddings.py command with "
                         f"--path-aware")
    return ranks[key]
