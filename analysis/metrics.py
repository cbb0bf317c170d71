"""Every other metric a case records, beside the one it is compared by: UDP loss and jitter,
TCP retransmits, the latency percentiles.

Per case and network: the mean over the runs that recorded it, its 95 % interval (Student t,
cut at zero: none of these can be negative) and n; against host, the change, either in percent
(Fieller's interval of the ratio, as for throughput) or, for a quantity that is often zero on
host (a loss, a retransmit count), as a difference in its own unit (Welch's interval), since a
ratio to zero says nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import stats


@dataclass(frozen=True)
class Metric:
    field: str        # the run field (docs/results-format.md), its unit in its name
    label: str        # in the report's words
    unit: str         # shown after a value
    vs_host: str      # "percent": ratio to host, "difference": minus host, in `unit`
    digits: int = 1
    difference_unit: str = ""  # the unit of a difference: a loss in % differs in points


METRICS = (
    Metric("udp_loss_percent", "UDP loss", "%", "difference", 3, "points"),
    Metric("udp_jitter_ms", "UDP jitter", "ms", "percent", 3),
    Metric("retransmits", "TCP retransmits", "per run", "difference", 1, "per run"),
    Metric("latency_p50_us", "latency p50", "us", "percent", 1),
    Metric("latency_p99_us", "latency p99", "us", "percent", 1),
    Metric("latency_p999_us", "latency p99.9", "us", "percent", 1),
)
FIELDS = [m.field for m in METRICS]
# The groups of the report's tables: a case shows a group when one of its runs recorded it.
GROUPS = {
    "UDP loss and jitter": ("udp_loss_percent", "udp_jitter_ms"),
    "TCP retransmits": ("retransmits",),
    "Latency percentiles": ("latency_p50_us", "latency_p99_us", "latency_p999_us"),
}
BY_FIELD = {m.field: m for m in METRICS}


def vs_host_columns(net: str, metric: Metric) -> tuple[str, str, str]:
    """The summary.csv columns of `net` against host for `metric`: value, interval low, high."""
    if metric.vs_host == "percent":
        base = f"{net}_{metric.field}_vs_host"
        return f"{base}_percent", f"{base}_ci_low_percent", f"{base}_ci_high_percent"
    base = f"{net}_{metric.field}_minus_host"
    return base, f"{base}_ci_low", f"{base}_ci_high"


def columns(runs: pd.DataFrame, networks: list[str], n_rows: int) -> pd.DataFrame:
    """The summary's columns for these metrics, one row per table row: per network and metric
    `{net}_{field}_{mean,ci_low,ci_high,sd,n}`; against host the columns of vs_host_columns().
    `runs` carries `row` (the table row of each run)."""
    ok = runs[runs["status"] == "ok"]
    values = ok[["row", "network", *FIELDS]].astype({f: float for f in FIELDS})
    grouped = values.groupby(["row", "network"], sort=True)[FIELDS]
    mean, sd, n = grouped.mean(), grouped.std(), grouped.count()
    rows = np.arange(n_rows)
    out: dict[str, np.ndarray] = {}
    for net in networks:
        full = pd.MultiIndex.from_arrays([rows, [net] * n_rows], names=["row", "network"])
        m, s, c = mean.reindex(full), sd.reindex(full), n.reindex(full).fillna(0)
        for field in FIELDS:
            half = stats.ci_half_width(s[field].to_numpy(), c[field].to_numpy())
            out[f"{net}_{field}_mean"] = m[field].to_numpy()
            out[f"{net}_{field}_ci_low"] = stats.clip_at_zero(m[field].to_numpy() - half)
            out[f"{net}_{field}_ci_high"] = m[field].to_numpy() + half
            out[f"{net}_{field}_sd"] = s[field].to_numpy()
            out[f"{net}_{field}_n"] = c[field].astype(int).to_numpy()
    for net in networks if "host" in networks else []:
        if net == "host":
            continue
        for metric in METRICS:
            f = metric.field
            args = (out[f"{net}_{f}_mean"], out[f"{net}_{f}_sd"], out[f"{net}_{f}_n"],
                    out[f"host_{f}_mean"], out[f"host_{f}_sd"], out[f"host_{f}_n"])
            value, low_col, high_col = vs_host_columns(net, metric)
            if metric.vs_host == "percent":
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[value] = (args[0] / args[3] - 1) * 100
                low, high = stats.fieller_ratio_ci(*args)
                out[low_col], out[high_col] = (low - 1) * 100, (high - 1) * 100
            else:
                out[value] = args[0] - args[3]
                out[low_col], out[high_col] = stats.welch_difference_ci(*args)
    return pd.DataFrame(out)


def display(summary: pd.DataFrame, networks: list[str], fields: tuple[str, ...]) -> pd.DataFrame:
    """One report table: per case and network with `fields` recorded, each metric's mean with
    its interval and n, and against host its change with its interval. Empty when no case
    recorded them."""
    from analysis.table import case_label, fmt, interval_text, records

    recorded = np.logical_or.reduce([summary[f"{n}_{f}_n"] > 0 for n in networks for f in fields])
    rows = []
    for row in records(summary[recorded]):
        for net in networks:
            if not any(row[f"{net}_{f}_n"] > 0 for f in fields):
                continue
            out = {"stack": row["setup"], "case": case_label(row), "network": net}
            for field in fields:
                metric = BY_FIELD[field]
                head = f"{metric.label}, {metric.unit}"
                if row[f"{net}_{field}_n"] == 0:
                    out[head] = ""
                else:
                    ci = interval_text(row[f"{net}_{field}_ci_low"], row[f"{net}_{field}_ci_high"], metric.digits)
                    out[head] = (f"{fmt(row[f'{net}_{field}_mean'], metric.digits)} {ci}".strip()
                                 + f" (n={row[f'{net}_{field}_n']})")
                if "host" not in networks:
                    continue
                value, low, high = vs_host_columns(net, metric)
                percent = metric.vs_host == "percent"
                head = f"{metric.label} vs host" + (" %" if percent else f", {metric.difference_unit}")
                if net == "host" or _missing(row[value]):
                    out[head] = ""
                    continue
                both = min(row[f"host_{field}_n"], row[f"{net}_{field}_n"]) >= 2
                digits = 1 if percent else metric.digits
                ci = interval_text(row[low], row[high], digits, sign=True, unbounded=both)
                out[head] = f"{fmt(row[value], digits, sign=True)} {ci}".strip()
            rows.append(out)
    return pd.DataFrame(rows)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


NOTES = """\
Every other metric the runs recorded, per case and network: the mean over the runs, its 95 %
interval (Student t, cut at zero: none of these can be negative) and the number of runs that
recorded it. Against host: latency and jitter as a change in percent (Fieller's interval, as in
the comparison); UDP loss and TCP retransmits as a difference in their own unit (percentage
points, retransmits per run; Welch's interval), since host often has none and a ratio to zero
says nothing. Latency is sockperf's (half the round trip); loss and jitter are the receiver's.
"""
