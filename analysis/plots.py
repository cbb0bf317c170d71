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
from matplotlib.ticker import MaxNLocator  # noqa: E402

from analysis import stats  # noqa: E402
from analysis import table as tbl
from bench.results_format import NETWORKS  # noqa: E402

# Enough rows to read; the CSV holds all of them.
MAX_ROWS = 20
COLOURS = {"host": "#4C72B0", "overlay": "#DD8452", "overlay-encrypted": "#C44E52", "bridge": "#55A868",
           "macvlan": "#8172B3", "ipvlan": "#937860"}


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


def colour(net: str) -> str:
    """A network's colour, the same in every plot; a network added later gets one of its own."""
    if net in COLOURS:
        return COLOURS[net]
    spare = ["#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD"]
    index = NETWORKS.index(net) if net in NETWORKS else len(net)
    return spare[index % len(spare)]


# Panels of the per-case throughput plot: a grid of 4 x 3 reads on one screen.
MAX_PANELS = 12
# Fewer runs than this: no interval is drawn (Student's t at 1 degree of freedom spans
# +-12.7 standard errors), the runs themselves are.
FEW_RUNS = 3
# Up to this many runs per bar, each run is drawn as a dot beside its mean.
DOTS_UP_TO = 30


def _label(row) -> str:
    return f"{row['setup']}: {tbl.case_label(row)}"


def overhead_by_case(summary: pd.DataFrame):
    """Each network against host in %, per case: the mean change, its 95 % interval (Fieller's),
    and for the overlays the VXLAN bound as a marker. Throughput and latency in their own panels:
    a change is readable whatever the absolute figures."""
    networks = tbl.compared_networks(summary)
    if not networks:
        return None
    measured = summary[np.logical_or.reduce([summary[f"{n}_overhead_percent"].notna() for n in networks])]
    panels = [(name, measured[measured["metric"] == metric].head(MAX_ROWS)) for name, metric in
              (("throughput", "throughput_mbps"), ("p50 latency", "latency_p50_us"))]
    panels = [(name, rows) for name, rows in panels if len(rows)]
    if not panels:
        return None
    shown = [n for n in networks if any(rows[f"{n}_overhead_percent"].notna().any() for _, rows in panels)]
    labels = [_label(r) for _, rows in panels for _, r in rows.iterrows()]
    row_in = 0.22 + 0.16 * len(shown)
    plot_heights = [row_in * len(rows) + 0.2 for _, rows in panels]
    gap_in = 1.1  # between panels: the upper one's axis label, the lower one's title
    legend_texts = ["VXLAN bound (overlay)", *[f"{n} (95% interval)" for n in shown]]
    label_in, legend_in = _text_in(labels, 8) + 0.3, _text_in(legend_texts, 8) + 0.8
    width = label_in + 6.5 + legend_in
    height = sum(plot_heights) + gap_in * (len(panels) - 1) + 1.2
    fig, axes = plt.subplots(len(panels), 1, figsize=(width, height), squeeze=False,
                             gridspec_kw={"height_ratios": plot_heights,
                                          "hspace": gap_in / (sum(plot_heights) / len(panels))})
    fig.subplots_adjust(left=label_in / width, right=1 - legend_in / width, top=1 - 0.45 / height,
                        bottom=0.75 / height)
    for ax, (name, rows) in zip(axes[:, 0], panels):
        rows = rows.iloc[::-1]
        y = np.arange(len(rows))
        step = 0.8 / len(shown)
        for i, net in enumerate(shown):
            offset = y + (len(shown) - 1 - i - (len(shown) - 1) / 2) * step
            mean = rows[f"{net}_overhead_percent"].to_numpy()
            # A ratio is never below 0: the change never below -100 %.
            low = np.maximum(rows[f"{net}_overhead_ci_low_percent"].to_numpy(), -100)
            high = rows[f"{net}_overhead_ci_high_percent"].to_numpy()
            err = np.vstack([mean - low, high - mean])
            ax.errorbar(mean, offset, xerr=np.nan_to_num(err), fmt="o", color=colour(net), ecolor=colour(net),
                        capsize=4, markersize=7, elinewidth=2, label=f"{net} (95% interval)")
            # The figure beside each point: readable however far apart the cases are.
            for x, yy, value in zip(np.where(np.isnan(high), mean, high), offset, mean):
                if not np.isnan(value):
                    ax.annotate(f"{value:+.1f}%", (x, yy), xytext=(4, 0), textcoords="offset points",
                                va="center", fontsize=7, color=colour(net))
        if name == "throughput":
            bound = rows["vxlan_bound_percent"].to_numpy()
            if not np.isnan(bound).all():
                ax.plot(bound, y, linestyle="none", marker="|", markersize=16, markeredgewidth=2.5,
                        color="#222", label="VXLAN bound (overlay)")
        ax.axvline(0, color="#888", linewidth=0.8)
        ax.margins(x=0.1)  # room for the figures beside the points
        ax.set_yticks(y, [_label(r) for _, r in rows.iterrows()], fontsize=8)
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.grid(axis="x", alpha=0.3)
        better = "lower is worse" if name == "throughput" else "higher is worse"
        ax.set_xlabel(f"{name} against host, % (mean(network) / mean(host) - 1; {better})", fontsize=9)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        total = int((measured["metric"] == ("throughput_mbps" if name == "throughput" else "latency_p50_us")).sum())
        _title(ax, f"{name.capitalize()}: each network against host", len(rows), total)
    return fig


def throughput_by_case(summary: pd.DataFrame, runs: pd.DataFrame):
    """One small panel per case, each on its own scale: per network the mean throughput, its 95 %
    interval (cut at zero) and, with few runs, the runs themselves as dots."""
    rows = summary[summary["metric"] == "throughput_mbps"]
    networks = [n for n in NETWORKS if f"{n}_mean" in rows and rows[f"{n}_mean"].notna().any()]
    if rows.empty or not networks:
        return None
    total = len(rows)
    rows = rows.head(MAX_PANELS)
    ok = runs[(runs["status"] == "ok") & runs["row"].isin(rows.index) & runs["throughput_mbps"].notna()]
    per_run = ok.groupby(["row", "network"], observed=True)["throughput_mbps"]
    values = {key: group.to_numpy() for key, group in per_run}
    ncols = min(3, len(rows))
    nrows = -(-len(rows) // ncols)
    panel_h = 0.75 + 0.32 * len(networks)
    label_in = _text_in(networks, 8) + 0.3
    panel_w = 4.2
    width = ncols * (panel_w + label_in) + 0.4
    height = nrows * (panel_h + 0.75) + 0.6
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False)
    fig.subplots_adjust(left=label_in / width, right=1 - 0.25 / width, top=1 - 0.75 / height,
                        bottom=0.45 / height, wspace=(label_in + 0.15) / panel_w, hspace=0.75 / panel_h)
    for ax in axes.flat[len(rows):]:
        ax.set_visible(False)
    for ax, (index, row) in zip(axes.flat, rows.iterrows()):
        nets = [n for n in networks if row[f"{n}_n"] > 0][::-1]
        ax.set_title(f"{row['setup']}\n{tbl.case_label(row)}", fontsize=8)
        if not nets:
            ax.text(0.5, 0.5, "no network measured", ha="center", va="center", transform=ax.transAxes, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        y = np.arange(len(nets))
        for yy, net in zip(y, nets):
            mean = row[f"{net}_mean"]
            ax.barh(yy, mean, height=0.6, color=colour(net), alpha=0.85)
            if row[f"{net}_n"] >= FEW_RUNS and not np.isnan(row[f"{net}_ci_low"]):
                ax.errorbar(mean, yy, xerr=[[mean - row[f"{net}_ci_low"]], [row[f"{net}_ci_high"] - mean]],
                            fmt="none", ecolor="#222", capsize=3, elinewidth=1)
            dots = values.get((index, net), np.array([]))
            if 0 < len(dots) <= DOTS_UP_TO:
                ax.plot(dots, np.full(len(dots), yy + 0.4), linestyle="none", marker="o", markersize=2.5,
                        color="#222", alpha=0.6)
            ax.text(mean * 0.02, yy, f"{mean:.0f}", va="center", ha="left", fontsize=7, color="white")
        ax.set_yticks(y, nets, fontsize=8)
        ax.set_ylim(-0.6, len(nets) - 0.4)
        top = max(np.nanmax([row[f"{n}_ci_high"] if row[f"{n}_n"] >= FEW_RUNS else row[f"{n}_mean"]
                             for n in nets]), max((v.max() for k, v in values.items() if k[0] == index), default=0))
        ax.set_xlim(0, top * 1.08 if top > 0 else 1)
        ax.xaxis.set_major_locator(MaxNLocator(4))  # few ticks: each one's text costs drawing time
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    more = f"\nfirst {len(rows)} of {total} cases; all in summary.csv" if total > len(rows) else ""
    fig.suptitle("Throughput per case, Mbit/s, each on its own scale (bars: mean; whiskers: 95% interval; "
                 "dots: runs)" + more, fontsize=9)
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
    """sockperf's p50, p99 and p99.9 per case and network: the mean over the runs, its 95 %
    interval cut at zero (a latency is never negative) when there are enough runs, and the runs
    themselves as dots."""
    ok = runs[(runs["status"] == "ok") & runs["latency_p50_us"].notna()]
    if ok.empty:
        return None
    pct = ["latency_p50_us", "latency_p99_us", "latency_p999_us"]
    grouped = ok.groupby(["row", "network"], sort=True, observed=True)[pct]
    means, sd, n = grouped.mean(), grouped.std(), grouped.count()
    halfs = pd.DataFrame(stats.ci_half_width(sd.to_numpy(), n.to_numpy()), index=sd.index, columns=pct)
    labels = [f"{summary.at[row, 'setup']}: {tbl.case_label(summary.loc[row])}, {net}" for row, net in means.index]
    total = len(labels)
    # Top to bottom in table order; one entry per case and network, three bars each.
    cap = MAX_ROWS * 2 // 3
    means, halfs, n, labels = (means.head(cap).iloc[::-1], halfs.head(cap).iloc[::-1], n.head(cap).iloc[::-1],
                               labels[:cap][::-1])
    runs_of = {key: group for key, group in ok.groupby(["row", "network"], observed=True)[pct]}
    fig, ax = _figure(_text_in(labels, 8), max(4.2, 1.6 + 0.75 * len(labels)), legend_in=1.6)
    y = np.arange(len(labels))
    height = 0.8 / len(pct)
    colours = ("#4C72B0", "#DD8452", "#C44E52")
    for i, (col, name, c) in enumerate(zip(pct, ("p50", "p99", "p99.9"), colours)):
        offset = y + (1 - i) * height
        mean = means[col].to_numpy()
        enough = n[col].to_numpy() >= FEW_RUNS
        low = np.maximum(mean - halfs[col].to_numpy(), 0)
        ax.barh(offset, mean, height=height, label=name, alpha=0.85, color=c)
        if enough.any():
            err = np.vstack([mean - low, halfs[col].to_numpy()])[:, enough]
            ax.errorbar(mean[enough], offset[enough], xerr=err, fmt="none", ecolor="#222", capsize=2, elinewidth=1)
        for yy, key in zip(offset, means.index):
            dots = runs_of[key][col].dropna().to_numpy()
            if len(dots) <= DOTS_UP_TO:
                ax.plot(dots, np.full(len(dots), yy), linestyle="none", marker="o", markersize=2.5,
                        color="#222", alpha=0.6, label="runs" if (i, key) == (0, means.index[0]) else None)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlim(left=0)
    ax.set_xlabel(f"latency, us, half the round trip (bars: mean; whiskers: 95% interval, cut at 0, "
                  f"from {FEW_RUNS} runs; dots: runs)", fontsize=8)
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
    fig, axes = _figure(_text_in(labels, 8), 1.4 + 0.3 * len(labels) * len(networks), ncols=2, plot_in=3.5,
                        legend_in=_text_in(networks, 8) + 0.6)
    y = np.arange(len(labels))
    height = 0.8 / len(networks)
    for ax, side in zip(axes, ("client", "server")):
        for i, net in enumerate(networks):
            offset = y + (len(networks) - 1 - i - (len(networks) - 1) / 2) * height
            ax.barh(offset, wide[(side, net)], height=height, color=colour(net), label=net)
        ax.set_xlabel(f"{side} CPU, % per Gbit/s")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, labels, fontsize=8)
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.03, 1.0))
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
        for part, part_colour in PART_COLOURS.items():
            width = np.nan_to_num(rows[f"{net}_cpu_{part}_percent_per_gbps_mean"].to_numpy())
            ax.barh(offset, width, left=left, height=height * 0.9, color=part_colour,
                    edgecolor=colour(net), linewidth=1.2, label=part if i == 0 else None)
            left += width
        mean = rows[f"{net}_cpu_percent_per_gbps_mean"].to_numpy()
        err = np.vstack([mean - rows[f"{net}_cpu_percent_per_gbps_ci_low"].to_numpy(),
                         rows[f"{net}_cpu_percent_per_gbps_ci_high"].to_numpy() - mean])
        ax.errorbar(mean, offset, xerr=np.nan_to_num(err), fmt="none", ecolor="#222", capsize=2, elinewidth=1)
        for yy, value in zip(offset, mean):
            if not np.isnan(value):
                ax.text(0, yy, f" {net} ", va="center", ha="right", fontsize=7, color=colour(net))
    ax.set_yticks(y, labels, fontsize=8)
    ax.tick_params(axis="y", pad=_text_in([f" {n} " for n in networks], 7) * 72 + 2)
    ax.set_xlabel("% of a core per Gbit/s (mean; whiskers: 95% confidence interval of the total)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _title(ax, "CPU per Gbit/s from the kernels' counters (outline: network)", len(labels), total)
    return fig


# File name -> drawing function; the titles are in report.PLOT_TITLES (no matplotlib there).
PLOTS = {
    "overhead_by_case.png": lambda summary, runs: overhead_by_case(summary),
    "throughput_by_case.png": throughput_by_case,
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
