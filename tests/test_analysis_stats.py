"""analysis.stats against scipy.stats on known data."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis import stats

# The 2015 DigitalOcean figures as 5 runs each (tests/fixtures/results/20151205-120000-do2015).
HOST = np.array([930.1, 934.6, 931.2, 933.4, 930.7])
OVERLAY = np.array([880.3, 884.9, 881.6, 879.8, 883.4])
# Noisier and unbalanced samples, to exercise Welch's degrees of freedom.
SAMPLES = [
    (HOST, OVERLAY),
    (np.array([17300.0, 19600, 18100, 18800, 17900]), np.array([13900.0, 15500, 14200, 15100])),
    (np.array([956.7, 956.5, 956.9]), np.array([955.8, 957.4, 956.1, 956.6, 957.0, 956.2, 956.9])),
    (np.array([1702.5, 1744.1, 1711.8, 1729.6, 1712.0]), np.array([871.2, 915.7, 889.4, 903.3, 901.4])),
]


def moments(x):
    return x.mean(), x.std(ddof=1), len(x)


def test_describe_matches_numpy_and_scipy_interval():
    values = pd.Series(np.concatenate([HOST, OVERLAY]), index=pd.Index(["host"] * 5 + ["overlay"] * 5, name="net"))
    table = stats.describe(values, ["net"])
    for net, data in (("host", HOST), ("overlay", OVERLAY)):
        row = table.loc[net]
        assert row["mean"] == pytest.approx(data.mean())
        assert row["median"] == pytest.approx(np.median(data))
        assert row["sd"] == pytest.approx(data.std(ddof=1))
        assert row["n"] == 5
        low, high = sps.t.interval(0.95, len(data) - 1, loc=data.mean(), scale=sps.sem(data))
        assert (row["ci_low"], row["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert table.loc["host", "mean"] == pytest.approx(932.0)
    assert table.loc["overlay", "mean"] == pytest.approx(882.0)


def test_ci_of_single_run_is_nan_not_zero():
    half = stats.ci_half_width(np.array([np.nan, 0.0]), np.array([1, 2]))
    assert np.isnan(half[0])
    assert half[1] == 0.0


@pytest.mark.parametrize("a, b", SAMPLES)
def test_welch_matches_scipy(a, b):
    expected = sps.ttest_ind(b, a, equal_var=False)
    p = stats.welch_p(*moments(b), *moments(a))
    assert float(p) == pytest.approx(expected.pvalue, rel=1e-9)
    df = stats.welch_df(a.std(ddof=1), len(a), b.std(ddof=1), len(b))
    assert float(df) == pytest.approx(expected.df, rel=1e-12)


def test_t_quantile_matches_scipy():
    df = np.array([1, 2, 4, 7.3, 30, np.inf])
    assert stats.t_quantile(df) == pytest.approx(sps.t.ppf(0.975, df))


@pytest.mark.parametrize("a, b", SAMPLES)
def test_fieller_interval_is_where_the_welch_statistic_reaches_t(a, b):
    """Fieller's ends are the ratios r where |mean_b - r mean_a| / sqrt(v_b + r^2 v_a) = t."""
    (ma, sa, na), (mb, sb, nb) = moments(a), moments(b)
    low, high = stats.fieller_ratio_ci(mb, sb, nb, ma, sa, na)
    va, vb = sa**2 / na, sb**2 / nb
    t = sps.t.ppf(0.975, sps.ttest_ind(b, a, equal_var=False).df)
    for r in (float(low), float(high)):
        assert abs(mb - r * ma) / np.sqrt(vb + r * r * va) == pytest.approx(t, rel=1e-9)
    assert low < mb / ma < high
    # Sanity against the simpler interval (Welch CI of the difference over the host mean).
    simple = sps.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    assert float(low) == pytest.approx(1 + simple.low / ma, rel=0.05)
    assert float(high) == pytest.approx(1 + simple.high / ma, rel=0.05)


def test_fieller_excludes_one_exactly_when_welch_rejects():
    rng = np.random.default_rng(5)
    seen = set()
    for _ in range(300):
        a = rng.normal(100, 3, 5)
        b = rng.normal(100 + rng.uniform(-6, 6), 3, 5)
        low, high = stats.fieller_ratio_ci(*moments(b), *moments(a))
        rejects = sps.ttest_ind(b, a, equal_var=False).pvalue < 0.05
        excludes = not (low <= 1 <= high)
        assert rejects == excludes
        seen.add(rejects)
    assert seen == {True, False}


def test_fieller_unbounded_when_host_mean_not_clearly_nonzero():
    low, high = stats.fieller_ratio_ci(10.0, 1.0, 5, 1.0, 5.0, 5)
    assert np.isnan(low) and np.isnan(high)


def test_overhead_of_2015_figures_is_minus_5_4_percent():
    low, high = stats.fieller_ratio_ci(*moments(OVERLAY), *moments(HOST))
    assert round((OVERLAY.mean() / HOST.mean() - 1) * 100, 1) == -5.4
    assert -6 < (low - 1) * 100 < -5.4 < (high - 1) * 100 < -4.8


def test_no_test_without_two_runs_or_spread():
    assert np.isnan(stats.welch_p(1.0, np.nan, 1, 2.0, 1.0, 5))
    assert np.isnan(stats.welch_p(1.0, 0.0, 5, 1.0, 0.0, 5))


def test_vxlan_bound():
    bound = stats.vxlan_bound_percent(["tcp", "udp", "tcp"], [1500, 1500, 9000], [1450, 1450, 8950])
    assert bound[0] == pytest.approx((1398 / 1448 - 1) * 100)
    assert round(bound[0], 2) == -3.45
    assert bound[1] == pytest.approx((1422 / 1472 - 1) * 100)
    assert bound[2] == pytest.approx((8898 / 8948 - 1) * 100)


@pytest.mark.parametrize("a, b", SAMPLES)
def test_welch_difference_interval_matches_scipy(a, b):
    expected = sps.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    low, high = stats.welch_difference_ci(*moments(b), *moments(a))
    assert (float(low), float(high)) == (pytest.approx(expected.low, rel=1e-9), pytest.approx(expected.high, rel=1e-9))


def test_welch_difference_interval_edges():
    # No spread on either side: the difference is exact; one run on a side: no interval.
    low, high = stats.welch_difference_ci([5.0, 5.0], [0.0, 0.0], [3, 1], [2.0, 2.0], [0.0, 0.0], [3, 3])
    assert (low[0], high[0]) == (3.0, 3.0)
    assert np.isnan(low[1]) and np.isnan(high[1])


def test_positive_interval_cut_at_zero():
    assert list(stats.clip_at_zero([-3.0, 0.0, 2.5, np.nan])[:3]) == [0.0, 0.0, 2.5]
    assert np.isnan(stats.clip_at_zero([np.nan])[0])
