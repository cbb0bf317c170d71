"""python -m analysis on damaged input: figures that are no measurement, metadata of the wrong
types, an output directory that cannot be written. Each is one line (or, for a run line, one
FILE:LINE line, counted and left out), never a traceback or a wrong figure."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.conftest import require_root
from tests.test_analysis_cli import LAB, REPO, analysis


def copy(tmp_path, session=LAB):
    """A copy of a checked-in session whose lines are all good."""
    target = tmp_path / "results" / session.name
    shutil.copytree(REPO / session, target)
    return target


def ok_iperf2_lines(session):
    """The lines of runs.jsonl, and the indexes of its ok iperf2 runs (the table's first case)."""
    lines = (session / "runs.jsonl").read_text().splitlines()
    return lines, [i for i, ln in enumerate(lines) if '"tool": "iperf2"' in ln and '"status": "ok"' in ln]


@pytest.mark.parametrize("value, reason", [
    ("Infinity", "throughput_mbps is not a finite number"),
    ("-Infinity", "throughput_mbps is not a finite number"),
    ("NaN", "throughput_mbps is not a finite number"),
    ("1e999", "throughput_mbps is not a finite number"),
    ("-100.0", "throughput_mbps is negative"),
])
def test_a_figure_that_is_no_measurement_is_a_damaged_line(tmp_path, value, reason):
    """The issue's case: `"throughput_mbps": Infinity` showed inf and -100.0% in the table."""
    session = copy(tmp_path)
    clean = analysis(session, "--out", tmp_path / "clean")
    lines, ok = ok_iperf2_lines(session)
    victim = ok[0]
    record = json.loads(lines[victim])
    lines[victim] = lines[victim].replace(json.dumps(record["throughput_mbps"]), value, 1)
    assert lines[victim] != json.dumps(record)
    (session / "runs.jsonl").write_text("\n".join(lines) + "\n")
    done = analysis(session, "--out", tmp_path / "out")
    assert done.stderr.splitlines()[0] == f"{session}/runs.jsonl:{victim + 1}: skipped: {reason}"
    assert "1 damaged line(s) skipped (listed above and in report.md)" in done.stderr
    assert "inf" not in done.stdout.lower() and "nan" not in done.stdout.lower()
    assert "-100.0%" not in done.stdout
    # The run is left out: its case has one run fewer, the other cases are as before.
    assert done.stdout != clean.stdout
    rows = (tmp_path / "out/runs.csv").read_text().splitlines()
    assert len(rows) == len((tmp_path / "clean/runs.csv").read_text().splitlines()) - 1
    assert "1 line(s) of runs.jsonl skipped" in (tmp_path / "out/report.md").read_text()


def test_a_line_that_is_not_utf8_is_a_damaged_line(tmp_path):
    session = copy(tmp_path)
    data = (session / "runs.jsonl").read_bytes().split(b"\n")
    data[3] = data[3].replace(b'"status": "ok"', b'"status": "\xffok"')
    (session / "runs.jsonl").write_bytes(b"\n".join(data))
    done = analysis(session, "--out", tmp_path / "out")
    assert done.stderr.splitlines()[0].startswith(f"{session}/runs.jsonl:4: skipped: not UTF-8 (byte 0xff at column ")


def meta_changed(session, change) -> None:
    meta = json.loads((session / "metadata.json").read_text())
    change(meta)
    (session / "metadata.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("change, problem", [
    (lambda m: m.update(tool_versions="iperf3 3.12"), "tool_versions is not an object of tool name to version string"),
    (lambda m: m.update(tool_versions={"iperf3": 3.12}), "tool_versions is not an object of tool name to version string"),
    (lambda m: m["nodes"].update({"lab-node1": "1500"}), "nodes.lab-node1 is not an object"),
    (lambda m: m.update(nodes=[]), "nodes is not an object keyed by node name"),
    (lambda m: m["nodes"]["lab-node2"].update(host_mtu_bytes="1500"),
     "nodes.lab-node2.host_mtu_bytes is not a whole number or null"),
    (lambda m: m.update(plan=["iperf2"]), "plan is not an object"),
    (lambda m: m.update(stack_outputs=[]), "stack_outputs is not an object (the stack outputs document)"),
    (lambda m: m["stack_outputs"].pop("provider"), "stack_outputs.provider is not a non-empty string"),
    (lambda m: m.pop("image"), "image missing"),
    (lambda m: m.update(seed="1234"), "seed is not a whole number or null"),
])
def test_metadata_of_the_wrong_types_is_one_line(tmp_path, change, problem):
    session = copy(tmp_path)
    meta_changed(session, change)
    for args in ([session, "--out", tmp_path / "out"], ["compare", session, REPO / LAB]):
        done = analysis(*args, check=False)
        assert done.returncode == 2
        assert done.stderr.splitlines() == [
            f"analysis: {session}/metadata.json: {problem} (see docs/results-format.md): the session is "
            "damaged; leave it out or repair the file"]
        assert done.stdout == ""


def test_metadata_that_is_not_an_object_or_not_utf8(tmp_path):
    session = copy(tmp_path)
    (session / "metadata.json").write_text("[]")
    done = analysis(session, check=False)
    assert done.returncode == 2 and done.stderr.splitlines() == [
        f"analysis: {session}/metadata.json: not a JSON object (see docs/results-format.md): the session "
        "is damaged; leave it out or repair the file"]
    (session / "metadata.json").write_bytes(b'{"session": "\xff"}')
    done = analysis(session, check=False)
    assert done.returncode == 2 and done.stderr.splitlines() == [
        f"analysis: {session}/metadata.json: not UTF-8 text (see docs/results-format.md): the session "
        "is damaged; leave it out or repair the file"]


def test_an_output_directory_behind_a_file_is_one_line(tmp_path):
    session = copy(tmp_path)
    (tmp_path / "a-file").write_text("mine")
    done = analysis(session, "--out", tmp_path / "a-file" / "out", check=False)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (f"analysis: cannot write {tmp_path}/a-file/out: Not a directory; "
                                            "give --out a directory that can be written")
    assert "Traceback" not in done.stderr and done.stdout == ""
    # The default output (SESSION/analysis) with a file in its place.
    (session / "analysis").write_text("not a directory")
    done = analysis(session, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == (f"analysis: --out {session}/analysis is a file: give a directory")


@pytest.fixture
def read_only_results(tmp_path):
    """A copy of a session on a read-only tmpfs (root writes through file modes, not through a
    read-only mount)."""
    require_root()
    mnt = tmp_path / "ro"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True)
    try:
        shutil.copytree(REPO / LAB, mnt / LAB.name)
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        yield mnt / LAB.name
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_a_read_only_output_directory_is_one_line(read_only_results, tmp_path):
    session = read_only_results
    done = analysis(session, check=False)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (f"analysis: cannot write {session}/analysis: Read-only file system; "
                                            "give --out a directory that can be written")
    assert "Traceback" not in done.stderr and done.stdout == ""
    # Elsewhere it can be written: the same session analysed.
    done = analysis(session, "--out", tmp_path / "out")
    assert os.path.exists(tmp_path / "out/report.md")
