"""Bootstrap confidence intervals (kgutil.stats)."""

from __future__ import annotations

import numpy as np
import pytest

from kgutil.stats import bootstrap_ci, multi_bootstrap_ci, paired_ci


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
