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

from analysis import cpu, metrics, precision, stats
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
    (analysis/cpu.py), every other metric recorded (analysis/metrics.py) and the precision
    reached (analysis/precision.py, against each setup's target in `precision_targets`).

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
        # Throughput and latency cannot be negative: an interval is cut at zero.
        table[f"{net}_ci_low"] = stats.clip_at_zero(d["ci_low"].to_numpy())
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

    table = table.copy()  # one block per dtype again: pandas warns of a frame built column by column
    cpu.add_columns(table, counted, networks)
    # Many columns at once: one by one, pandas would fragment the frame.
    table = pd.concat([table, metrics.columns(counted, networks, len(table))], axis=1).copy()
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


def interval_text(low, high, digits: int = 1, sign: bool = False, unbounded: bool = False) -> str:
    if _nan(low) or _nan(high):
        return "unbounded" if unbounded else ""
    return f"[{fmt(low, digits, sign)}, {fmt(high, digits, sign)}]"


class Footnotes:
    """Reasons told once: a table cell says `unsupported [1]`, the note under the table says why.

    One instance per rendering, shared by its tables, so a reason keeps its number everywhere.
    """

    def __init__(self) -> None:
        self.texts: list[str] = []

    def ref(self, text: str) -> str:
        if text not in self.texts:
            self.texts.append(text)
        return f"[{self.texts.index(text) + 1}]"

    def lines(self) -> list[str]:
        return [f"[{i}] {text}" for i, text in enumerate(self.texts, 1)]


def network_status(row, net: str, notes: Footnotes) -> str | None:
    """Why a network has no statistics in this row (a footnote tells the reason), or None when
    it has some."""
    if row[f"{net}_n"] > 0:
        return None
    for status, cell in (("skipped", "unsupported"), ("failed", f"all {row[f'{net}_failed']} runs failed")):
        if row[f"{net}_{status}"] > 0:
            reason = row[f"{net}_{status}_reason"] or "no reason given"
            # bench's reasons usually start with the network's name; say it where they do not.
            text = reason if str(reason).startswith(net) else f"{net}: {reason}"
            return f"{cell} {notes.ref(text)}"
    return "-"


def significance_text(row, net: str) -> str:
    p = row.get(f"{net}_welch_p")
    if _nan(p):
        if min(row["host_n"], row[f"{net}_n"]) < 2:
            return "n/a (n<2)" if row[f"{net}_n"] > 0 and row["host_n"] > 0 else ""
        return "n/a (no spread)"
    return "yes" if p < stats.ALPHA else "no"


def records(table: pd.DataFrame) -> list[dict]:
    """The rows as dicts: a tenth of the time of iterrows() on a wide table."""
    return table.to_dict("records")


def table_networks(table: pd.DataFrame) -> list[str]:
    return [n for n in NETWORKS if f"{n}_n" in table]


def compared_networks(table: pd.DataFrame) -> list[str]:
    """The networks with a "vs host" column: those measured in some case, host present."""
    return [n for n in table_networks(table) if n != "host" and f"{n}_overhead_percent" in table]


def uses_vxlan(net: str) -> bool:
    """The overlays (plain or encrypted) carry VXLAN's 50 bytes; other networks do not."""
    return net.startswith("overlay")


def _mean_text(row, net: str, notes: Footnotes, n: bool = True) -> str:
    status = network_status(row, net, notes)
    if status:
        return status
    # The interval may be cut at zero; the half-width said is the upper one (the larger).
    half = row[f"{net}_ci_high"] - row[f"{net}_mean"]
    pm = f" ± {fmt(half)}" if not _nan(half) else ""
    failed = f", +{row[f'{net}_failed']} failed" if row[f"{net}_failed"] else ""
    return f"{fmt(row[f'{net}_mean'])}{pm}" + (f" (n={row[f'{net}_n']}{failed})" if n else "")


def _overhead_text(row, net: str, notes: Footnotes, p: bool = True, unit: str = "") -> str:
    """`-3.4% [-3.5, -3.3] p<0.001`: the change against host, its interval, Welch's p."""
    status = network_status(row, net, notes)
    if status:
        return status
    over = row[f"{net}_overhead_percent"]
    if _nan(over):
        return ""
    measured = min(row["host_n"], row[f"{net}_n"]) >= 2
    ci = interval_text(row[f"{net}_overhead_ci_low_percent"], row[f"{net}_overhead_ci_high_percent"],
                       sign=True, unbounded=measured)
    text = f"{fmt(over, sign=True)}{unit} {ci}".strip()
    if not p:
        return text
    sig = significance_text(row, net)
    if sig in ("yes", "no"):
        p_text = fmt_p(row[f"{net}_welch_p"])
        return text + " p" + ("" if p_text.startswith("<") else "=") + p_text
    return f"{text} {sig}"


def terminal_table(table: pd.DataFrame, notes: Footnotes) -> pd.DataFrame:
    """The table printed by the command: per network mean ± half-width (n), against host."""
    rows = []
    for row in records(table):
        out = {"stack": row["setup"], "case": case_label(row), "metric": row["unit"]}
        for net in table_networks(table):
            out[net] = _mean_text(row, net, notes)
        for net in compared_networks(table):
            if (table[f"{net}_n"] > 0).any():
                out[f"{net} vs host %"] = _overhead_text(row, net, notes, unit="%")
        out["VXLAN bound %"] = fmt(row["vxlan_bound_percent"], 2, sign=True)
        out["2015"] = "" if _nan(row["ref2015_host_mbps"]) else (
            f"{row['ref2015']}: {fmt(row['ref2015_host_mbps'], 0)} -> {fmt(row['ref2015_overlay_mbps'], 0)}"
            f" ({fmt(row['ref2015_overhead_percent'], sign=True)}%)")
        rows.append(out)
    return pd.DataFrame(rows)


def comparison_table(table: pd.DataFrame, notes: Footnotes) -> pd.DataFrame:
    """The report's main table, narrow enough for a 1400 px window whatever the networks: host's
    mean, then each other network against host (its own means are in details_table)."""
    compared = compared_networks(table) if (table.get("host_n", pd.Series(dtype=int)) > 0).any() else []
    rows = []
    for row in records(table):
        out = {"stack": row["setup"], "case": case_label(row), "unit": row["unit"]}
        if compared:
            out["host"] = _mean_text(row, "host", notes)
            for net in compared:
                out[f"{net} vs host %"] = _overhead_text(row, net, notes, p=False)
        else:  # nothing to compare with: each network's mean
            for net in table_networks(table):
                out[net] = _mean_text(row, net, notes)
        out["VXLAN bound %"] = fmt(row["vxlan_bound_percent"], 2, sign=True)
        rows.append(out)
    return pd.DataFrame(rows)


def details_table(table: pd.DataFrame, notes: Footnotes) -> pd.DataFrame:
    """Every figure of the comparison: per network mean, median, sd, n, interval; against host
    the change, its interval, Welch's p, significance; the 2015 figures."""
    networks = table_networks(table)
    rows = []
    for row in records(table):
        out = {"stack": row["setup"], "case": case_label(row), "unit": row["unit"]}
        for net in networks:
            status = network_status(row, net, notes)
            if not (table[f"{net}_n"] > 0).any():
                out[net] = status  # never measured: one column says why
                continue
            out[f"{net} mean"] = status or fmt(row[f"{net}_mean"])
            out[f"{net} median"] = "" if status else fmt(row[f"{net}_median"])
            out[f"{net} sd"] = "" if status else fmt(row[f"{net}_sd"])
            failed = f" (+{row[f'{net}_failed']} failed)" if row[f"{net}_failed"] else ""
            out[f"{net} n"] = f"{row[f'{net}_n']}{failed}" if not status or row[f"{net}_failed"] else ""
            out[f"{net} 95% CI"] = "" if status else interval_text(row[f"{net}_ci_low"], row[f"{net}_ci_high"])
        for net in compared_networks(table):
            if not (table[f"{net}_n"] > 0).any():
                continue
            measured = min(row["host_n"], row[f"{net}_n"]) >= 2
            out[f"{net} vs host %"] = fmt(row[f"{net}_overhead_percent"], sign=True)
            out[f"{net} vs host 95% CI"] = interval_text(row[f"{net}_overhead_ci_low_percent"],
                                                         row[f"{net}_overhead_ci_high_percent"],
                                                         sign=True, unbounded=measured)
            out[f"{net} Welch p"] = fmt_p(row[f"{net}_welch_p"])
            out[f"{net} significant"] = significance_text(row, net)
        out["VXLAN bound %"] = fmt(row["vxlan_bound_percent"], 2, sign=True)
        out["2015 ref"] = "" if _nan(row["ref2015_host_mbps"]) else row["ref2015"]
        out["2015 host"] = fmt(row["ref2015_host_mbps"])
        out["2015 overlay"] = fmt(row["ref2015_overlay_mbps"])
        out["2015 overlay vs host %"] = fmt(row["ref2015_overhead_percent"], sign=True)
        rows.append(out)
    return pd.DataFrame(rows)
