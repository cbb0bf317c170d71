"""The comparison table: one row per setup and case, columns per network.

A case is (tool, protocol, streams, direction, server node, client node, duration, UDP target)
within a setup (a stack with its identifying metadata). The metric of a case is its throughput
(iperf2, iperf3; higher is better) or its median request/response latency (sockperf; lower is
better).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis import cpu, precision, stats
from bench.results_format import NETWORKS, TOOL_METRICS

CASE_KEYS = ["tool", "protocol", "streams", "direction", "server_node", "client_node",
             "duration_s", "udp_target_mbps"]
ROW_KEYS = ["setup", *CASE_KEYS]

# The 2015 post's figures (iperf 2, -P 10, TCP, 5 runs each, Mbit/s).
REFERENCE_2015 = {
    "digitalocean": {"label": "DigitalOcean", "host_mbps": 932.0, "overlay_mbps": 882.0},
    "virtualbox": {"label": "VirtualBox", "host_mbps": 1720.0, "overlay_mbps": 896.0},
}
# Other providers (the local lab) are set beside the post's headline figures, DigitalOcean.
DEFAULT_REFERENCE = "digitalocean"


def metric_values(runs: pd.DataFrame) -> pd.Series:
    """The value each run contributes to its case: its tool's metric (throughput, p50 latency)."""
    values = pd.Series(np.nan, index=runs.index, dtype=float)
    for tool, (field, _label) in TOOL_METRICS.items():
        mine = runs["tool"] == tool
        values[mine] = runs.loc[mine, field]
    return values


def networks_in(runs: pd.DataFrame) -> list[str]:
    present = set(runs["network"])
    return [n for n in NETWORKS if n in present]


def number_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """Give each run the number of its table row (setup and case, sorted); returns the rows' keys."""
    grouped = runs.groupby(ROW_KEYS, dropna=False, sort=True)
    runs["row"] = grouped.ngroup()
    return grouped.size().index.to_frame(index=False)


def summarize(runs: pd.DataFrame, providers: dict[str, str],
              mtus: dict[tuple[str, str], tuple[float, float]],
              precision_targets: dict[str, float] | None = None) -> pd.DataFrame:
    """The table as numbers (summary.csv): one row per setup and case, with the CPU cost
    (analysis/cpu.py) and the precision reached (analysis/precision.py, against each setup's
    target in `precision_targets`).

    Adds the column `row` to `runs`: the index of the run's row in the table.
    """
    row_keys = number_rows(runs)
    networks = networks_in(runs)
    # A failed attempt that bench tried again, and that then succeeded (a set-up failure),
    # is not a failed run: it stays in runs.csv but is not counted here.
    done = runs.loc[runs["status"] != "failed", ["session", "run_id"]]
    retried = (runs["status"] == "failed") & pd.MultiIndex.from_frame(runs[["session", "run_id"]]).isin(
        pd.MultiIndex.from_frame(done))
    counted = runs[~retried]
    # Group by the row number rather than by nine key columns: much faster on many runs.
    runs = counted[["row", "network", "status", "reason"]].assign(value=metric_values(counted))
    ok = runs[runs["status"] == "ok"]
    desc = stats.describe(ok.set_index(["row", "network"])["value"], ["row", "network"])
    counts = runs.groupby(["row", "network", "status"]).size().unstack("status")
    table = row_keys.reset_index(drop=True)
    table.insert(1, "provider", table["setup"].map(providers))
    table["metric"] = table["tool"].map(lambda t: TOOL_METRICS[t][0])
    table["unit"] = table["tool"].map(lambda t: TOOL_METRICS[t][1])

    # Reasons, first seen, for runs that were skipped or failed.
    def reasons(status: str) -> pd.Series:
        return runs[runs["status"] == status].groupby(["row", "network"])["reason"].first()

    skipped_reason, failed_reason = reasons("skipped"), reasons("failed")
    for net in networks:
        full = pd.MultiIndex.from_arrays([np.arange(len(table)), [net] * len(table)], names=["row", "network"])
        d = desc.reindex(full)
        c = counts.reindex(full)
        table[f"{net}_mean"] = d["mean"].to_numpy()
        table[f"{net}_median"] = d["median"].to_numpy()
        table[f"{net}_sd"] = d["sd"].to_numpy()
        table[f"{net}_n"] = d["n"].fillna(0).astype(int).to_numpy()
        table[f"{net}_ci_low"] = d["ci_low"].to_numpy()
        table[f"{net}_ci_high"] = d["ci_high"].to_numpy()
        for status in ("failed", "skipped"):
            col = c[status] if status in c else pd.Series(np.nan, index=full)
            table[f"{net}_{status}"] = col.fillna(0).astype(int).to_numpy()
        table[f"{net}_skipped_reason"] = skipped_reason.reindex(full).to_numpy()
        table[f"{net}_failed_reason"] = failed_reason.reindex(full).to_numpy()

    if "host" in networks:
        for net in networks:
            if net == "host":
                continue
            args = (table[f"{net}_mean"], table[f"{net}_sd"], table[f"{net}_n"],
                    table["host_mean"], table["host_sd"], table["host_n"])
            table[f"{net}_overhead_percent"] = (table[f"{net}_mean"] / table["host_mean"] - 1) * 100
            low, high = stats.fieller_ratio_ci(*args)
            table[f"{net}_overhead_ci_low_percent"] = (low - 1) * 100
            table[f"{net}_overhead_ci_high_percent"] = (high - 1) * 100
            p = stats.welch_p(*args)
            table[f"{net}_welch_p"] = p
            table[f"{net}_significant"] = pd.Series(p < stats.ALPHA).where(~np.isnan(p))

    cpu.add_columns(table, counted, networks)
    precision.add_columns(table, networks, precision_targets or {})

    host_mtu = _pair_mtu(table, mtus, 0)
    overlay_mtu = _pair_mtu(table, mtus, 1)
    table["host_mtu_bytes"] = host_mtu
    table["overlay_mtu_bytes"] = overlay_mtu
    bound = stats.vxlan_bound_percent(table["protocol"], host_mtu, overlay_mtu)
    table["vxlan_bound_percent"] = np.where(table["metric"] == "throughput_mbps", bound, np.nan)

    # The 2015 figures beside the cases shaped like the post's: TCP, 10 streams, forward.
    like_2015 = ((table["metric"] == "throughput_mbps") & (table["protocol"] == "tcp")
                 & (table["streams"] == 10) & (table["direction"] == "forward"))
    ref = table["provider"].map(lambda p: REFERENCE_2015.get(p, REFERENCE_2015[DEFAULT_REFERENCE]))
    table["ref2015"] = ref.map(lambda r: r["label"]).where(like_2015)
    table["ref2015_host_mbps"] = ref.map(lambda r: r["host_mbps"]).where(like_2015)
    table["ref2015_overlay_mbps"] = ref.map(lambda r: r["overlay_mbps"]).where(like_2015)
    table["ref2015_overhead_percent"] = (table["ref2015_overlay_mbps"] / table["ref2015_host_mbps"] - 1) * 100
    return table


def _pair_mtu(table: pd.DataFrame, mtus, which: int) -> np.ndarray:
    """The smaller MTU of the two nodes of each case (NaN if metadata does not say)."""
    out = []
    for setup, server, client in zip(table["setup"], table["server_node"], table["client_node"]):
        values = [mtus.get((setup, node), (np.nan, np.nan))[which] for node in (server, client)]
        out.append(np.nan if any(math.isnan(v) for v in values) else min(values))
    return np.asarray(out, dtype=float)


# ---- text rendering -------------------------------------------------------------------

def case_label(row) -> str:
    label = (f"{row['tool']} {row['protocol']} P{row['streams']} {row['direction']} "
             f"{row['client_node']}->{row['server_node']} {_num(row['duration_s'])}s")
    if not _nan(row["udp_target_mbps"]):
        label += f" @{_num(row['udp_target_mbps'])}M"
    return label


def _nan(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _num(value) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:g}"


def fmt(value, digits: int = 1, sign: bool = False) -> str:
    if _nan(value):
        return ""
    return f"{float(value):+.{digits}f}" if sign else f"{float(value):.{digits}f}"


def fmt_p(p) -> str:
    if _nan(p):
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def network_status(row, net: str) -> str | None:
    """Why a network has no statistics in this row, or None when it has some."""
    if row[f"{net}_n"] > 0:
        return None
    if row[f"{net}_skipped"] > 0:
        return f"unsupported: {row[f'{net}_skipped_reason'] or 'no reason given'}"
    if row[f"{net}_failed"] > 0:
        return f"all {row[f'{net}_failed']} runs failed: {row[f'{net}_failed_reason'] or 'no reason given'}"
    return "-"


def significance_text(row, net: str) -> str:
    p = row.get(f"{net}_welch_p")
    if _nan(p):
        if min(row["host_n"], row[f"{net}_n"]) < 2:
            return "n/a (n<2)" if row[f"{net}_n"] > 0 and row["host_n"] > 0 else ""
        return "n/a (no spread)"
    return "yes" if p < stats.ALPHA else "no"


def display_table(table: pd.DataFrame, compact: bool = False) -> pd.DataFrame:
    """The table as text cells: report.md and report.html (full) or the terminal (compact)."""
    networks = [n for n in NETWORKS if f"{n}_n" in table]
    rows = []
    for _, row in table.iterrows():
        out = {"stack": row["setup"], "case": case_label(row), "metric": row["unit"]}
        for net in networks:
            status = network_status(row, net)
            n_text = str(row[f"{net}_n"]) + (f" (+{row[f'{net}_failed']} failed)" if row[f"{net}_failed"] else "")
            if compact:
                if status:
                    out[net] = status
                else:
                    half = (row[f"{net}_ci_high"] - row[f"{net}_ci_low"]) / 2
                    pm = f" ± {fmt(half)}" if not _nan(half) else ""
                    failed = f", +{row[f'{net}_failed']} failed" if row[f"{net}_failed"] else ""
                    out[net] = f"{fmt(row[f'{net}_mean'])}{pm} (n={row[f'{net}_n']}{failed})"
                continue
            if not (table[f"{net}_n"] > 0).any():
                # Never measured (unsupported everywhere, say): one column says why.
                out[net] = status
                continue
            out[f"{net} mean"] = status or fmt(row[f"{net}_mean"])
            out[f"{net} median"] = "" if status else fmt(row[f"{net}_median"])
            out[f"{net} sd"] = "" if status else fmt(row[f"{net}_sd"])
            out[f"{net} n"] = n_text if not status or row[f"{net}_failed"] else ""
            out[f"{net} 95% CI"] = "" if status else _interval(row[f"{net}_ci_low"], row[f"{net}_ci_high"])
        for net in networks:
            # No column for a network never measured (e.g. unsupported everywhere).
            if net == "host" or f"{net}_overhead_percent" not in table or not (table[f"{net}_n"] > 0).any():
                continue
            over = row[f"{net}_overhead_percent"]
            # Both sides measured at least twice yet no interval: Fieller's is unbounded.
            measured = min(row["host_n"], row[f"{net}_n"]) >= 2
            ci = _interval(row[f"{net}_overhead_ci_low_percent"], row[f"{net}_overhead_ci_high_percent"],
                           sign=True, unbounded=measured)
            sig = significance_text(row, net)
            if compact:
                text = ""
                if not _nan(over):
                    text = f"{fmt(over, sign=True)}% {ci}".strip()
                    if sig in ("yes", "no"):
                        p_text = fmt_p(row[f"{net}_welch_p"])
                        text += " p" + ("" if p_text.startswith("<") else "=") + p_text
                    else:
                        text += f" {sig}"
                out[f"{net} vs host %"] = text
                continue
            out[f"{net} vs host %"] = fmt(over, sign=True)
            out[f"{net} vs host 95% CI"] = ci
            out[f"{net} Welch p"] = fmt_p(row[f"{net}_welch_p"])
            out[f"{net} significant"] = sig
        out["VXLAN bound %"] = fmt(row["vxlan_bound_percent"], 2, sign=True)
        if compact:
            out["2015"] = "" if _nan(row["ref2015_host_mbps"]) else (
                f"{row['ref2015']}: {fmt(row['ref2015_host_mbps'], 0)} -> {fmt(row['ref2015_overlay_mbps'], 0)}"
                f" ({fmt(row['ref2015_overhead_percent'], sign=True)}%)")
        else:
            out["2015 ref"] = "" if _nan(row["ref2015_host_mbps"]) else row["ref2015"]
            out["2015 host"] = fmt(row["ref2015_host_mbps"])
            out["2015 overlay"] = fmt(row["ref2015_overlay_mbps"])
            out["2015 overlay vs host %"] = fmt(row["ref2015_overhead_percent"], sign=True)
        rows.append(out)
    return pd.DataFrame(rows)


def _interval(low, high, sign: bool = False, unbounded: bool = False) -> str:
    if _nan(low) or _nan(high):
        return "unbounded" if unbounded else ""
    return f"[{fmt(low, sign=sign)}, {fmt(high, sign=sign)}]"
