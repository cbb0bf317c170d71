"""bench/precision.py: the stopping rule of --precision on recorded sequences, and the same
interval as python -m analysis."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bench import precision

REPO = Path(__file__).resolve().parent.parent
LAB = REPO / "tests/fixtures/results/20261126-130501-lab"


def recorded(session: Path) -> list[dict]:
    return [json.loads(line) for line in (session / "runs.jsonl").read_text().splitlines() if line.strip()]


def rule(host: list[float], other: list[float], *, target: float, min_rounds: int = 3,
         max_rounds: int) -> precision.Decision:
    """The session's loop on one comparison: a round at a time until the rule stops."""
    for k in range(1, max_rounds + 1):
        decision = precision.decide({("case", "overlay"): (host[:k], other[:k])}, target_points=target,
                                    rounds_done=k, min_rounds=min_rounds, max_rounds=max_rounds)
        if decision.stop:
            return decision
    raise AssertionError("the rule never stopped")


def test_a_quiet_recorded_case_stops_at_the_first_check():
    # The checked-in lab session: iperf 2 on a 1 Gbit/s link, runs within 0.2 % of each other.
    runs = [r for r in recorded(LAB) if r["tool"] == "iperf2" and r["direction"] == "forward"
            and r["status"] == "ok"]
    host = [r["throughput_mbps"] for r in runs if r["network"] == "host"]
    overlay = [r["throughput_mbps"] for r in runs if r["network"] == "overlay"]
    decision = rule(host + host, overlay + overlay, target=1.0, max_rounds=10)
    assert (decision.round, decision.reason) == (3, "target met")
    width = decision.half_widths[("case", "overlay")]
    assert 0 < width < 1.0


def test_a_quiet_synthetic_case_stops_early_and_a_noisy_one_goes_to_max_runs():
    rng = np.random.default_rng(7)
    quiet_host = list(1000 + rng.normal(0, 3, 30))  # 0.3 % run-to-run
    quiet_overlay = list(965 + rng.normal(0, 3, 30))
    decision = rule(quiet_host, quiet_overlay, target=0.5, max_rounds=30)
    assert decision.reason == "target met" and 3 <= decision.round < 30
    # Earlier rounds had not met it: it stopped at the first round that did.
    before = precision.decide({("case", "overlay"): (quiet_host[:decision.round - 1],
                                                     quiet_overlay[:decision.round - 1])},
                              target_points=0.5, rounds_done=decision.round - 1, min_rounds=3, max_rounds=30)
    assert decision.round == 3 or not before.stop

    noisy_host = list(1000 + rng.normal(0, 150, 30))  # 15 % run-to-run
    noisy_overlay = list(965 + rng.normal(0, 150, 30))
    decision = rule(noisy_host, noisy_overlay, target=0.5, max_rounds=12)
    assert (decision.round, decision.reason) == (12, "max runs reached")
    assert not decision.met(decision.half_widths[("case", "overlay")])


def test_every_comparison_must_meet_the_target_and_unbounded_never_does():
    quiet = ([1000.0, 1001.0, 999.0], [965.0, 966.0, 964.0])
    noisy = ([1000.0, 100.0, 1900.0], [965.0, 600.0, 1300.0])
    decision = precision.decide({("a", "overlay"): quiet, ("b", "overlay"): noisy}, target_points=1.0,
                                rounds_done=3, min_rounds=3, max_rounds=5)
    assert not decision.stop
    assert math.isnan(decision.half_widths[("b", "overlay")])  # host mean not clearly non-zero
    assert decision.widest == (("b", "overlay"), decision.half_widths[("b", "overlay")])
    assert "widest b, overlay vs host: unbounded" in decision.summary()
    only_quiet = precision.decide({("a", "overlay"): quiet}, target_points=1.0, rounds_done=3,
                                  min_rounds=3, max_rounds=5)
    assert only_quiet.stop and only_quiet.reason == "target met"


def test_no_decision_before_the_minimum_rounds():
    quiet = ([1000.0, 1000.1], [965.0, 965.1])
    decision = precision.decide({("a", "overlay"): quiet}, target_points=5.0, rounds_done=2,
                                min_rounds=3, max_rounds=5)
    assert not decision.stop and decision.half_widths[("a", "overlay")] < 5


def test_comparisons_from_run_records():
    def rec(network, index, status="ok", value=100.0, tool="iperf3"):
        return {"run_id": f"{tool}-tcp-P1-forward-{network}-n1-n2#{index}", "tool": tool, "protocol": "tcp",
                "streams": 1, "direction": "forward", "network": network, "server_node": "n1",
                "client_node": "n2", "status": status, "throughput_mbps": value if status == "ok" else None,
                "latency_p50_us": None}

    records = [rec("host", 1, value=100), rec("host", 2, value=102), rec("overlay", 1, value=90),
               rec("overlay", 2, "failed"), rec("overlay", 2, value=91),  # a retry: the last line counts
               rec("overlay-encrypted", 1, "skipped"), rec("overlay-encrypted", 2, "skipped"),
               rec("bridge", 1, "failed")]
    assert precision.comparisons(records) == {
        ("iperf3-tcp-P1-forward-n1-n2", "overlay"): ([100.0, 102.0], [90.0, 91.0]),
        # An unsupported network is not compared; a failing one is, with no values (never met).
        ("iperf3-tcp-P1-forward-n1-n2", "bridge"): ([100.0, 102.0], []),
    }


def test_the_rule_uses_the_interval_analysis_reports():
    """The half-width bench stops on is the one `python -m analysis` prints for the same runs."""
    from analysis import load
    from analysis import table as tbl

    sessions = load.load([str(LAB)])
    setups = load.assign_setups(sessions, merge=False)
    summary = tbl.summarize(load.runs_table(setups), {"lab": "local"}, load.node_mtus(setups))
    values = precision.comparisons(recorded(LAB))
    checked = 0
    for _, row in summary.iterrows():
        key = (f"{row['tool']}-{row['protocol']}-P{row['streams']}-{row['direction']}-"
               f"{row['server_node']}-{row['client_node']}", "overlay")
        if key not in values or np.isnan(row["overlay_overhead_ci_low_percent"]):
            continue
        half = (row["overlay_overhead_ci_high_percent"] - row["overlay_overhead_ci_low_percent"]) / 2
        assert precision.half_width_points(*values[key]) == pytest.approx(half, rel=1e-9)
        checked += 1
    assert checked >= 5


def test_decisions_are_appended_to_the_session(tmp_path):
    decision = precision.decide({("a", "overlay"): ([1000.0, 1001, 999], [965.0, 966, 964])}, target_points=1.0,
                                rounds_done=3, min_rounds=3, max_rounds=5)
    precision.record(tmp_path, decision)
    precision.record(tmp_path, decision)
    lines = [json.loads(line) for line in (tmp_path / precision.FILE).read_text().splitlines()]
    assert len(lines) == 2
    assert lines[0] == {"round": 3, "stop": True, "reason": "target met", "target_points": 1.0,
                        "comparisons": [{"case": "a", "network": "overlay",
                                         "half_width_points": round(decision.half_widths[("a", "overlay")], 4),
                                         "met": True}]}
