"""Write an analysis: report.md, report.html, runs.csv, summary.csv and the PNG plots.

The output directory holds derived files only. It is written again on each analysis (files of
the same name are replaced, plots no longer drawn are removed); a directory that exists, is not
empty and was not written by `python -m analysis` (no marker file) is refused, so `--out` can
never clobber something else.
"""
from __future__ import annotations

import base64
import contextlib
import html
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from analysis import AnalysisError, cpu, precision, stats
from analysis import table as tbl
from analysis.load import LineProblem, Session
from analysis.parallel import Serial

MARKER = ".overlay-bench-analysis"

NOTES = f"""\
How to read the table. One row per stack and case; a case is the tool, protocol, parallel
streams (P), direction, client -> server node pair and duration. The metric is throughput
(Mbit/s, higher is better) or, for sockperf, the median request/response latency of a run
(us p50, lower is better). Per network: mean, median, sample standard deviation (sd), the
number of runs n and the {stats.CONFIDENCE:.0%} confidence interval of the mean (Student t).
Failed runs are counted beside n and never averaged; skipped runs show as "unsupported".

"vs host %" is mean(network) / mean(host) - 1. Its {stats.CONFIDENCE:.0%} interval is Fieller's
interval for a ratio of two independent means (Welch degrees of freedom), so the noise of the
host mean counts too; "unbounded" means the host runs are too noisy to bound it. "Welch p" is
the two-sided p-value of Welch's t-test; significant means p < {stats.ALPHA:.2f}. With 5 runs per
network only differences well above the run-to-run spread come out significant: "no" means
"not shown by these runs", not "no difference".

"VXLAN bound %" is what the overlay would cost if only its 50 header bytes per packet
mattered: TCP payload per packet (MTU - 52 with timestamps) inside the overlay over the same on
the host, from the MTUs recorded for the two nodes. On a link-bound path the overlay cannot
do better; on a CPU-bound path it does worse.

The 2015 figures (iperf 2, -P 10, TCP, mean of 5 runs) are set beside the cases of the same
shape (TCP, 10 streams, forward): the provider's own figures for DigitalOcean and VirtualBox
stacks, DigitalOcean's (the post's conclusion) for the others.
"""


def markdown_table(frame: pd.DataFrame) -> str:
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")
    header = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def sessions_table(setups: dict[str, list[Session]], runs: pd.DataFrame) -> pd.DataFrame:
    counts = runs.groupby(["session", "status"]).size().unstack("status", fill_value=0)
    rows = []
    for label, members in setups.items():
        for s in members:
            c = counts.loc[s.name] if s.name in counts.index else {}
            rows.append({"session": s.shown_path, "stack": label, "setup": s.identity_text(),
                         "runs ok": int(c.get("ok", 0)), "failed": int(c.get("failed", 0)),
                         "skipped": int(c.get("skipped", 0)), "lines skipped": len(s.problems)})
    return pd.DataFrame(rows)


def reference_table() -> pd.DataFrame:
    return pd.DataFrame([{"2015": r["label"], "host Mbit/s": tbl.fmt(r["host_mbps"]),
                          "overlay Mbit/s": tbl.fmt(r["overlay_mbps"]),
                          "overlay vs host %": tbl.fmt((r["overlay_mbps"] / r["host_mbps"] - 1) * 100, sign=True)}
                         for r in tbl.REFERENCE_2015.values()])


def problems_text(problems: list[LineProblem]) -> str:
    if not problems:
        return "No line of runs.jsonl was skipped."
    lines = [f"{len(problems)} line(s) of runs.jsonl skipped (not counted anywhere above):", ""]
    return "\n".join(lines + [f"- `{p}`" for p in problems])


def extra_sections(setups, summary: pd.DataFrame) -> list[tuple[str, list[pd.DataFrame | str]]]:
    """The sections after the comparison: the CPU cost (with each session's idle baseline),
    and the precision reached when a session asked for one. Each is a title and its parts:
    tables and paragraphs."""
    networks = [n for n in tbl.NETWORKS if f"{n}_n" in summary]
    cpu_table = cpu.display(summary, networks)
    if cpu_table.empty:
        cost: list[pd.DataFrame | str] = [
            "No run in these results has CPU figures from the kernels' counters (results format 2 "
            "records them for every iperf2 and iperf3 run)."]
    else:
        cost = [cpu_table, cpu.NOTES, "Idle baseline (before the runs, nothing of the session running):",
                cpu.idle_table(setups)]
    sections = [("CPU cost", cost)]
    reached = precision.display(summary, networks)
    if reached is not None:
        sections.append(("Precision", [reached, precision.NOTES]))
    return sections


def _markdown_parts(parts) -> list[str]:
    return [markdown_table(p) if isinstance(p, pd.DataFrame) else p.rstrip("\n") for p in parts]


def render_markdown(sessions: pd.DataFrame, display: pd.DataFrame, plots: dict, problems,
                    sections: list | None = None) -> str:
    parts = ["# Overlay network overhead", "", "## Sessions", "", markdown_table(sessions), "",
             "## Comparison", "", markdown_table(display), "", NOTES]
    for title, body in sections or []:
        parts += [f"## {title}", ""]
        for part in _markdown_parts(body):
            parts += [part, ""]
    parts += ["## 2015 reference", "", markdown_table(reference_table()), "", "## Plots", ""]
    for name, (title, png) in plots.items():
        parts.append(f"![{title}]({name})" if png else f"- {title}: nothing to draw in these results.")
    parts += ["", "## Skipped lines", "", problems_text(problems), ""]
    return "\n".join(parts)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; }
td:nth-child(-n+2) { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0 1.5em; }
pre { white-space: pre-wrap; }
"""


def render_html(sessions: pd.DataFrame, display: pd.DataFrame, plots: dict, problems,
                sections: list | None = None) -> str:
    parts = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
             "<title>Overlay network overhead</title>", f"<style>{STYLE}</style></head><body>",
             "<h1>Overlay network overhead</h1>", "<h2>Sessions</h2>",
             sessions.to_html(index=False, border=0), "<h2>Comparison</h2>",
             display.to_html(index=False, border=0), f"<pre>{html.escape(NOTES)}</pre>"]
    for title, body in sections or []:
        parts.append(f"<h2>{html.escape(title)}</h2>")
        for part in body:
            parts.append(part.to_html(index=False, border=0) if isinstance(part, pd.DataFrame)
                         else f"<pre>{html.escape(part)}</pre>")
    parts += ["<h2>2015 reference</h2>", reference_table().to_html(index=False, border=0), "<h2>Plots</h2>"]
    for title, png in plots.values():
        if png:
            data = base64.b64encode(png).decode("ascii")
            parts.append(f"<h3>{html.escape(title)}</h3><img alt='{html.escape(title)}' "
                         f"src='data:image/png;base64,{data}'>")
        else:
            parts.append(f"<p>{html.escape(title)}: nothing to draw in these results.</p>")
    parts.append("<h2>Skipped lines</h2>")
    if problems:
        parts.append("<ul>" + "".join(f"<li><code>{html.escape(str(p))}</code></li>" for p in problems) + "</ul>")
    else:
        parts.append("<p>No line of runs.jsonl was skipped.</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def check_out(out: Path) -> None:
    """Refuse an output directory that holds something else than an earlier analysis."""
    if out.exists() and not out.is_dir():
        raise AnalysisError(f"--out {out} is a file: give a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise AnalysisError(f"--out {out} is not empty and was not written by `python -m analysis`: "
                            "choose a new or empty directory")


@contextlib.contextmanager
def writing(out: Path) -> Iterator[None]:
    """A file of the output that cannot be written (a file in the way, a read-only or full
    disk) is one line naming it."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            raise  # not a file of ours: a bug, with its traceback
        raise AnalysisError(f"cannot write {exc.filename}: {exc.strerror or exc}; give --out a "
                            "directory that can be written") from None


def prepare_out(out: Path) -> None:
    """The output directory, made and marked as the analysis's; checked before any work."""
    check_out(out)
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
        (out / MARKER).write_text("Derived files written by `python -m analysis`; rewritten on each run.\n")


# What the plots read of the runs: numbers and categories, a few MB to send to a worker.
PLOT_COLUMNS = ["row", "network", "status", "throughput_mbps", "cpu_client_percent",
                "cpu_server_percent", "latency_p50_us", "latency_p99_us", "latency_p999_us"]


PLOT_TITLES = {
    "throughput_by_network.png": "Throughput by network",
    "throughput_vs_streams.png": "Throughput against parallel streams",
    "latency_percentiles.png": "Latency percentiles",
    "cpu_per_gbps.png": "CPU per Gbit/s of iperf3's own processes",
    "cpu_cost_per_gbps.png": "CPU per Gbit/s from the kernels' counters",
}


def write(out: Path, setups, runs: pd.DataFrame, summary: pd.DataFrame,
          problems: list[LineProblem], pool=None) -> list[str]:
    """Write every output file into `out`; returns the names written.

    With `pool` (analysis.parallel.workers) the plots are drawn in its plotting process while
    this process writes the CSV files.
    """
    prepare_out(out)
    pool = pool or Serial()
    slim = runs[PLOT_COLUMNS].astype({"network": "category", "status": "category"})
    names = list(PLOT_TITLES)
    drawing = pool.draw(names, summary, slim)  # while this process writes the CSV files
    with writing(out):
        runs.drop(columns=["row"]).to_csv(out / "runs.csv", index=False)
        summary.to_csv(out / "summary.csv", index=False, float_format="%.6g")
    sessions = sessions_table(setups, runs)
    display = tbl.display_table(summary)
    sections = extra_sections(setups, summary)
    plots = {name: (PLOT_TITLES[name], png) for name, png in zip(names, drawing.result())}
    written = ["runs.csv", "summary.csv"]
    with writing(out):
        for name, (_, png) in plots.items():
            if png:
                (out / name).write_bytes(png)
                written.append(name)
            else:
                (out / name).unlink(missing_ok=True)  # a stale plot from an earlier analysis
        (out / "report.md").write_text(render_markdown(sessions, display, plots, problems, sections))
        (out / "report.html").write_text(render_html(sessions, display, plots, problems, sections))
    return ["report.md", "report.html", *written]
