"""Bootstrap confidence intervals and variance components (kgutil.stats)."""

from __future__ import annotations

import numpy as np
import pytest

from kgutil.stats import (VarianceComponents, bootstrap_ci, components_ci, heterogeneity, multi_bootstrap_ci,
                          paired_ci, sign_test, spending_bounds, variance_components)


def test_bootstrap_ci_brackets_the_mean_and_narrows_with_n() -> None:
    rng = np.random.default_rng(1)
    small, large = rng.normal(1.0, 1.0, 50), rng.normal(1.0, 1.0, 2000)
    lo_s, hi_s = bootstrap_ci(small, 2000)
    lo_l, hi_l = bootstrap_ci(large, 2000)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    assert (hi_l - lo_l) < 0.3 * (hi_s - lo_s)
    assert (hi_l - lo_l) == pytest.approx(2 * 1.96 / np.sqrt(2000), rel=0.15)  # ≈ the normal-theory width


def test_paired_ci_resamples_pairs_together() -> None:
    rng = np.random.default_rng(2)
    b = rng.uniform(0.1, 1.0, 400)
    assert paired_ci(3 * b, b, 1000)[1] == pytest.approx((3.0, 3.0))  # paired: every resample's ratio is 3
    a = b + rng.normal(0, 0.3, 400)
    difference, (low, high) = paired_ci(a, b, 4000)
    assert difference == pytest.approx(bootstrap_ci(a - b, 4000), abs=1e-12)  # the same draw as the Δ's own
    # the delta method's interval for mean(a)/mean(b): ±1.96·sd(a − ρb)/(√n·mean(b))
    rho = a.mean() / b.mean()
    half = 1.96 * np.std(a - rho * b) / (np.sqrt(len(a)) * b.mean())
    assert low < rho < high and (high - low) == pytest.approx(2 * half, rel=0.15)


def test_multi_bootstrap_holds_the_variance_between_seeds() -> None:
    rng = np.random.default_rng(3)
    items = rng.normal(1.0, 1.0, 1500)
    one = multi_bootstrap_ci(items[None, :], 4000)
    assert one == pytest.approx(bootstrap_ci(items, 4000), abs=0.02)   # one seed: the bootstrap over items
    # four seeds that agree per item: as narrow as the items allow; four that differ by a seed effect of sd 0.5:
    # the interval widens to about ±1.96·√(σ²_item/n + σ²_seed/S), which the items' bootstrap of seed means misses
    agree = np.tile(items, (4, 1))
    shifted = agree + np.array([0.6, -0.5, 0.1, -0.2])[:, None]
    low_a, high_a = multi_bootstrap_ci(agree, 4000)
    low_s, high_s = multi_bootstrap_ci(shifted, 4000)
    assert (high_a - low_a) == pytest.approx(2 * 1.96 / np.sqrt(1500), rel=0.15)
    assert (high_s - low_s) > 3 * (high_a - low_a)
    assert bootstrap_ci(shifted.mean(axis=0), 4000) == pytest.approx((low_a, high_a), abs=0.02)   # seed means


def test_variance_components_by_hand() -> None:
    # grand mean 3, run means 2 and 4, item means 2, 3, 4, no interaction: MS_run = 3·2/1 = 6 → run (6 − 0)/3 = 2;
    # MS_item = 2·2/2 = 2 → item (2 − 0)/2 = 1
    components = variance_components(np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]]))
    assert components == VarianceComponents(run=2.0, item=1.0, residual=0.0)
    assert components.standard_error(runs=2, seeds=2, items=3) == pytest.approx(np.sqrt(2 / 2 + 1 / 3))
    assert components.detectable(2, 2, 3) == pytest.approx((1.959964 + 0.841621) * np.sqrt(4 / 3), rel=1e-5)
    with pytest.raises(ValueError, match="at least 2 runs"):
        variance_components(np.ones((1, 5)))


def test_variance_components_recover_a_design_that_the_multi_bootstrap_over_covers() -> None:
    rng = np.random.default_rng(4)
    run, item, residual, seeds, n = 4.0, 9.0, 100.0, 40, 500
    values = (rng.normal(0, np.sqrt(run), (seeds, 1)) + rng.normal(0, np.sqrt(item), (1, n))
              + rng.normal(0, np.sqrt(residual), (seeds, n)))
    estimate = variance_components(values)
    assert estimate.run == pytest.approx(run, abs=2.0) and estimate.item == pytest.approx(item, abs=2.5)
    assert estimate.residual == pytest.approx(residual, rel=0.05)
    # 4 seeds where the seed × item interaction dominates (as in the fusion comparisons): resampling seeds and items
    # both counts the interaction twice, so the multi-bootstrap's interval is about √2 wider than the true SE's
    truth = VarianceComponents(run=0.3, item=37.0, residual=507.0)
    values = (rng.normal(0, np.sqrt(truth.run), (4, 1)) + rng.normal(0, np.sqrt(truth.item), (1, 593))
              + rng.normal(0, np.sqrt(truth.residual), (4, 593)))
    low, high = multi_bootstrap_ci(values, 4000)
    assert (high - low) / (2 * 1.96) > 1.2 * truth.standard_error(runs=4, seeds=4, items=593)


@pytest.mark.parametrize("truth, folds, seeds, multi_bootstrap_covers", [
    (VarianceComponents(run=0.3, item=37.0, residual=507.0), 1, 4, True),    # the interaction dominates: over-covers
    (VarianceComponents(run=6.2, item=0.0, residual=317.0), 1, 3, False),    # one seed stands out: under-covers
    (VarianceComponents(run=6.2, item=0.0, residual=317.0), 5, 3, None),     # 5 folds: each its own 3 runs
])
def test_components_ci_covers_where_the_multi_bootstrap_does_not(truth: VarianceComponents, folds: int, seeds: int,
                                                                  multi_bootstrap_covers: bool | None) -> None:
    rng = np.random.default_rng(5)
    rounds, covered, covered_mb = 300, 0, 0
    for r in range(rounds):
        blocks = [rng.normal(0, np.sqrt(truth.run), (seeds, 1)) + rng.normal(0, np.sqrt(truth.item), (1, 300 // folds))
                  + rng.normal(0, np.sqrt(truth.residual), (seeds, 300 // folds)) for _ in range(folds)]  # mean 0
        low, high = components_ci(blocks)
        covered += low <= 0 <= high
        if multi_bootstrap_covers is not None:
            low, high = multi_bootstrap_ci(blocks[0], 400, seed=r)
            covered_mb += low <= 0 <= high
    assert 0.92 <= covered / rounds <= 0.99
    if multi_bootstrap_covers is not None:
        assert (covered_mb / rounds >= 0.97) if multi_bootstrap_covers else (covered_mb / rounds <= 0.90)
    assert components_ci(np.zeros((3, 4))) == (0.0, 0.0)


def test_spending_bounds_match_the_published_obrien_fleming_type_values() -> None:
    # Lan–DeMets O'Brien–Fleming-type bounds, two-sided α = 0.05 (as tabulated by gsDesign / ldbounds)
    assert spending_bounds([0.2, 0.4, 0.6, 0.8, 1.0]) == pytest.approx([4.877, 3.357, 2.680, 2.290, 2.031], abs=2e-3)
    assert spending_bounds([0.5, 1.0]) == pytest.approx([2.963, 1.969], abs=2e-3)
    assert spending_bounds([1.0]) == pytest.approx([1.960], abs=1e-3)    # one look: the plain 95% interval
    for bad in ([], [0.0, 1.0], [0.6, 0.4, 1.0], [0.5, 0.9]):
        with pytest.raises(ValueError, match="information fractions"):
            spending_bounds(bad)


def test_looking_at_every_bound_keeps_the_chance_of_any_crossing_at_alpha() -> None:
    """Brownian paths with no drift, read at unequal fractions: crossing some look's bound happens 5% of the time
    (reading each look at 1.96 would cross 12%)."""
    fractions = np.array([0.47, 0.67, 0.84, 1.0])
    rng = np.random.default_rng(3)
    paths = np.cumsum(rng.standard_normal((200_000, 4)) * np.sqrt(np.diff(fractions, prepend=0.0)), axis=1)
    z = np.abs(paths / np.sqrt(fractions))
    assert (z >= spending_bounds(fractions)).any(axis=1).mean() == pytest.approx(0.05, abs=0.003)
    assert (z >= 1.96).any(axis=1).mean() > 0.10


def test_components_ci_widens_with_its_level() -> None:
    blocks = [np.random.default_rng(1).normal(1.0, 10.0, (3, 40)) for _ in range(2)]
    low, high = components_ci(blocks)
    assert components_ci(blocks, 0.95) == (low, high)
    wide_low, wide_high = components_ci(blocks, 0.99)
    assert wide_low < low < high < wide_high and (wide_low + wide_high) / 2 == pytest.approx((low + high) / 2)


def test_sign_test_is_exact_where_few_items_change() -> None:
    # 5 of 243 questions better, none worse: p = 2 · (1/2)^5, though the bootstrap interval lies above 0
    diffs = np.array([100.0] * 5 + [0.0] * 238)
    assert sign_test(diffs) == {"better": 5, "worse": 0, "p": 0.0625}
    assert bootstrap_ci(diffs, 4000)[0] > 0
    # 9 better, 1 worse: p = 2 · (1 + 10) / 2^10 = 0.0215; a tie of float noise is a tie
    assert sign_test(np.array([1.0] * 9 + [-0.5, 1e-12, 0.0])) == {"better": 9, "worse": 1, "p": 0.0215}
    assert sign_test(np.array([3.0, -3.0])) == {"better": 1, "worse": 1, "p": 1.0}
    assert sign_test(np.zeros(4)) == {"better": 0, "worse": 0, "p": 1.0}


def test_cochrans_q_by_hand() -> None:
    # means 50 and −50, each SE = s/√n = 70.71/√2 = 50: weights 1/2500, pooled mean 0, Q = 2·50²/2500 = 2 on 1 df,
    # p = P(χ²₁ > 2) = 2·(1 − Φ(√2)) = 0.1573
    # p_permutation 1: every shuffle of {100, 0, −100, 0} into two pairs gives Q = 2 again or a pair {0, 0} (Q* = ∞)
    assert heterogeneity([np.array([100.0, 0.0]), np.array([-100.0, 0.0])]) == \
        {"q": 2.0, "df": 1, "p": 0.1573, "p_permutation": 1.0}
    assert heterogeneity([np.array([100.0, 0.0]), np.array([100.0, 0.0])]) == \
        {"q": 0.0, "df": 1, "p": 1.0, "p_permutation": 1.0}
    # means 1, 1, 5, each SE 1: pooled 7/3, Q = 2·(4/3)² + (8/3)² = 96/9 on 2 df, p = exp(−Q/2) = 0.0048
    three = heterogeneity([np.array([0.0, 2.0]), np.array([0.0, 2.0]), np.array([4.0, 6.0])])
    assert three is not None and (three["q"], three["df"], three["p"]) == (10.667, 2, 0.0048)
    assert heterogeneity([np.array([100.0, 100.0]), np.array([0.0, 100.0])]) is None   # no spread: weight ∞
    assert heterogeneity([np.array([1.0, 2.0])]) is None


def test_cochrans_q_permutation_p_by_hand() -> None:
    # {0, 1, 2} against {10, 11, 12}: of the C(6, 3) = 20 ways to split the six items into two groups of three, only
    # the observed split and its mirror reach the observed Q (every other split mixes the groups: closer means,
    # wider spread), so the exact permutation p is 2/20 = 0.1 where the χ² says p < 0.0001
    test = heterogeneity([np.array([0.0, 1.0, 2.0]), np.array([10.0, 11.0, 12.0])], rounds=20_000)
    assert test is not None and test["p"] < 1e-4
    assert test["p_permutation"] == pytest.approx(0.1, abs=0.006)   # Monte Carlo SE √(0.1·0.9/20000) = 0.0021
