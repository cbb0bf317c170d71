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

from analysis import AnalysisError, cpu, headline, metrics, precision, stats
from analysis import table as tbl
from analysis.load import LineProblem, Session
from analysis.parallel import Serial

MARKER = ".overlay-bench-analysis"

NOTES = f"""\
How to read the table. One row per stack and case; a case is the tool, protocol, parallel
streams (P), direction, client -> server node pair and duration. The metric is throughput
(Mbit/s, higher is better) or, for sockperf, the median request/response latency of a run
(us p50, lower is better). "host" is host's mean ± the half-width of its {stats.CONFIDENCE:.0%}
confidence interval (Student t, cut at zero) and the number of runs n; the other networks'
own figures (mean, median, sd, n, interval) are in the details below. Failed runs are counted
beside n and never averaged; a network not measured in a case says why in a note under the
table.

"vs host %" is mean(network) / mean(host) - 1, with its {stats.CONFIDENCE:.0%} interval: Fieller's
interval for a ratio of two independent means (Welch degrees of freedom), so the noise of the
host mean counts too; "unbounded" means the host runs are too noisy to bound it. An interval
that excludes 0 is exactly a significant Welch's t-test (p < {stats.ALPHA:.2f}; p is in the details).
With 5 runs per network only differences well above the run-to-run spread come out
significant: an interval that holds 0 means "not shown by these runs", not "no difference".

"VXLAN bound %" is what the overlay would cost if only its 50 header bytes per packet
mattered: the payload per packet (TCP with timestamps: MTU - 52; UDP: MTU - 28) inside the
overlay over the same on the host, from the MTUs recorded for the two nodes. On a link-bound
path the overlay cannot do better; on a CPU-bound path it does worse. Networks without VXLAN
(bridge, say) carry no such cost.

The 2015 figures (iperf 2, -P 10, TCP, mean of 5 runs) are set beside the cases of the same
shape (TCP, 10 streams, forward) in the details: the provider's own figures for DigitalOcean
and VirtualBox stacks, DigitalOcean's (the post's conclusion) for the others.
"""

# Columns holding words; every other column holds figures and is right-aligned.
TEXT_COLUMNS = frozenset({"stack", "case", "unit", "metric", "network", "session", "setup", "CPU of",
                          "nodes", "2015 ref", "2015"})


def aligned_right(frame: pd.DataFrame) -> list[bool]:
    return [str(c) not in TEXT_COLUMNS for c in frame.columns]


def markdown_table(frame: pd.DataFrame) -> str:
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")
    header = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---:" if right else "---" for right in aligned_right(frame)) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def html_table(frame: pd.DataFrame, css_class: str = "") -> str:
    """A table with its figures right-aligned (class num) and its words left-aligned."""
    classes = ["num" if right else "text" for right in aligned_right(frame)]
    head = "".join(f"<th class='{c}'>{html.escape(str(col))}</th>" for c, col in zip(classes, frame.columns))
    body = "".join("<tr>" + "".join(f"<td class='{c}'>{html.escape(str(v))}</td>" for c, v in zip(classes, row))
                   + "</tr>" for row in frame.itertuples(index=False))
    attr = f" class='{css_class}'" if css_class else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def sessions_table(setups: dict[str, list[Session]], runs: pd.DataFrame) -> pd.DataFrame:
    counts = runs.groupby(["session", "status"]).size().unstack("status", fill_value=0)
    rows = []
    for label, members in setups.items():
        for s in members:
            c = counts.loc[s.name] if s.name in counts.index else {}
            rows.append({"session": s.shown_path, "stack": label, "setup": s.identity_text(),
                         "runs ok": int(c.get("ok", 0)), "failed": int(c.get("failed", 0)),
                         "skipped": int(c.get("skipped", 0)), "lines skipped": len(s.problems),
                         # What bench warned of (an overlay MTU below the link's less 50 bytes).
                         "warnings": "; ".join(s.metadata.get("warnings") or [])})
    frame = pd.DataFrame(rows)
    if not frame.empty and not frame["warnings"].any():
        frame = frame.drop(columns="warnings")  # a column only when there is something to say
    return frame


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


# ---- the report as blocks, rendered as Markdown and as HTML -----------------------------
# ("h", level, text)            a heading
# ("p", markdown)               a paragraph (or a Markdown list) of formatted text
# ("table", frame)              a table
# ("glance", lines, after)      the headline lines (analysis/headline.py) and what follows them
# ("notes", lines)              the footnotes of the tables, one per line
# ("details", summary, blocks)  blocks collapsed in HTML, a sub-section in Markdown
# ("plot", file, title, png)    a plot, or a line saying it had nothing to draw

def other_metrics_blocks(summary: pd.DataFrame) -> list:
    networks = tbl.table_networks(summary)
    blocks: list = []
    for title, fields in metrics.GROUPS.items():
        shown = metrics.display(summary, networks, fields)
        if not shown.empty:
            blocks += [("h", 3, title), ("table", shown)]
    if not blocks:
        return [("p", "No run in these results recorded UDP loss or jitter, TCP retransmits or latency "
                      "percentiles.")]
    return blocks + [("p", metrics.NOTES)]


def extra_sections(setups, summary: pd.DataFrame) -> list[tuple[str, list[pd.DataFrame | str]]]:
    """The sections after the comparison: the CPU cost (with each session's idle baseline),
    and the precision reached when a session asked for one. Each is a title and its parts:
    tables and paragraphs."""
    networks = tbl.table_networks(summary)
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


def report_blocks(setups, runs: pd.DataFrame, summary: pd.DataFrame, plots: dict, problems) -> list:
    notes = tbl.Footnotes()
    glance, after = headline.lines(summary, notes)
    comparison = tbl.comparison_table(summary, notes)
    details = tbl.details_table(summary, notes)
    blocks: list = [("h", 1, "Overlay network overhead"), ("h", 2, "At a glance"), ("p", headline.INTRO),
                    ("glance", glance, after),
                    ("h", 2, "Comparison"), ("table", comparison), ("notes", notes.lines()), ("p", NOTES),
                    ("details", "Details: every figure per network, Welch's p, the 2015 figures",
                     [("table", details)]),
                    ("h", 2, "Other metrics"), *other_metrics_blocks(summary)]
    for title, parts in extra_sections(setups, summary):
        blocks.append(("h", 2, title))
        blocks += [("table", p) if isinstance(p, pd.DataFrame) else ("p", p) for p in parts]
    blocks.append(("h", 2, "Plots"))
    blocks += [("plot", name, title, png) for name, (title, png) in plots.items()]
    blocks += [("h", 2, "Sessions"), ("table", sessions_table(setups, runs)),
               ("h", 2, "2015 reference"), ("table", reference_table()),
               ("h", 2, "Skipped lines"), ("p", problems_text(problems))]
    return blocks


def render_markdown(blocks: list) -> str:
    parts: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            parts.append("#" * block[1] + " " + block[2])
        elif kind == "p":
            parts.append(block[1].rstrip("\n"))
        elif kind == "table":
            parts.append(markdown_table(block[1]))
        elif kind == "glance":
            lines = [f"- {line.case}: **{line.claim}**" + (f" ({line.remark})" if line.remark else "")
                     for line in block[1]]
            parts.append("\n".join(lines + ([""] if block[2] else []) + block[2]))
        elif kind == "notes":
            if block[1]:
                parts.append("\n".join(f"{line}  " for line in block[1]).rstrip())
        elif kind == "details":
            parts += [f"### {block[1]}", ""]
            parts.append(render_markdown(block[2]).rstrip("\n"))
        elif kind == "plot":
            _, name, title, png = block
            parts.append(f"![{title}]({name})" if png else f"- {title}: nothing to draw in these results.")
        parts.append("")
    return "\n".join(parts)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em 2em; color: #222; line-height: 1.4; }
h1 { margin: 0 0 0.4em; font-size: 1.6em; }
h2 { margin: 1.4em 0 0.5em; }
p, li { max-width: 72em; }
table.glance { font-size: 0.95em; margin: 0.4em 0 0.6em; width: 100%; }
table.glance td { border: none; padding: 0.12em 0.8em 0.12em 0; }
table.glance .case { color: #555; width: 40%; }
table.glance .claim { font-weight: 600; white-space: nowrap; }
table.glance .remark { min-width: 18em; }
table { border-collapse: collapse; font-size: 0.85em; margin-bottom: 1em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.45em; vertical-align: top; }
th { background: #f3f3f3; white-space: normal; }
.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
.text { text-align: left; }
th.num { white-space: normal; }
.notes { font-size: 0.85em; margin: 0 0 1em; }
.wide { overflow-x: auto; }
details { margin: 0.5em 0 1em; }
summary { cursor: pointer; font-weight: 600; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0 1.5em; }
"""


def _inline(text: str) -> str:
    """Markdown inline formatting (`code`, **bold**) as HTML."""
    return _markdown().renderInline(text)


def _markdown():
    from markdown_it import MarkdownIt
    # html off: text from the results (a path, a reason) is shown, never taken as markup.
    return MarkdownIt("commonmark", {"html": False})


def render_html(blocks: list) -> str:
    parts = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'>",
             "<title>Overlay network overhead</title>", f"<style>{STYLE}</style></head><body>"]
    parts += _html_blocks(blocks)
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _html_blocks(blocks: list) -> list[str]:
    parts = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            parts.append(f"<h{block[1]}>{html.escape(block[2])}</h{block[1]}>")
        elif kind == "p":
            parts.append(_markdown().render(block[1]))
        elif kind == "table":
            parts.append(f"<div class='wide'>{html_table(block[1])}</div>")
        elif kind == "glance":
            # A table without rules: the claims line up, one line per case and network.
            # A case measured on several networks is named on its first line only.
            cases = [line.case for line in block[1]]
            shown = [case if i == 0 or cases[i - 1] != case else "" for i, case in enumerate(cases)]
            rows = [f"<tr class='headline'><td class='case'>{html.escape(case)}</td>"
                    f"<td class='claim'>{html.escape(line.claim)}</td>"
                    f"<td class='remark'>{html.escape(line.remark)}</td></tr>" for case, line in zip(shown, block[1])]
            if rows:
                parts.append("<table class='glance'><tbody>" + "".join(rows) + "</tbody></table>")
            parts += [f"<p>{_inline(text)}</p>" for text in block[2]]
        elif kind == "notes":
            if block[1]:
                parts.append("<p class='notes'>" + "<br>".join(html.escape(line) for line in block[1]) + "</p>")
        elif kind == "details":
            parts.append(f"<details><summary>{html.escape(block[1])}</summary>")
            parts += _html_blocks(block[2])
            parts.append("</details>")
        elif kind == "plot":
            _, name, title, png = block
            if png:
                data = base64.b64encode(png).decode("ascii")
                parts.append(f"<h3>{html.escape(title)}</h3><img alt='{html.escape(title)}' "
                             f"src='data:image/png;base64,{data}'>")
            else:
                parts.append(f"<p>{html.escape(title)}: nothing to draw in these results.</p>")
    return parts


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
    "overhead_by_case.png": "Against host, by case",
    "throughput_by_case.png": "Throughput per case",
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
    plots = {name: (PLOT_TITLES[name], png) for name, png in zip(names, drawing.result())}
    written = ["runs.csv", "summary.csv"]
    blocks = report_blocks(setups, runs, summary, plots, problems)
    with writing(out):
        for name, (_, png) in plots.items():
            if png:
                (out / name).write_bytes(png)
                written.append(name)
            else:
                (out / name).unlink(missing_ok=True)  # a stale plot from an earlier analysis
        (out / "report.md").write_text(render_markdown(blocks))
        (out / "report.html").write_text(render_html(blocks))
    return ["report.md", "report.html", *written]
