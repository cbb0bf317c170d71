"""The report answers at a glance: the headline lines, every metric a case records, a reason
told once, intervals of positive quantities never below zero, legends never over the data.

On the checked-in fixtures and on synthetic matrix sessions (tests/sessions.py) covering every
network of the results format.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from bench.results_format import NETWORKS
from tests.sessions import write_matrix_session

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests/fixtures/results"
DO2015 = FIXTURES / "20151205-120000-do2015"
ALL = sorted(p for p in FIXTURES.iterdir() if p.is_dir())
LONG_REASON = ("overlay-encrypted unsupported on this host: the kernel has no ESP (CONFIG_INET_ESP is not set "
               "and modules cannot be loaded), so an encrypted overlay network is created but carries nothing; "
               "run it on a kernel with ESP to measure it")


def analysis(*args):
    done = subprocess.run([sys.executable, "-m", "analysis", *map(str, args)], cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    """Every network measured: the session, its analysis directory and its summary rows."""
    root = tmp_path_factory.mktemp("matrix")
    session = write_matrix_session(root)
    analysis(session, "--out", root / "out")
    return session, root / "out", list(csv.DictReader(open(root / "out/summary.csv")))


def runs_of(session: Path) -> list[dict]:
    return [json.loads(line) for line in open(session / "runs.jsonl")]


def test_headline_first_with_the_2015_answer(tmp_path):
    analysis(DO2015, "--out", tmp_path)
    report = (tmp_path / "report.md").read_text()
    lines = report.splitlines()
    assert lines[:3] == ["# Overlay network overhead", "", "## At a glance"]
    line = ("- do2015 · iperf2 tcp P10 forward mhs-demo1-do->mhs-demo0-do 10s · throughput: "
            "**overlay costs 5.4% [5.1, 5.7] against host** (VXLAN bound 3.45%)")
    assert line in lines and lines.index(line) < lines.index("## Comparison")
    page = (tmp_path / "report.html").read_text()
    assert "<td class='claim'>overlay costs 5.4% [5.1, 5.7] against host</td>" in page
    assert page.index("class='headline'") < page.index("<h2>Comparison</h2>")


def test_headline_has_a_line_for_every_network(matrix):
    _, out, _ = matrix
    report = (out / "report.md").read_text()
    glance = report[:report.index("## Comparison")]
    case = "matrix · iperf3 tcp P10 forward matrix-node-number-2->matrix-node-number-1 10s · throughput: "
    for net in NETWORKS[1:]:
        (line,) = [line for line in glance.splitlines() if line.startswith(f"- {case}**{net} costs ")]
        assert line.endswith("against host** (VXLAN bound 3.45%)") == net.startswith("overlay"), line
    # The UDP line says the loss beside a throughput that only meets its target.
    assert "· throughput: **overlay costs 0.0% [" in glance and "UDP loss " in glance
    assert "· p50 latency: **overlay costs " in glance


def test_headline_signs_follow_the_table(matrix):
    """The cost is the change against host turned so that worse is positive: throughput lost,
    latency added; its interval is the table's."""
    _, out, rows = matrix
    report = (out / "report.md").read_text()
    for row in rows:
        for net, sign in (("overlay", -1 if row["metric"] == "throughput_mbps" else 1),):
            cost = sign * float(row[f"{net}_overhead_percent"])
            bounds = sorted(sign * float(row[f"{net}_overhead_ci_{s}_percent"]) for s in ("low", "high"))
            shown = [f"{round(v, 1) + 0.0:.1f}" for v in (cost, *bounds)]  # no "-0.0"
            text = f"**{net} costs {shown[0]}% [{shown[1]}, {shown[2]}] against host**"
            assert text in report


def test_every_recorded_metric_in_summary_and_report(matrix):
    session, out, rows = matrix
    runs = runs_of(session)
    checked = 0
    for row in rows:
        mine = [r for r in runs if r["tool"] == row["tool"] and r["protocol"] == row["protocol"]
                and r["streams"] == int(row["streams"]) and r["status"] == "ok"]
        for field in ("udp_loss_percent", "udp_jitter_ms", "retransmits", "latency_p50_us", "latency_p99_us",
                      "latency_p999_us"):
            per_net = {net: [r[field] for r in mine if r["network"] == net and r[field] is not None]
                       for net in NETWORKS}
            for net, values in per_net.items():
                assert row[f"{net}_{field}_n"] == str(len(values))
                if not values:
                    assert row[f"{net}_{field}_mean"] == ""
                    continue
                assert float(row[f"{net}_{field}_mean"]) == pytest.approx(np.mean(values), rel=1e-5)
                checked += 1
                if net == "host":
                    continue
                host = per_net["host"]
                if field in ("udp_loss_percent", "retransmits"):
                    # A difference in the metric's own unit, with Welch's interval.
                    diff = float(row[f"{net}_{field}_minus_host"])
                    assert diff == pytest.approx(np.mean(values) - np.mean(host), rel=1e-4, abs=1e-9)
                    expected = sps.ttest_ind(values, host, equal_var=False).confidence_interval(0.95)
                    low, high = float(row[f"{net}_{field}_minus_host_ci_low"]), float(row[f"{net}_{field}_minus_host_ci_high"])
                    assert (low, high) == (pytest.approx(expected.low, rel=1e-4, abs=1e-9),
                                           pytest.approx(expected.high, rel=1e-4, abs=1e-9))
                else:
                    change = float(row[f"{net}_{field}_vs_host_percent"])
                    assert change == pytest.approx((np.mean(values) / np.mean(host) - 1) * 100, rel=1e-4)
    assert checked >= 5 * len(NETWORKS)
    report = (out / "report.md").read_text()
    for title in ("### UDP loss and jitter", "### TCP retransmits", "### Latency percentiles"):
        assert title in report
    section = report[report.index("### UDP loss and jitter"):report.index("### TCP retransmits")]
    assert "| UDP loss, % | UDP loss vs host, points | UDP jitter, ms | UDP jitter vs host % |" in section
    assert all(f"| {net} |" in section for net in NETWORKS)


def test_positive_intervals_never_below_zero(matrix):
    _, _, rows = matrix
    (sockperf,) = [r for r in rows if r["tool"] == "sockperf"]
    # Two runs of p99.9, 150 and 1900 us: mean - t * se is -10 000 us; the interval starts at 0.
    assert float(sockperf["host_latency_p999_us_ci_low"]) == 0.0
    assert float(sockperf["host_latency_p999_us_ci_high"]) > 10000
    for row in rows:
        for key, value in row.items():
            if (key.endswith("_ci_low") and "_host" not in key and value != ""):
                assert float(value) >= 0, key


def in_process_summary(sessions):
    from analysis import load, precision
    from analysis import table as tbl

    loaded = load.load([str(s) for s in sessions])
    setups = load.assign_setups(loaded, merge=False)
    runs = load.runs_table(setups)
    providers = {label: members[0].metadata["stack_outputs"]["provider"] for label, members in setups.items()}
    summary = tbl.summarize(runs, providers, load.node_mtus(setups), precision.targets(setups))
    return summary, runs


def test_latency_whiskers_never_below_zero_and_few_runs_drawn_as_runs(matrix):
    from matplotlib.collections import LineCollection

    from analysis import plots

    session, _, _ = matrix
    summary, runs = in_process_summary([session, FIXTURES / "20261129-200303-cpf227pu"])
    fig = plots.latency_percentiles(summary, runs)
    ax = fig.axes[0]
    segments = [seg for c in ax.collections if isinstance(c, LineCollection) for seg in c.get_segments()]
    assert segments, "no whisker at all: the 4-run session has whiskers"
    assert min(point[0] for seg in segments for point in seg) >= 0
    # The matrix's sockperf has 2 runs per network: its entries have dots, no whiskers.
    labels = [t.get_text() for t in ax.get_yticklabels()]
    two_runs = [i for i, label in enumerate(labels) if label.startswith("matrix:")]
    assert len(two_runs) >= 2
    for seg in segments:
        assert not any(abs(seg[0][1] - i) < 0.45 for i in two_runs), "a whisker drawn from 2 runs"
    dots = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert sum(len(line.get_xdata()) for line in dots) == len(runs[(runs["tool"] == "sockperf")
                                                                   & (runs["status"] == "ok")]) * 3


@pytest.mark.parametrize("which", ["fixtures", "matrix"])
def test_legends_never_over_the_data(matrix, which):
    from analysis import plots

    sessions = ALL if which == "fixtures" else [matrix[0]]
    summary, runs = in_process_summary(sessions)
    drawn = 0
    for name, draw in plots.PLOTS.items():
        fig = draw(summary, runs)
        if fig is None:
            continue
        drawn += 1
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            legend = ax.get_legend()
            if legend is None:
                continue
            box, area = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
            overlap = (min(box.x1, area.x1) - max(box.x0, area.x0), min(box.y1, area.y1) - max(box.y0, area.y0))
            assert overlap[0] <= 0 or overlap[1] <= 0, f"{name}: the legend lies over the axes"
        plots.plt.close(fig)
    assert drawn >= (6 if which == "fixtures" else 4)


def test_a_reason_is_told_once(tmp_path):
    """A full matrix with the encrypted overlay unsupported in every case: the long reason is
    printed once under the terminal table and written once in the report, the cells point at it."""
    session = write_matrix_session(tmp_path, skipped={"overlay-encrypted": LONG_REASON})
    done = analysis(session, "--out", tmp_path / "out")
    assert done.stdout.count(LONG_REASON) == 1
    assert f"[1] {LONG_REASON}" in done.stdout.splitlines()
    table_rows = [line for line in done.stdout.splitlines() if line.startswith("| matrix ")]
    assert len(table_rows) == 5 and all("| unsupported [1] |" in line for line in table_rows)
    report = (tmp_path / "out/report.md").read_text()
    assert report.count(LONG_REASON) == 1
    assert "Not compared: overlay-encrypted unsupported [1], in 5 cases." in report
    assert (tmp_path / "out/report.html").read_text().count(LONG_REASON) == 1
    assert max(len(line) for line in table_rows) < 400  # no 250-character reason per row


def test_without_host_each_network_is_shown(tmp_path):
    session = write_matrix_session(tmp_path, skipped={"host": "host skipped for this test"})
    done = analysis(session, "--out", tmp_path / "out")
    report = (tmp_path / "out/report.md").read_text()
    glance = report[:report.index("## Comparison")]
    assert "costs" not in glance and "No network was compared with host in these results" in glance
    comparison = report[report.index("## Comparison"):report.index("### Details")]
    assert "| overlay |" in comparison.splitlines()[2] and "923." in comparison
    assert "host skipped for this test" in done.stdout


def test_text_from_the_results_is_never_markup():
    """A reason or a path in a paragraph is shown as text in report.html, never run as HTML."""
    from analysis import report

    page = report.render_html([("p", "skipped: <img src=x onerror=alert(1)> in `a<b>`")])
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
