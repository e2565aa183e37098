"""Confidence intervals: percentile bootstrap over paired per-item values (questions, test triples), the
multi-bootstrap over seeds × items, and Student's t over a few independent replicates (seeds); and the variance
components of per-seed, per-item differences, which say how many seeds and items a comparison needs; the exact sign
test of paired differences (for comparisons where few items change); Cochran's Q test of whether folds share one
difference; and the critical values of a comparison read at several looks (group-sequential, alpha spending).

Bootstrap: rows are resampled with replacement; a statistic of the resampled columns' means is recorded per round,
and the 95% interval is its 2.5th–97.5th percentile. Resampling rows keeps pairs together (paired comparisons).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import integrate, optimize, stats


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


def sign_test(differences: np.ndarray) -> dict[str, float]:
    """Exact two-sided sign test of paired ``differences`` (ties, = 0, dropped): ``better`` = #(d > 0), ``worse`` =
    #(d < 0), ``p`` = P(a split at least this uneven | each non-tie as likely up as down), the binomial(n, ½) tail
    doubled (McNemar's exact test for 0/1 scores). Unlike the percentile bootstrap it holds where few items differ:
    5 better and 0 worse give p = 2·2⁻⁵ = 0.0625, where the bootstrap interval of 5 in 243 lies above 0."""
    d = np.round(np.asarray(differences, dtype=float), 9)   # a difference of float noise is a tie
    better, worse = int((d > 0).sum()), int((d < 0).sum())
    p = stats.binomtest(better, better + worse).pvalue if better + worse else 1.0
    return {"better": better, "worse": worse, "p": round(float(p), 4)}


def heterogeneity(groups: Sequence[np.ndarray], rounds: int = 10_000, seed: int = 0) -> dict[str, float] | None:
    """Cochran's Q test that independent groups of paired differences (folds) share one mean: with m_g the mean
    and SE_g = s_g / √n_g of group g and inverse-variance weights w_g = 1 / SE_g², m̄ = Σ w_g m_g / Σ w_g and
    Q = Σ w_g (m_g − m̄)², referred to χ² with G − 1 degrees of freedom (``p``), and to its permutation
    distribution (``p_permutation``: items shuffled between groups of the same sizes, ``rounds`` times,
    p = (1 + #{Q* ≥ Q}) / (1 + rounds); a shuffle that leaves a group without spread counts as Q* = ∞). The χ² is
    rough where few items differ from 0; the permutation p holds there too. A small p says the groups differ by
    more than their items explain. None with fewer than two groups, or where a group has fewer than two items or
    no spread (its weight would be infinite)."""
    arrays = [np.asarray(group, dtype=float) for group in groups]
    if len(arrays) < 2 or any(len(values) < 2 or values.std(ddof=1) == 0 for values in arrays):
        return None
    sizes, items = [len(values) for values in arrays], np.concatenate(arrays)
    q = float(_cochran_q(items[None, :], sizes)[0])
    rng, exceed = np.random.default_rng(seed), 0
    for start in range(0, rounds, 1000):   # chunks keep the shuffled copies small
        shuffled = rng.permuted(np.tile(items, (min(1000, rounds - start), 1)), axis=1)
        exceed += int((_cochran_q(shuffled, sizes) >= q * (1 - 1e-9)).sum())
    return {"q": round(q, 3), "df": len(arrays) - 1, "p": round(float(stats.chi2.sf(q, len(arrays) - 1)), 4),
            "p_permutation": round((1 + exceed) / (1 + rounds), 4)}


def _cochran_q(rows: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """Cochran's Q of each row of ``rows`` (items in groups of ``sizes``, in order); ∞ where a group has no
    spread."""
    bounds = np.cumsum([0, *sizes])
    parts = [rows[:, lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]
    means = np.stack([part.mean(axis=1) for part in parts], axis=1)
    variances = np.stack([part.var(axis=1, ddof=1) / part.shape[1] for part in parts], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        weights = 1 / variances
        pooled = (weights * means).sum(axis=1, keepdims=True) / weights.sum(axis=1, keepdims=True)
        q = (weights * np.square(means - pooled)).sum(axis=1)
    return np.where((variances == 0).any(axis=1), np.inf, q)


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


Blocks = np.ndarray | Sequence[np.ndarray]


@dataclass(frozen=True)
class VarianceComponents:
    """d_si = μ + a_s + b_i + e_si for training run s and item i, with Var(a) = ``run``, Var(b) = ``item``,
    Var(e) = ``residual`` (the run × item interaction). In k-fold cross-validation each fold is a block: its items
    are scored by its own S runs (one per seed)."""

    run: float
    item: float
    residual: float

    def standard_error(self, runs: int, seeds: int, items: int) -> float:
        """Standard error of the mean difference over ``items`` new items split among ``runs`` independent training
        runs, each item scored by ``seeds`` of them (k-fold cross-validation: runs = folds × seeds):
        √(run / runs + item / items + residual / (seeds · items))."""
        return math.sqrt(self.run / runs + self.item / items + self.residual / (seeds * items))

    def interval_dof(self, folds: int, seeds: int, items: int) -> float:
        """Satterthwaite degrees of freedom of ``components_ci`` on k equal folds × S ≥ 2 seeds, from the expected
        mean squares pooled within folds: E[MS_run] = (n/k)·run + residual on k(S − 1) degrees of freedom,
        E[MS_item] = S·item + residual on n − k, E[MS_res] = residual on (S − 1)(n − k)."""
        ms_run, ms_item = items / folds * self.run + self.residual, seeds * self.item + self.residual
        return _satterthwaite(ms_run, ms_item, self.residual, folds * (seeds - 1), items - folds,
                              (seeds - 1) * (items - folds))

    def detectable(self, runs: int, seeds: int, items: int, power: float = 0.8, dof: float | None = None) -> float:
        """The smallest true difference a two-sided 5% test finds with probability ``power``:
        (q₀.₉₇₅ + z_power) · SE, q the normal quantile, or Student's t with ``dof`` degrees of freedom."""
        quantile = stats.t.ppf(0.975, dof) if dof is not None else stats.norm.ppf(0.975)
        return float((quantile + stats.norm.ppf(power)) * self.standard_error(runs, seeds, items))


def _satterthwaite(ms_run: float, ms_item: float, ms_res: float, df_run: float, df_item: float, df_res: float
                   ) -> float:
    """Degrees of freedom of MS_run + MS_item − MS_res."""
    return (ms_run + ms_item - ms_res) ** 2 / (ms_run ** 2 / df_run + ms_item ** 2 / df_item + ms_res ** 2 / df_res)


@dataclass(frozen=True)
class _PooledAnova:
    """Two-way ANOVAs without replication, one per block, pooled: mean squares and degrees of freedom (run, item,
    residual) from sums of squares and degrees of freedom added over blocks; runs per block, items, blocks, and the
    mean of every value."""

    ms: tuple[float, float, float]
    df: tuple[int, int, int]
    runs: int
    items: int
    blocks: int
    mean: float


def _pooled_anova(blocks: Blocks) -> _PooledAnova:
    """``blocks``: one matrix [S, n] or blocks [S, n_b] (S ≥ 2 runs × n_b ≥ 2 items, every run of a block scoring
    every item of it, the same S in every block)."""
    arrays = [np.asarray(b, dtype=float) for b in ([blocks] if isinstance(blocks, np.ndarray) else blocks)]
    if not arrays or any(a.ndim != 2 or a.shape[0] < 2 or a.shape[1] < 2 for a in arrays):
        raise ValueError(f"variance components need blocks of at least 2 runs × 2 items, not "
                         f"{[a.shape for a in arrays]}")
    if len({a.shape[0] for a in arrays}) > 1:
        raise ValueError(f"every block needs the same number of runs, not {[a.shape[0] for a in arrays]}")
    sums, dofs, total = np.zeros(3), np.zeros(3, dtype=int), 0.0
    for arr in arrays:
        n_runs, n_items = arr.shape
        grand, run_means, item_means = arr.mean(), arr.mean(axis=1), arr.mean(axis=0)
        residuals = arr - run_means[:, None] - item_means[None, :] + grand
        sums += [n_items * ((run_means - grand) ** 2).sum(), n_runs * ((item_means - grand) ** 2).sum(),
                 (residuals ** 2).sum()]
        dofs += [n_runs - 1, n_items - 1, (n_runs - 1) * (n_items - 1)]
        total += float(arr.sum())
    ms, runs, items = sums / dofs, arrays[0].shape[0], sum(a.shape[1] for a in arrays)
    return _PooledAnova(ms=(float(ms[0]), float(ms[1]), float(ms[2])), df=(int(dofs[0]), int(dofs[1]), int(dofs[2])),
                        runs=runs, items=items, blocks=len(arrays), mean=total / (runs * items))


def variance_components(blocks: Blocks) -> VarianceComponents:
    """Method-of-moments estimates from one matrix [S, n] or from blocks (folds) pooled within:
    residual = MS_res, run = (MS_run − MS_res) / n̄ (n̄ the mean block size), item = (MS_item − MS_res) / S,
    each floored at 0."""
    anova = _pooled_anova(blocks)
    ms_run, ms_item, ms_res = anova.ms
    return VarianceComponents(run=max(0.0, (ms_run - ms_res) / (anova.items / anova.blocks)),
                              item=max(0.0, (ms_item - ms_res) / anova.runs), residual=ms_res)


def components_ci(blocks: Blocks, level: float = 0.95) -> tuple[float, float]:
    """CI (95% unless ``level``) of the mean of all values of one matrix [S, n] or of blocks (folds, each [S, n_b];
    the mean over all items), for new runs and new items: mean ± t(½ + level/2, ν)·SE, SE² = (MS_run + MS_item −
    MS_res) / (S·n) with mean squares pooled within blocks (= run / (k·S) + item / n + residual / (S·n) for k
    equal blocks) and ν by Satterthwaite, floored at the run or item term's degrees of freedom, whichever are
    fewer. Unlike the multi-bootstrap it counts the run × item interaction once, and its t quantile widens with
    few runs."""
    anova = _pooled_anova(blocks)
    (ms_run, ms_item, ms_res), dofs, mean = anova.ms, anova.df, anova.mean
    combined = max(ms_run + ms_item - ms_res, ms_res)   # the unbiased combination, never below the residual's share
    if combined == 0:
        return mean, mean
    # Satterthwaite, never below the fewest degrees of freedom of a positive term (a near-cancelling combination
    # would otherwise give ν → 0 and an unbounded interval)
    dof = max(_satterthwaite(ms_run, ms_item, ms_res, *dofs), float(min(dofs[0], dofs[1]))) \
        if ms_run + ms_item > ms_res else float(dofs[2])
    half = float(stats.t.ppf(0.5 + level / 2, dof)) * math.sqrt(combined / (anova.runs * anova.items))
    return mean - half, mean + half


def spending_bounds(fractions: Sequence[float], alpha: float = 0.05, grid: int = 1201) -> list[float]:
    """Two-sided critical values c_1 … c_K for looks at information fractions 0 < t_1 < … < t_K = 1 (t = the
    final look's variance over this look's), spending α by Lan and DeMets' O'Brien–Fleming-type function
    α(t) = 4 − 4Φ(z_{1−α/4} / √t): with no true difference, the chance that |Z_k| ≥ c_k at look k, the first
    look to cross, is α(t_k) − α(t_{k−1}), so looking K times keeps the chance of any crossing at α. The repeated
    CI of look k (mean ± c_k·SE) therefore covers with probability ≥ 1 − α at every look at once. Computed on the
    Brownian scale B(t) = Z·√t, whose increments are independent: the density of the paths not yet stopped is
    carried from look to look by numerical integration on ``grid`` points."""
    t = np.asarray(fractions, dtype=float)
    if len(t) == 0 or t[0] <= 0 or np.any(np.diff(t) <= 0) or abs(t[-1] - 1) > 1e-9:
        raise ValueError(f"information fractions must increase from above 0 to 1, not {list(fractions)}")
    spent = 4 - 4 * stats.norm.cdf(stats.norm.ppf(1 - alpha / 4) / np.sqrt(t))
    bounds: list[float] = []
    x = density = None   # grid on the B scale and the density of the paths not stopped so far
    for k, tk in enumerate(t):
        target = spent[k] - (spent[k - 1] if k else 0.0)
        if density is None:
            c = float(stats.norm.ppf(1 - target / 2))
        else:
            sd = math.sqrt(tk - t[k - 1])

            def crossing(c: float) -> float:
                b = c * math.sqrt(tk)
                tails = stats.norm.cdf((-b - x) / sd) + stats.norm.sf((b - x) / sd)
                return float(integrate.trapezoid(density * tails, x)) - target

            c = float(optimize.brentq(crossing, 0.0, 20.0, xtol=1e-10))
        b = c * math.sqrt(tk)
        y = np.linspace(-b, b, grid)
        if x is None:
            density = stats.norm.pdf(y, scale=math.sqrt(tk))
        else:   # g(y) = ∫ f(x) φ((y − x)/sd)/sd dx over the paths still running
            density = integrate.trapezoid(density * stats.norm.pdf((y[:, None] - x) / sd) / sd, x, axis=1)
        x = y
        bounds.append(c)
    return bounds
