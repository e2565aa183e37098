"""Confidence intervals: percentile bootstrap over paired per-item values (questions, test triples), the
multi-bootstrap over seeds × items, and Student's t over a few independent replicates (seeds); and the variance
components of per-seed, per-item differences, which say how many seeds and items a comparison needs.

Bootstrap: rows are resampled with replacement; a statistic of the resampled columns' means is recorded per round,
and the 95% interval is its 2.5th–97.5th percentile. Resampling rows keeps pairs together (paired comparisons).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


@dataclass(frozen=True)
class VarianceComponents:
    """d_si = μ + a_s + b_i + e_si for training run s and item i, with Var(a) = ``run``, Var(b) = ``item``,
    Var(e) = ``residual`` (the run × item interaction)."""

    run: float
    item: float
    residual: float

    def standard_error(self, runs: int, seeds: int, items: int) -> float:
        """Standard error of the mean difference over ``items`` new items split among ``runs`` independent training
        runs, each item scored by ``seeds`` of them (k-fold cross-validation: runs = folds × seeds):
        √(run / runs + item / items + residual / (seeds · items))."""
        return math.sqrt(self.run / runs + self.item / items + self.residual / (seeds * items))

    def detectable(self, runs: int, seeds: int, items: int, power: float = 0.8) -> float:
        """The smallest true difference a two-sided 5% test finds with probability ``power``:
        (z₀.₉₇₅ + z_power) · SE (normal approximation)."""
        return float((stats.norm.ppf(0.975) + stats.norm.ppf(power)) * self.standard_error(runs, seeds, items))


def variance_components(values: np.ndarray) -> VarianceComponents:
    """Method-of-moments estimates from ``values`` [S, n] (S ≥ 2 runs × n ≥ 2 items, every run scoring every item),
    two-way ANOVA without replication: residual = MS_res, run = (MS_run − MS_res) / n,
    item = (MS_item − MS_res) / S, each floored at 0."""
    arr = np.asarray(values, dtype=float)
    n_runs, n_items = arr.shape
    if n_runs < 2 or n_items < 2:
        raise ValueError(f"variance components need at least 2 runs and 2 items, not {n_runs} × {n_items}")
    grand, run_means, item_means = arr.mean(), arr.mean(axis=1), arr.mean(axis=0)
    ms_run = n_items * float(((run_means - grand) ** 2).sum()) / (n_runs - 1)
    ms_item = n_runs * float(((item_means - grand) ** 2).sum()) / (n_items - 1)
    residuals = arr - run_means[:, None] - item_means[None, :] + grand
    ms_res = float((residuals ** 2).sum()) / ((n_runs - 1) * (n_items - 1))
    return VarianceComponents(run=max(0.0, (ms_run - ms_res) / n_items), item=max(0.0, (ms_item - ms_res) / n_runs),
                              residual=ms_res)
