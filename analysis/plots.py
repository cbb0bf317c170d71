"""The PNG figures of a report (matplotlib, Agg backend: no display needed).

Each function returns the figure, or None when the results hold nothing to draw (the report
says so instead of shipping an empty picture).
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: CI and lab machines have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis import stats  # noqa: E402
from analysis import table as tbl
from bench.results_format import NETWORKS  # noqa: E402

# Enough rows to read; the CSV holds all of them.
MAX_ROWS = 20
COLOURS = {"host": "#4C72B0", "overlay": "#DD8452", "overlay-encrypted": "#C44E52", "bridge": "#55A868"}


def _text_in(labels, fontsize: float) -> float:
    """Width in inches of the longest label, estimated at 0.56 em per character (DejaVu Sans
    averages 0.52 on these labels). Measuring the text instead (tight_layout) draws every
    figure twice: a third of the plotting time."""
    return max((len(str(label)) for label in labels), default=0) * fontsize * 0.56 / 72


def _figure(label_in: float, height_in: float, legend_in: float = 0.0, ncols: int = 1, plot_in: float = 6.0):
    """A figure with room on the left for labels of `label_in` inches, and on the right for
    a legend of `legend_in` inches set outside the axes."""
    left, right = label_in + 0.5, legend_in + 0.3
    width = left + plot_in * ncols + right
    fig, axes = plt.subplots(1, ncols, sharey=True, figsize=(width, height_in), squeeze=False)
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=0.75 / height_in,
                        top=1 - 0.6 / height_in, wspace=0.08)
    return fig, axes[0] if ncols > 1 else axes[0][0]


def _title(ax, text: str, shown: int, total: int) -> None:
    ax.set_title(text + (f" (first {shown} of {total} cases; all in summary.csv)" if total > shown else ""))


def throughput_by_network(summary: pd.DataFrame):
    rows = summary[summary["metric"] == "throughput_mbps"]
    networks = [n for n in NETWORKS if f"{n}_mean" in rows and rows[f"{n}_mean"].notna().any()]
    if rows.empty or not networks:
        return None
    total = len(rows)
    rows = rows.head(MAX_ROWS).iloc[::-1]
    labels = [f"{r.setup}: {tbl.case_label(r)}" for _, r in rows.iterrows()]
    height = 0.8 / len(networks)
    fig, ax = _figure(_text_in(labels, 8), 1.4 + 0.32 * len(rows) * len(networks))
    y = np.arange(len(rows))
    for i, net in enumerate(networks):
        mean = rows[f"{net}_mean"].to_numpy()
        err = np.vstack([mean - rows[f"{net}_ci_low"].to_numpy(), rows[f"{net}_ci_high"].to_numpy() - mean])
        offset = y + (len(networks) - 1 - i - (len(networks) - 1) / 2) * height
        ax.barh(offset, mean, height=height, color=COLOURS[net], label=net,
                xerr=np.nan_to_num(err), capsize=2, error_kw={"elinewidth": 1})
        for yy, value in zip(offset, mean):
            if not np.isnan(value):
                ax.text(value * 0.98, yy, f"{value:.0f}", va="center", ha="right", fontsize=7, color="white")
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("throughput, Mbit/s (mean, bars: 95% confidence interval)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    _title(ax, "Throughput by network", min(total, MAX_ROWS), total)
    return fig


def throughput_vs_streams(summary: pd.DataFrame):
    rows = summary[summary["metric"] == "throughput_mbps"]
    networks = [n for n in NETWORKS if f"{n}_mean" in rows]
    keys = ["setup", "tool", "protocol", "direction", "server_node", "client_node", "duration_s", "udp_target_mbps"]
    # Only series measured at several stream counts say anything about streams.
    series = [(k, g.sort_values("streams")) for k, g in rows.groupby(keys, dropna=False, sort=True)
              if g["streams"].nunique() > 1]
    if not series:
        return None
    total = len(series)
    series = series[:MAX_ROWS // 3]
    def label(key, net: str) -> str:
        udp = "" if pd.isna(key[7]) else f" @{key[7]:g}M"
        return f"{key[0]}: {key[1]} {key[2]}{udp} {key[3]} {key[5]}->{key[4]}, {net}"

    # The legend sits right of the axes: its width is the text plus the line sample.
    fig, ax = _figure(0.4, 6, legend_in=_text_in([label(k, n) for k, _ in series for n in networks], 7) + 0.6)
    colours = plt.get_cmap("tab10")
    for i, (key, group) in enumerate(series):
        for net, style in zip(networks, ("-", "--", ":", "-.")):
            if group[f"{net}_mean"].isna().all():
                continue
            mean = group[f"{net}_mean"].to_numpy()
            err = np.vstack([mean - group[f"{net}_ci_low"].to_numpy(), group[f"{net}_ci_high"].to_numpy() - mean])
            ax.errorbar(group["streams"], mean, yerr=np.nan_to_num(err), marker="o", capsize=3,
                        linestyle=style, color=colours(i % 10),
                        label=label(key, net))
    ax.set_xticks(sorted({s for _, g in series for s in g["streams"]}))
    ax.set_xlabel("parallel streams (-P)")
    ax.set_ylabel("throughput, Mbit/s (mean, 95% CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Throughput against parallel streams (line style: network)"
                 + (f"\n(first {len(series)} of {total} series; all in summary.csv)" if total > len(series) else ""))
    return fig


def latency_percentiles(summary: pd.DataFrame, runs: pd.DataFrame):
    ok = runs[(runs["status"] == "ok") & runs["latency_p50_us"].notna()]
    if ok.empty:
        return None
    pct = ["latency_p50_us", "latency_p99_us", "latency_p999_us"]
    grouped = ok.groupby(["row", "network"], sort=True)[pct]
    means, sd, n = grouped.mean(), grouped.std(), grouped.count()
    halfs = pd.DataFrame(stats.ci_half_width(sd.to_numpy(), n.to_numpy()), index=sd.index, columns=pct)
    labels = [f"{summary.at[row, 'setup']}: {tbl.case_label(summary.loc[row])}, {net}" for row, net in means.index]
    total = len(labels)
    # Top to bottom in table order; one entry per case and network, three bars each.
    cap = MAX_ROWS * 2 // 3
    means, halfs, labels = means.head(cap).iloc[::-1], halfs.head(cap).iloc[::-1], labels[:cap][::-1]
    fig, ax = _figure(_text_in(labels, 8), max(4.2, 1.6 + 0.75 * len(labels)), legend_in=0.9)
    y = np.arange(len(labels))
    height = 0.8 / len(pct)
    for i, (col, name) in enumerate(zip(pct, ("p50", "p99", "p99.9"))):
        ax.barh(y + (1 - i) * height, means[col], height=height, label=name, alpha=0.85,
                xerr=np.nan_to_num(halfs[col].to_numpy()), capsize=2)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("latency, us (mean over runs, bars: 95% CI; sockperf reports half the round trip)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Request/response latency percentiles"
                 + (f" (first {len(labels)} of {total} case-networks; all in runs.csv)" if total > len(labels) else ""))
    return fig


def cpu_per_gbps(summary: pd.DataFrame, runs: pd.DataFrame):
    ok = runs[(runs["status"] == "ok") & (runs["throughput_mbps"] > 0)
              & (runs["cpu_client_percent"].notna() | runs["cpu_server_percent"].notna())]
    if ok.empty:
        return None
    gbps = ok["throughput_mbps"] / 1000
    ok = ok.assign(client=ok["cpu_client_percent"] / gbps, server=ok["cpu_server_percent"] / gbps)
    means = ok.groupby(["row", "network"], sort=True)[["client", "server"]].mean()
    wide = means.unstack("network")
    total = len(wide)
    wide = wide.head(MAX_ROWS).iloc[::-1]
    networks = [n for n in NETWORKS if ("client", n) in wide.columns]
    labels = [f"{summary.at[row, 'setup']}: {tbl.case_label(summary.loc[row])}" for row in wide.index]
    fig, axes = _figure(_text_in(labels, 8), 1.4 + 0.3 * len(labels) * len(networks), ncols=2, plot_in=3.5)
    y = np.arange(len(labels))
    height = 0.8 / len(networks)
    for ax, side in zip(axes, ("client", "server")):
        for i, net in enumerate(networks):
            offset = y + (len(networks) - 1 - i - (len(networks) - 1) / 2) * height
            ax.barh(offset, wide[(side, net)], height=height, color=COLOURS[net], label=net)
        ax.set_xlabel(f"{side} CPU, % per Gbit/s")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, labels, fontsize=8)
    axes[1].legend(fontsize=8, loc="lower right")
    _title(axes[0], "CPU per Gbit/s", len(labels), total)
    return fig


PART_COLOURS = {"user": "#8172B3", "system": "#64B5CD", "softirq": "#CCB974", "irq": "#937860"}


def cpu_cost_per_gbps(summary: pd.DataFrame):
    """CPU per Gbit/s from the kernels' counters: per case and network, the parts stacked
    (user, system, softirq, irq), the 95 % interval of the total as a whisker."""
    networks = [n for n in NETWORKS if f"{n}_cpu_n" in summary and (summary[f"{n}_cpu_n"] > 0).any()]
    if not networks:
        return None
    rows = summary[np.logical_or.reduce([summary[f"{n}_cpu_n"] > 0 for n in networks])]
    total = len(rows)
    rows = rows.head(MAX_ROWS).iloc[::-1]
    labels = [f"{r.setup}: {tbl.case_label(r)}" for _, r in rows.iterrows()]
    height = 0.8 / len(networks)
    fig, ax = _figure(_text_in(labels, 8) + 0.6, max(4.0, 1.6 + 0.34 * len(rows) * len(networks)), legend_in=1.0)
    y = np.arange(len(rows))
    for i, net in enumerate(networks):
        offset = y + (len(networks) - 1 - i - (len(networks) - 1) / 2) * height
        left = np.zeros(len(rows))
        for part, colour in PART_COLOURS.items():
            width = np.nan_to_num(rows[f"{net}_cpu_{part}_percent_per_gbps_mean"].to_numpy())
            ax.barh(offset, width, left=left, height=height * 0.9, color=colour,
                    edgecolor=COLOURS[net], linewidth=1.2, label=part if i == 0 else None)
            left += width
        mean = rows[f"{net}_cpu_percent_per_gbps_mean"].to_numpy()
        err = np.vstack([mean - rows[f"{net}_cpu_percent_per_gbps_ci_low"].to_numpy(),
                         rows[f"{net}_cpu_percent_per_gbps_ci_high"].to_numpy() - mean])
        ax.errorbar(mean, offset, xerr=np.nan_to_num(err), fmt="none", ecolor="#222", capsize=2, elinewidth=1)
        for yy, value in zip(offset, mean):
            if not np.isnan(value):
                ax.text(0, yy, f" {net} ", va="center", ha="right", fontsize=7, color=COLOURS[net])
    ax.set_yticks(y, labels, fontsize=8)
    ax.tick_params(axis="y", pad=_text_in([f" {n} " for n in networks], 7) * 72 + 2)
    ax.set_xlabel("% of a core per Gbit/s (mean; whiskers: 95% confidence interval of the total)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _title(ax, "CPU per Gbit/s from the kernels' counters (outline: network)", len(labels), total)
    return fig


# File name -> drawing function; the titles are in report.PLOT_TITLES (no matplotlib there).
PLOTS = {
    "throughput_by_network.png": lambda summary, runs: throughput_by_network(summary),
    "throughput_vs_streams.png": lambda summary, runs: throughput_vs_streams(summary),
    "latency_percentiles.png": latency_percentiles,
    "cpu_per_gbps.png": cpu_per_gbps,
    "cpu_cost_per_gbps.png": lambda summary, runs: cpu_cost_per_gbps(summary),
}


def draw(name: str, summary: pd.DataFrame, runs: pd.DataFrame) -> bytes | None:
    """The PNG of plot `name`, or None when the results hold nothing to draw for it."""
    import io
    fig = PLOTS[name](summary, runs)
    if fig is None:
        return None
    buf = io.BytesIO()
    # Fast zlib level: the PNGs grow by a third, drawing gets faster.
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None}, pil_kwargs={"compress_level": 1})
    plt.close(fig)
    return buf.getvalue()
