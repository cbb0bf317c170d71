"""`python -m analysis` on checked-in result sessions: golden outputs, plots, robust input.

Golden files live in tests/golden/analysis/; after an intended change of output, rewrite them
with `UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_analysis_cli.py` and review the diff.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path("tests/fixtures/results")  # relative: messages name files as the user typed them
GOLDEN = REPO / "tests/golden/analysis"
DO2015 = FIXTURES / "20151205-120000-do2015"
VB2015 = FIXTURES / "20151205-130000-vb2015"
LAB = FIXTURES / "20261126-130501-lab"
LAB316 = FIXTURES / "20261126-150000-lab"
FLAKY = FIXTURES / "20261126-170000-flaky"
# Results format 2, captured on a 1 Gbit/s swarm lab with --precision 1 --max-runs 4 while
# other jobs kept the machine's CPUs busy (its idle baseline shows them).
CPU = FIXTURES / "20261129-200303-cpf227pu"
ALL = [DO2015, VB2015, LAB, LAB316, FLAKY, CPU]
PLOTS = ("overhead_by_case.png", "throughput_by_case.png", "throughput_vs_streams.png", "latency_percentiles.png",
         "cpu_per_gbps.png", "cpu_cost_per_gbps.png")


def analysis(*args, cwd=REPO, check=True):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-m", "analysis", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1 once and review it"
    assert text == path.read_text(), f"{name} differs from its golden file (UPDATE_GOLDEN=1 to rewrite)"


def without_out_dir(text: str, out: Path) -> str:
    return text.replace(str(out), "OUT")


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """All fixture sessions analysed once."""
    out = tmp_path_factory.mktemp("full") / "out"
    done = analysis(*ALL, "--out", out)
    return out, done


def test_golden_outputs_of_all_fixtures(full):
    out, done = full
    golden("all.stdout.txt", done.stdout)
    golden("all.stderr.txt", without_out_dir(done.stderr, out))
    for name in ("report.md", "summary.csv", "runs.csv"):
        golden(f"all.{name}", (out / name).read_text())


def test_2015_digitalocean_figures_give_minus_5_4_percent(tmp_path):
    done = analysis(DO2015, "--out", tmp_path / "out")
    golden("do2015.stdout.txt", done.stdout)
    rows = list(csv.DictReader(open(tmp_path / "out/summary.csv")))
    assert len(rows) == 1
    row = rows[0]
    assert float(row["host_mean"]) == pytest.approx(932.0)
    assert float(row["overlay_mean"]) == pytest.approx(882.0)
    assert round(float(row["overlay_overhead_percent"]), 1) == -5.4
    assert float(row["ref2015_overhead_percent"]) == pytest.approx((882 / 932 - 1) * 100, rel=1e-5)
    assert row["overlay_significant"] == "True"
    assert float(row["vxlan_bound_percent"]) == pytest.approx(-3.4530, abs=1e-4)
    assert "| -5.4% [-5.7, -5.1] p<0.001 |" in done.stdout
    assert "DigitalOcean: 932 -> 882 (-5.4%)" in done.stdout


def test_runs_csv_is_one_row_per_run(full):
    out, _ = full
    rows = list(csv.DictReader(open(out / "runs.csv")))
    lines = sum(1 for p in ALL for line in open(REPO / p / "runs.jsonl") if line.strip())
    assert len(rows) == lines - 7  # the 7 damaged lines of the flaky session
    assert {r["status"] for r in rows} == {"ok", "failed", "skipped"}
    assert all(r["setup"] and r["session"] and r["line"] for r in rows)


def _reverse_iperf2_rows(summary_csv: Path, setup: str) -> list[dict]:
    rows = list(csv.DictReader(open(summary_csv)))
    return [r for r in rows if r["setup"] == setup and r["tool"] == "iperf2"
            and r["direction"] == "reverse"]


def test_skipped_and_failed_runs_are_shown_not_averaged(full, tmp_path):
    out, done = full
    # The reason is told once, in a note under the table; the cells point at it.
    reason = "overlay-encrypted unsupported on this host: kernel lacks ESP (INET_ESP)"
    assert done.stdout.count(reason) == 1 and f"[1] {reason}" in done.stdout.splitlines()
    assert done.stdout.count("| unsupported [1] |") == 2
    # In the fixture, overlay run #3 failed and was run again (resumed) with success: that
    # is not a failed run, and its failed line stays in runs.csv.
    (reverse,) = _reverse_iperf2_rows(out / "summary.csv", "lab (iperf3 3.12)")
    assert (reverse["overlay_n"], reverse["overlay_failed"]) == ("5", "0")
    runs = list(csv.DictReader(open(out / "runs.csv")))
    assert [r["status"] for r in runs if r["run_id"] == "iperf2-tcp-P10-reverse-overlay-node1-node2#3"
            and r["setup"] == "lab (iperf3 3.12)"] == ["failed", "ok"]
    # Without the second attempt, run #3 stays failed: counted, never averaged.
    lab = tmp_path / LAB.name
    shutil.copytree(REPO / LAB, lab)
    lines = (lab / "runs.jsonl").read_text().splitlines(keepends=True)
    retry = [i for i, l in enumerate(lines) if '"iperf2-tcp-P10-reverse-overlay-node1-node2#3"' in l
             and '"status": "ok"' in l]
    del lines[retry[0]]
    (lab / "runs.jsonl").write_text("".join(lines))
    done = analysis(lab, "--out", tmp_path / "out")
    (reverse,) = _reverse_iperf2_rows(tmp_path / "out" / "summary.csv", "lab")
    assert (reverse["overlay_n"], reverse["overlay_failed"]) == ("4", "1")
    assert "n=4, +1 failed" in done.stdout
    rows = list(csv.DictReader(open(out / "summary.csv")))
    encrypted = [r for r in rows if r["overlay-encrypted_skipped"] not in ("", "0")]
    assert encrypted and all(r["overlay-encrypted_mean"] == "" and r["overlay-encrypted_n"] == "0" for r in encrypted)


def test_plots_are_drawn_and_not_empty(full):
    out, _ = full
    for name in PLOTS:
        image = matplotlib.image.imread(out / name)
        height, width = image.shape[:2]
        assert width >= 600 and height >= 400, name
        # Axes, ticks and text are grey; data are drawn in colour. Not a blank chart: at least
        # 0.5 % of the pixels are coloured (0.2 % for the overhead plot: points, not bars).
        pixels = image[..., :3].reshape(-1, 3)
        coloured = (pixels.max(axis=1) - pixels.min(axis=1)) > 0.25
        assert coloured.mean() > (0.002 if name == "overhead_by_case.png" else 0.005), name


def test_html_is_self_contained(full):
    out, _ = full
    page = (out / "report.html").read_text()
    sources = re.findall(r"""(?:src|href)=['"]([^'"]+)""", page)
    assert len(sources) == len(PLOTS) and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<table" in page and "overlay-encrypted unsupported on this host" in page and "-5.4" in page


def test_cpu_cost_and_precision_of_a_format_2_session(full):
    out, _ = full
    rows = [r for r in csv.DictReader(open(out / "summary.csv")) if r["setup"] == "cpf227pu"]
    runs = [json.loads(line) for line in open(REPO / CPU / "runs.jsonl")]
    for row in rows:
        mine = [r for r in runs if r["tool"] == row["tool"] and r["status"] == "ok"]
        if row["tool"] == "sockperf":
            assert row["host_cpu_n"] == "0" and row["overlay_cpu_percent_per_gbps_mean"] == ""
            continue
        assert row["cpu_scope"] == "machine"
        for net in ("host", "overlay"):
            values = [r["cpu_cores_per_gbps"] * 100 for r in mine if r["network"] == net]
            assert row[f"{net}_cpu_n"] == str(len(values)) == "4"
            assert float(row[f"{net}_cpu_percent_per_gbps_mean"]) == pytest.approx(sum(values) / 4, rel=1e-5)
            parts = sum(float(row[f"{net}_cpu_{p}_percent_per_gbps_mean"]) for p in ("user", "system", "softirq", "irq"))
            assert parts == pytest.approx(float(row[f"{net}_cpu_percent_per_gbps_mean"]), rel=1e-3)
        low, high = float(row["overlay_cpu_extra_ci_low_percent"]), float(row["overlay_cpu_extra_ci_high_percent"])
        assert low < float(row["overlay_cpu_extra_percent"]) < high
        # The session asked for +-1 point: the half-width reached, and whether it was met.
        half = float(row["overlay_overhead_half_width_points"])
        assert row["precision_target_points"] == "1"
        assert row["overlay_precision_met"] == str(half <= 1)
    report = (out / "report.md").read_text()
    assert "## CPU cost" in report and "## Precision" in report
    assert "| cpf227pu | 20261129-200303-cpf227pu | cpf227pu-node1, cpf227pu-node2 | 2 |" in report  # idle baseline


def test_plot_without_data_is_left_out_and_said(tmp_path):
    out = tmp_path / "out"
    analysis(DO2015, "--out", out)
    assert not (out / "latency_percentiles.png").exists()
    assert "- Latency percentiles: nothing to draw in these results." in (out / "report.md").read_text()


def test_damaged_lines_are_reported_with_file_and_line_and_counted(tmp_path):
    done = analysis(FLAKY, "--out", tmp_path / "out")
    expected = [
        f"{FLAKY}/runs.jsonl:2: skipped: not JSON (Expecting value)",
        f"{FLAKY}/runs.jsonl:4: skipped: network is not one of host, overlay, overlay-encrypted, bridge, macvlan, ipvlan",
        f"{FLAKY}/runs.jsonl:6: skipped: throughput_mbps is not a number",
        f"{FLAKY}/runs.jsonl:7: skipped: not a JSON object",
        f"{FLAKY}/runs.jsonl:8: skipped: missing network",
        f"{FLAKY}/runs.jsonl:10: skipped: format_version 3, expected 1 or 2",
        f"{FLAKY}/runs.jsonl:13: skipped: not JSON (Unterminated string starting at)",
        "7 damaged line(s) skipped (listed above and in report.md)",
    ]
    assert done.stderr.splitlines()[:8] == expected
    report = (tmp_path / "out/report.md").read_text()
    assert "7 line(s) of runs.jsonl skipped" in report
    # The good lines still count: 3 runs each.
    assert "956.0 ± 0.9 (n=3)" in done.stdout and "923.2 ± 0.7 (n=3)" in done.stdout


def test_differing_metadata_are_not_merged_unless_asked(tmp_path):
    apart = analysis(LAB, LAB316, "--out", tmp_path / "apart")
    rows = list(csv.DictReader(open(tmp_path / "apart/summary.csv")))
    p10 = [r for r in rows if r["tool"] == "iperf3" and r["protocol"] == "tcp" and r["streams"] == "10"]
    assert sorted(r["setup"] for r in p10) == ["lab (iperf3 3.12)", "lab (iperf3 3.16)"]
    assert all(r["host_n"] == "5" for r in p10)
    merged = analysis(LAB, LAB316, "--merge", "--out", tmp_path / "merged")
    rows = list(csv.DictReader(open(tmp_path / "merged/summary.csv")))
    p10 = [r for r in rows if r["tool"] == "iperf3" and r["protocol"] == "tcp" and r["streams"] == "10"]
    assert [(r["setup"], r["host_n"]) for r in p10] == [("lab", "10")]
    assert "lab (iperf3" in apart.stdout and "lab (iperf3" not in merged.stdout


def test_other_stacks_are_other_rows(full):
    _, done = full
    setups = {line.split("|")[1].strip() for line in done.stdout.splitlines()[2:] if line.startswith("|")}
    assert setups == {"do2015", "vb2015", "flaky", "lab (iperf3 3.12)", "lab (iperf3 3.16)", "cpf227pu"}


def test_compare_golden(tmp_path):
    cross = analysis("compare", DO2015, LAB)
    golden("compare.do2015-lab.txt", cross.stdout)
    assert "iperf2 tcp P10 forward 10s, overlay: 882.0 +- 2.1 Mbit/s -> 924.9 +- 0.9 Mbit/s: 1.05x faster" in cross.stdout
    same = analysis("compare", LAB, LAB316)
    golden("compare.lab-lab316.txt", same.stdout)
    assert "8 cases hidden as not significant (--all shows them)" in same.stdout
    shown = analysis("compare", LAB, LAB316, "--all")
    assert "hidden" not in shown.stdout and shown.stdout.count("not significant (B/A") == 8


def test_compare_reports_latency_in_its_sense(tmp_path):
    # B = A with every latency 10 % higher: slower, though the number grew.
    b = tmp_path / "20261126-180000-lab"
    shutil.copytree(REPO / LAB, b)
    runs = [json.loads(line) for line in open(b / "runs.jsonl")]
    for run in runs:
        for key in ("latency_p50_us", "throughput_mbps"):
            if run[key] is not None:
                run[key] = round(run[key] * 1.10, 3)
    (b / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in runs))
    done = analysis("compare", LAB, b)
    lines = [line for line in done.stdout.splitlines() if line.startswith("sockperf")]
    assert len(lines) == 2 and all("1.10x slower" in line for line in lines)
    lines = [line for line in done.stdout.splitlines() if line.startswith("iperf3 tcp P10")]
    assert len(lines) == 2 and all("1.10x faster" in line for line in lines)


def test_default_is_latest_session_in_results(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    for session in (DO2015, LAB):
        shutil.copytree(REPO / session, results / session.name)
    done = analysis(cwd=tmp_path)
    assert "lab-node2->lab-node1" in done.stdout and "do2015" not in done.stdout
    assert (results / LAB.name / "analysis/report.md").exists()
    # Derived files are rewritten in place on the next analysis.
    again = analysis(cwd=tmp_path)
    assert again.stdout == done.stdout


@pytest.mark.parametrize("setup, args, message", [
    ("nothing", [], "analysis: no results: results/ does not exist; run `python -m bench` first or pass a results directory"),
    ("nothing", ["missing"], "analysis: no results: missing does not exist"),
    ("empty-dir", ["results"], "analysis: no results: results holds no session (no metadata.json in it or in its subdirectories); run `python -m bench` first"),
    ("no-runs", ["results"], "analysis: no results: no readable run in results/20261126-130501-lab; run `python -m bench` (or pass a session that has runs)"),
    ("all-damaged", ["results"], "analysis: no results: no readable run in results/20261126-130501-lab; run `python -m bench` (or pass a session that has runs)"),
    ("future-format", ["results"], "analysis: results/20261126-130501-lab/metadata.json has format_version 3; this analysis reads version 1 or 2: use the overlay-bench that wrote it"),
    ("bad-metadata", ["results"], "analysis: results/20261126-130501-lab/metadata.json: not JSON (Expecting value: line 1 column 1 (char 0)) (see docs/results-format.md): the session is damaged; leave it out or repair the file"),
])
def test_bad_input_is_one_clear_line(tmp_path, setup, args, message):
    session = tmp_path / "results" / LAB.name
    if setup != "nothing":
        (tmp_path / "results").mkdir()
    if setup not in ("nothing", "empty-dir"):
        shutil.copytree(REPO / LAB, session)
    if setup == "no-runs":
        (session / "runs.jsonl").unlink()
    elif setup == "all-damaged":
        (session / "runs.jsonl").write_text('{"format_version": 1, "run_id": "x"\n')
    elif setup == "future-format":
        meta = json.loads((session / "metadata.json").read_text())
        (session / "metadata.json").write_text(json.dumps(dict(meta, format_version=3)))
    elif setup == "bad-metadata":
        (session / "metadata.json").write_text("")
    done = analysis(*args, cwd=tmp_path, check=False)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines[-1] == message
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_out_refuses_a_directory_it_did_not_write(tmp_path):
    other = tmp_path / "precious"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    done = analysis(DO2015, "--out", other, check=False)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"analysis: --out {other} is not empty and was not written by "
                                   "`python -m analysis`: choose a new or empty directory")
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]


def test_stale_plot_is_removed_when_no_longer_drawn(tmp_path):
    out = tmp_path / "out"
    analysis(LAB, "--out", out)
    assert (out / "latency_percentiles.png").exists()
    analysis(DO2015, "--out", out)
    assert not (out / "latency_percentiles.png").exists()
    assert "do2015" in (out / "report.md").read_text()
