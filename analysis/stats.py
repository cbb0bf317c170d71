"""The statistics of the comparison table, vectorised over cases.

- Per network: mean, median, sample standard deviation, n, and the 95 % confidence interval of
  the mean from Student's t (n - 1 degrees of freedom).
- Overhead of a network against host: (mean_net / mean_host - 1) * 100. Its 95 % interval is
  Fieller's interval for the ratio of two independent means with unequal variances, with the
  Welch-Satterthwaite degrees of freedom: it accounts for the noise of the host mean too (a
  Welch interval of the difference divided by the host mean treats the host mean as exact).
  When the host mean itself is not clearly non-zero the interval is unbounded (NaN bounds).
- Significance: Welch's t-test, two-sided, at alpha = 0.05. Fieller's interval excludes 0 %
  exactly when Welch's test rejects.

Student's t comes from scipy.special (stdtr, stdtrit): the same functions scipy.stats uses, at
a fraction of its import time (the analysis must stay fast). tests/test_analysis_stats.py checks
every figure here against scipy.stats.
- VXLAN bound: the best an overlay can do on a link-bound path, payload per packet inside the
  overlay over payload per packet on the host (TCP with timestamps: MTU - 52; UDP: MTU - 28).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE
# IPv4 (20) + TCP (20) + timestamps option (12); IPv4 (20) + UDP (8).
PAYLOAD_HEADER_BYTES = {"tcp": 52, "udp": 28}


def describe(values: pd.Series, by: list[str]) -> pd.DataFrame:
    """mean, median, sd, n, ci_low, ci_high of `values` per group of `by` (NaN values left out)."""
    grouped = values.groupby(by, dropna=False, sort=True)
    table = grouped.agg(["mean", "median", "std", "count"])
    table.columns = ["mean", "median", "sd", "n"]
    half = ci_half_width(table["sd"].to_numpy(), table["n"].to_numpy())
    table["ci_low"] = table["mean"] - half
    table["ci_high"] = table["mean"] + half
    return table


def ci_half_width(sd: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Half width of the t confidence interval of a mean; NaN when n < 2."""
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = t_quantile(np.where(n >= 2, n - 1, np.nan))
        return t * np.asarray(sd, dtype=float) / np.sqrt(n)


def welch_df(sd_a, n_a, sd_b, n_b) -> np.ndarray:
    """Welch-Satterthwaite degrees of freedom."""
    va, vb = np.square(sd_a) / n_a, np.square(sd_b) / n_b
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.square(va + vb) / (np.square(va) / (n_a - 1) + np.square(vb) / (n_b - 1))


def t_quantile(df) -> np.ndarray:
    """The two-sided CONFIDENCE quantile of Student's t with `df` degrees of freedom."""
    df = np.asarray(df, dtype=float)
    with np.errstate(invalid="ignore"):
        # stdtrit does not take df = inf: the normal quantile is its limit.
        finite = special.stdtrit(np.where(np.isinf(df), 1.0, df), 1 - ALPHA / 2)
        return np.where(np.isinf(df), special.ndtri(1 - ALPHA / 2), finite)


def welch_p(mean_a, sd_a, n_a, mean_b, sd_b, n_b) -> np.ndarray:
    """Two-sided p-value of Welch's t-test; NaN when a side has n < 2 or both have no spread."""
    mean_a, sd_a, n_a, mean_b, sd_b, n_b = (np.asarray(x, dtype=float) for x in (mean_a, sd_a, n_a, mean_b, sd_b, n_b))
    ok = (n_a >= 2) & (n_b >= 2) & ((sd_a > 0) | (sd_b > 0))
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (mean_a - mean_b) / np.sqrt(np.square(sd_a) / n_a + np.square(sd_b) / n_b)
        p = 2 * special.stdtr(welch_df(sd_a, n_a, sd_b, n_b), -np.abs(t))
    return np.where(ok, p, np.nan)


def fieller_ratio_ci(mean_num, sd_num, n_num, mean_den, sd_den, n_den):
    """Fieller's CONFIDENCE interval for mean_num / mean_den (independent samples).

    The interval is every ratio r with |mean_num - r mean_den| / sqrt(v_num + r^2 v_den) <= t,
    v = sd^2 / n, t the Student quantile at the Welch degrees of freedom. Returns (low, high),
    NaN where it is unbounded (the denominator mean is not significantly non-zero) or n < 2.
    """
    a, b = np.asarray(mean_num, dtype=float), np.asarray(mean_den, dtype=float)
    n_a, n_b = np.asarray(n_num, dtype=float), np.asarray(n_den, dtype=float)
    va, vb = np.square(sd_num) / n_a, np.square(sd_den) / n_b
    with np.errstate(invalid="ignore", divide="ignore"):
        df = welch_df(sd_num, n_a, sd_den, n_b)
        # No spread on either side: the ratio is exact.
        df = np.where((va == 0) & (vb == 0), np.inf, df)
        t = t_quantile(df)
        g = np.square(t) * vb / np.square(b)
        ratio = a / b
        spread = (t / np.abs(b)) * np.sqrt(va * (1 - g) + np.square(ratio) * vb)
        low, high = (ratio - spread) / (1 - g), (ratio + spread) / (1 - g)
    bad = ~(g < 1) | (n_a < 2) | (n_b < 2)
    return np.where(bad, np.nan, low), np.where(bad, np.nan, high)


def vxlan_bound_percent(protocol, host_mtu, overlay_mtu) -> np.ndarray:
    """Throughput change of the overlay against host if only header bytes mattered, in percent."""
    header = np.asarray(pd.Series(protocol).map(PAYLOAD_HEADER_BYTES), dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((np.asarray(overlay_mtu, float) - header) / (np.asarray(host_mtu, float) - header) - 1) * 100


def welch_difference_ci(mean_a, sd_a, n_a, mean_b, sd_b, n_b):
    """The CONFIDENCE interval of mean_a - mean_b (independent samples, unequal variances):
    the interval Welch's test inverts. NaN when a side has n < 2; exact when neither has spread."""
    mean_a, sd_a, n_a, mean_b, sd_b, n_b = (np.asarray(x, dtype=float) for x in (mean_a, sd_a, n_a, mean_b, sd_b, n_b))
    va, vb = np.square(sd_a) / n_a, np.square(sd_b) / n_b
    with np.errstate(invalid="ignore", divide="ignore"):
        df = np.where((va == 0) & (vb == 0), np.inf, welch_df(sd_a, n_a, sd_b, n_b))
        half = t_quantile(df) * np.sqrt(va + vb)
    diff = mean_a - mean_b
    bad = (n_a < 2) | (n_b < 2)
    return np.where(bad, np.nan, diff - half), np.where(bad, np.nan, diff + half)


def clip_at_zero(low) -> np.ndarray:
    """The low end of an interval of a quantity that cannot be negative (a throughput, a latency,
    a loss): the part below zero holds no possible value, so cutting it keeps the coverage."""
    low = np.asarray(low, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.where(low < 0, 0.0, low)
