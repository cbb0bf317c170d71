"""The CPU cost of each case: CPU per Gbit/s per network, and what the overlay adds against host.

The figures are the kernels' own counters (results format 2: `cpu_*` run fields), read by
bench during each throughput run's measured window: user, system, softirq and irq time over
the window, summed over the kernels measured (scope `machine`: the lab's nodes share one
kernel, so the figure is the whole machine's, both ends together; `nodes`: each end's kernel).
Per case and network: the mean CPU per Gbit/s in percent of a core (as published figures give
it), its 95 % interval (Student t), and, against host, the change in percent with Fieller's
interval, the same statistics as the throughput table (analysis/stats.py).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import stats

PARTS = ("user", "system", "softirq", "irq")


def add_columns(table: pd.DataFrame, runs: pd.DataFrame, networks: list[str]) -> None:
    """Add the CPU columns to the summary `table` (one row per `row` of `runs`), in place.

    Per network: `{net}_cpu_percent_per_gbps_{mean,ci_low,ci_high,n}` and the mean of each part
    (`{net}_cpu_{part}_percent_per_gbps_mean`); per network against host:
    `{net}_cpu_extra_percent` and its Fieller interval; per row, the scopes measured (`cpu_scope`).
    """
    ok = runs[(runs["status"] == "ok") & runs["cpu_cores_per_gbps"].notna() & (runs["throughput_mbps"] > 0)]
    gbps = ok["throughput_mbps"] / 1000
    per_gbps = pd.DataFrame({"row": ok["row"], "network": ok["network"],
                             "total": ok["cpu_cores_per_gbps"] * 100})
    for part in PARTS:
        per_gbps[part] = ok[f"cpu_{part}_cores"] / gbps * 100
    desc = stats.describe(per_gbps.set_index(["row", "network"])["total"], ["row", "network"])
    parts = per_gbps.groupby(["row", "network"])[list(PARTS)].mean()
    rows = np.arange(len(table))
    for net in networks:
        full = pd.MultiIndex.from_arrays([rows, [net] * len(table)], names=["row", "network"])
        d = desc.reindex(full)
        table[f"{net}_cpu_percent_per_gbps_mean"] = d["mean"].to_numpy()
        table[f"{net}_cpu_percent_per_gbps_ci_low"] = stats.clip_at_zero(d["ci_low"].to_numpy())
        table[f"{net}_cpu_percent_per_gbps_ci_high"] = d["ci_high"].to_numpy()
        table[f"{net}_cpu_percent_per_gbps_sd"] = d["sd"].to_numpy()
        table[f"{net}_cpu_n"] = d["n"].fillna(0).astype(int).to_numpy()
        p = parts.reindex(full)
        for part in PARTS:
            table[f"{net}_cpu_{part}_percent_per_gbps_mean"] = p[part].to_numpy()
    if "host" in networks:
        for net in networks:
            if net == "host":
                continue
            mean, host = table[f"{net}_cpu_percent_per_gbps_mean"], table["host_cpu_percent_per_gbps_mean"]
            table[f"{net}_cpu_extra_percent"] = (mean / host - 1) * 100
            low, high = stats.fieller_ratio_ci(mean, table[f"{net}_cpu_percent_per_gbps_sd"], table[f"{net}_cpu_n"],
                                               host, table["host_cpu_percent_per_gbps_sd"], table["host_cpu_n"])
            table[f"{net}_cpu_extra_ci_low_percent"] = (low - 1) * 100
            table[f"{net}_cpu_extra_ci_high_percent"] = (high - 1) * 100
    scopes = ok.groupby("row")["cpu_scope"].agg(lambda s: ", ".join(sorted(set(s))))
    table["cpu_scope"] = scopes.reindex(rows).to_numpy()


def display(summary: pd.DataFrame, networks: list[str]) -> pd.DataFrame:
    """The CPU table of the report: the rows with CPU figures, as text cells."""
    from analysis.table import case_label, fmt, records
    from analysis.table import interval_text as _interval

    measured = [n for n in networks if f"{n}_cpu_n" in summary and (summary[f"{n}_cpu_n"] > 0).any()]
    rows = []
    for row in records(summary):
        if not any(row[f"{n}_cpu_n"] > 0 for n in measured):
            continue
        out = {"stack": row["setup"], "case": case_label(row), "CPU of": _scope_text(row["cpu_scope"])}
        for net in measured:
            if row[f"{net}_cpu_n"] == 0:
                out[f"{net} % core per Gbit/s"] = "-"
                continue
            ci = _interval(row[f"{net}_cpu_percent_per_gbps_ci_low"], row[f"{net}_cpu_percent_per_gbps_ci_high"])
            split = "/".join(fmt(row[f"{net}_cpu_{p}_percent_per_gbps_mean"], 2) for p in ("user", "system", "softirq"))
            out[f"{net} % core per Gbit/s"] = (f"{fmt(row[f'{net}_cpu_percent_per_gbps_mean'], 2)} {ci}".strip()
                                               + f" (n={row[f'{net}_cpu_n']}; usr/sys/softirq {split})")
        for net in measured:
            if net == "host" or "host" not in measured:
                continue
            extra = row[f"{net}_cpu_extra_percent"]
            both = min(row["host_cpu_n"], row[f"{net}_cpu_n"]) >= 2
            ci = _interval(row[f"{net}_cpu_extra_ci_low_percent"], row[f"{net}_cpu_extra_ci_high_percent"],
                           sign=True, unbounded=both)
            out[f"{net} CPU vs host %"] = f"{fmt(extra, sign=True)} {ci}".strip() if not np.isnan(extra) else ""
        rows.append(out)
    return pd.DataFrame(rows)


def _scope_text(scope) -> str:
    if not isinstance(scope, str):
        return ""
    return {"machine": "the machine (both ends, one kernel)", "nodes": "both nodes (two kernels, summed)"}.get(
        scope, scope)


def idle_table(setups) -> pd.DataFrame:
    """Each session's idle baseline: the CPU each kernel used with nothing of the session running."""
    rows = []
    for label, members in setups.items():
        for session in members:
            doc = session.metadata.get("cpu") or {}
            for kernel in doc.get("kernels") or []:
                idle = kernel.get("idle") or {}
                if not idle:
                    continue
                rows.append({"stack": label, "session": session.name, "nodes": ", ".join(kernel.get("nodes") or []),
                             "CPUs": kernel.get("cpus"), "seconds": _num(idle.get("window_s")),
                             "idle cores": _num(idle.get("total_cores"), 3),
                             "usr/sys/softirq": "/".join(_num(idle.get(f"{p}_cores"), 3)
                                                         for p in ("user", "system", "softirq")),
                             "steal": _num(idle.get("steal_cores"), 3)})
            for node, why in (doc.get("unavailable") or {}).items():
                rows.append({"stack": label, "session": session.name, "nodes": node, "CPUs": "",
                             "seconds": "", "idle cores": f"not measured: {why}", "usr/sys/softirq": "",
                             "steal": ""})
    return pd.DataFrame(rows)


def _num(value, digits: int = 2) -> str:
    return "" if value is None else f"{float(value):.{digits}f}"


NOTES = """\
CPU is read from each node's kernel counters (/proc/stat) at the start of a run's measured
window (after the warm-up) and a tenth of a second before its end (three quarters of the
way through when that sample came too late): user, system, softirq (the
kernel's packet processing, where VXLAN's encapsulation happens) and irq time, in cores (CPU
seconds per second), divided by the throughput in Gbit/s, shown in percent of a core per
Gbit/s (1 % of a core per Gbit/s = 0.01 cores per Gbit/s). Where both ends run on one kernel
(the local lab's nodes are namespaces of one machine) the figure is the whole machine's, both
ends together, counted once; on separate machines it is the two nodes' sum. It counts
everything the machine did in the window, other jobs included: the idle baseline below, taken
before the runs with nothing of the session running, shows what a quiet machine costs (a
noisy neighbour shows there). "CPU vs host %" is mean(network) / mean(host) - 1 of the CPU
per Gbit/s, with Fieller's 95 % interval. A CPU-bound path (every core busy) moves fewer
bits for the same CPU: there CPU per Gbit/s mirrors the throughput.
"""
