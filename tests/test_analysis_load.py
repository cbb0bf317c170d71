"""analysis.load: reading sessions, the two-process parse of large files, setups."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from analysis import load, parallel

FIXTURES = Path("tests/fixtures/results")
REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("session", ["20261126-170000-flaky", "20261126-130501-lab"])
def test_two_process_parse_equals_one_process(monkeypatch, session):
    path = REPO / FIXTURES / session
    one_frame, one_problems = load.read_runs(path, session)
    monkeypatch.setattr(load, "PARALLEL_BYTES", 100)  # forces the split on a small file
    with parallel.workers() as pool:
        two_frame, two_problems = load.read_runs(path, session, pool)
    pd.testing.assert_frame_equal(one_frame, two_frame)
    assert one_problems == two_problems
    lines = sum(1 for line in open(path / "runs.jsonl") if line.strip())
    assert len(one_frame) + len(one_problems) == lines


def test_damaged_line_in_second_half_keeps_its_line_number(tmp_path, monkeypatch):
    good = json.loads(open(REPO / FIXTURES / "20261126-130501-lab/runs.jsonl").readline())
    lines = [json.dumps(dict(good, run_id=f"r#{i}")) for i in range(200)]
    lines[150] = lines[150][:40]           # cut short
    lines.insert(170, "")                  # a blank line is not a run and not an error
    (tmp_path / "runs.jsonl").write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(load, "PARALLEL_BYTES", 1000)
    with parallel.workers() as pool:
        frame, problems = load.read_runs(tmp_path, "s", pool)
    assert [(p.line, p.reason.split(" (")[0]) for p in problems] == [(151, "not JSON")]
    assert len(frame) == 199
    assert frame["line"].tolist() == [n for n in range(1, 202) if n not in (151, 171)]


def test_two_objects_on_one_line_are_not_taken_as_two_runs(tmp_path):
    good = open(REPO / FIXTURES / "20261126-130501-lab/runs.jsonl").readline().strip()
    (tmp_path / "runs.jsonl").write_text(f"{good}\n{good}, {good}\n")
    frame, problems = load.read_runs(tmp_path, "s")
    assert len(frame) == 1
    assert [p.line for p in problems] == [2]


def test_a_boolean_is_not_a_measurement(tmp_path):
    rec = json.loads(open(REPO / FIXTURES / "20261126-130501-lab/runs.jsonl").readline())
    (tmp_path / "runs.jsonl").write_text(json.dumps(dict(rec, throughput_mbps=True)) + "\n")
    frame, problems = load.read_runs(tmp_path, "s")
    assert frame.empty
    assert [str(p) for p in problems] == ["s/runs.jsonl:1: skipped: throughput_mbps is not a number"]


def test_setups_split_by_stack_and_identity_and_merge_on_request():
    sessions = load.load([str(FIXTURES / name) for name in
                          ("20261126-130501-lab", "20261126-150000-lab", "20261126-170000-flaky")])
    assert {k: [s.name for s in v] for k, v in load.assign_setups(sessions, merge=False).items()} == {
        "lab (iperf3 3.12)": ["20261126-130501-lab"],
        "lab (iperf3 3.16)": ["20261126-150000-lab"],
        "flaky": ["20261126-170000-flaky"],
    }
    merged = load.assign_setups(sessions, merge=True)
    assert list(merged) == ["lab+flaky"] and len(merged["lab+flaky"]) == 3


def test_a_directory_of_sessions_stands_for_its_latest():
    [(path, shown)] = load.resolve([str(FIXTURES)])
    assert path.name == "20261129-200303-cpf227pu"
    assert shown == str(FIXTURES / "20261129-200303-cpf227pu")


def test_setup_labels_say_what_differs_even_a_missing_tool(tmp_path):
    for name, tools in (("20261126-130501-lab", {"iperf2": "2.1.8", "sockperf": "3.7"}),
                        ("20261126-150000-lab", {"iperf2": "2.1.8"})):
        session = tmp_path / name
        session.mkdir()
        meta = json.loads((REPO / FIXTURES / "20261126-130501-lab/metadata.json").read_text())
        (session / "metadata.json").write_text(json.dumps(dict(meta, tool_versions=tools)))
        (session / "runs.jsonl").write_text((REPO / FIXTURES / "20261126-130501-lab/runs.jsonl").read_text())
    sessions = load.load([str(tmp_path / "20261126-130501-lab"), str(tmp_path / "20261126-150000-lab")])
    assert list(load.assign_setups(sessions, merge=False)) == ["lab (sockperf 3.7)", "lab (no sockperf)"]
