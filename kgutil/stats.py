"""Confidence intervals: percentile bootstrap over paired per-item values (questions, test triples), the
multi-bootstrap over seeds × items, and Student's t over a few independent replicates (seeds).

Bootstrap: rows are resampled with replacement; a statistic of the resampled columns' means is recorded per round,
and the 95% interval is its 2.5th–97.5th percentile. Resampling rows keeps pairs together (paired comparisons).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def _resampled_means(columns: np.ndarray, rounds: int, seed: int) -> np.ndarray:
    """[rounds, k] column means of ``columns [n, k]`` under row resampling (1,000 rounds at a time: bounded memory)."""
    rng = np.random.default_rng(seed)
    means = np.empty((rounds, columns.shape[1]))
    for start in range(0, rounds, 1000):
        idx = rng.integers(0, len(columns), size=(min(1000, rounds - start), len(columns)))
        means[start:start + len(idx)] = columns[idx].mean(axis=1)
    return means


def _interval(samples: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(samples, [2.5, 97.5])
    return float(low), float(high)


def bootstrap_ci(values: np.ndarray, rounds: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95% CI of mean(values)."""
    return _interval(_resampled_means(np.asarray(values, dtype=float)[:, None], rounds, seed)[:, 0])


def paired_ci(a: np.ndarray, b: np.ndarray, rounds: int = 10_000, seed: int = 0
              ) -> tuple[tuple[float, float], tuple[float, float]]:
    """95% CIs of mean(a) − mean(b) and of mean(a) / mean(b), ``a`` and ``b`` aligned per item (resampled together,
    one draw for both; the first equals ``bootstrap_ci(a − b)`` with the same seed)."""
    means = _resampled_means(np.stack([a, b], axis=1).astype(float), rounds, seed)
    return _interval(means[:, 0] - means[:, 1]), _interval(means[:, 0] / means[:, 1])


def multi_bootstrap_ci(values: np.ndarray, rounds: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95% CI of the mean of ``values`` [S, n] (S training seeds × n items) with seeds and items resampled
    independently each round, the statistic being the mean over the drawn seeds of each one's mean over the drawn
    items (the multi-bootstrap of Sellam et al., "The MultiBERTs", 2022). It holds the variance between training
    runs that a bootstrap over items of seed-averaged values leaves out; for a paired comparison on shared seeds,
    pass the per-seed, per-item differences. One seed: the bootstrap over items."""
    arr = np.asarray(values, dtype=float)
    n_seeds, n_items = arr.shape
    rng = np.random.default_rng(seed)
    means = np.empty(rounds)
    for start in range(0, rounds, 1000):
        k = min(1000, rounds - start)
        item_means = arr[:, rng.integers(0, n_items, size=(k, n_items))].mean(axis=2).T  # [k, S]
        drawn = rng.integers(0, n_seeds, size=(k, n_seeds))
        means[start:start + k] = np.take_along_axis(item_means, drawn, axis=1).mean(axis=1)
    return _interval(means)


def t_interval(values: np.ndarray) -> tuple[float, float]:
    """95% Student-t interval of mean(values): mean ± t(0.975, n − 1) · s / √n (t = 4.303 for n = 3, 2.776 for
    n = 5); a single value is its own interval."""
    arr = np.asarray(values, dtype=float)
    mean = float(arr.mean())
    if len(arr) < 2:
        return mean, mean
    half = float(stats.t.ppf(0.975, len(arr) - 1) * arr.std(ddof=1) / math.sqrt(len(arr)))
    return mean - half, mean + half
