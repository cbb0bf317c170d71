"""bench.plan: the matrix as data, its cases, and the interleaved run order."""
from __future__ import annotations

import pytest

from bench import plan as P
from bench.plan import PlanError

NODES = ["lab-node1", "lab-node2", "lab-node3"]


def test_default_profile_is_the_2015_method():
    plan = P.make_plan()
    assert (plan.tools, plan.protocols, plan.streams, plan.networks, plan.runs, plan.directions) == (
        ("iperf2",), ("tcp",), (10,), ("host", "overlay"), 5, ("forward",))
    cases = P.cases(plan, NODES)
    assert [c.case_id for c in cases] == [
        "iperf2-tcp-P10-forward-host-lab-node1-lab-node2",
        "iperf2-tcp-P10-forward-overlay-lab-node1-lab-node2",
    ]


def test_command_line_overrides_the_profile():
    plan = P.make_plan("full", networks=("host",), tools=("iperf3",), streams=(1, 10), runs=3, duration_s=2)
    assert plan.profile == "full" and plan.protocols == ("tcp", "udp") and plan.directions == ("forward", "reverse")
    assert len(P.cases(plan, NODES)) == 1 * 1 * 2 * 2 * 2


def test_sockperf_has_no_streams_or_direction():
    plan = P.make_plan(tools=("sockperf",), streams=(1, 10), directions=("forward", "reverse"))
    cases = P.cases(plan, NODES)
    assert {(c.streams, c.direction) for c in cases} == {(1, "forward")}
    assert len(cases) == len(plan.networks)


def test_runs_are_interleaved_round_by_round():
    plan = P.make_plan(networks=("host", "overlay"), runs=3)
    order = [r.run_id for r in P.run_order(plan, P.cases(plan, NODES))]
    assert order == [
        "iperf2-tcp-P10-forward-host-lab-node1-lab-node2#1",
        "iperf2-tcp-P10-forward-overlay-lab-node1-lab-node2#1",
        "iperf2-tcp-P10-forward-host-lab-node1-lab-node2#2",
        "iperf2-tcp-P10-forward-overlay-lab-node1-lab-node2#2",
        "iperf2-tcp-P10-forward-host-lab-node1-lab-node2#3",
        "iperf2-tcp-P10-forward-overlay-lab-node1-lab-node2#3",
    ]


def test_shuffle_is_reproducible_from_its_seed_and_keeps_rounds():
    plan = P.make_plan("full", runs=4, shuffle=True, seed=1234)
    cases = P.cases(plan, NODES)
    first = [r.run_id for r in P.run_order(plan, cases)]
    assert first == [r.run_id for r in P.run_order(plan, cases)]
    other = P.make_plan("full", runs=4, shuffle=True, seed=99)
    assert first != [r.run_id for r in P.run_order(other, cases)]
    # Every case's run k comes before any case's run k + 1.
    indices = [int(rid.rsplit("#", 1)[1]) for rid in first]
    assert indices == sorted(indices)
    assert sorted(first[: len(cases)]) == sorted(c.case_id + "#1" for c in cases)


@pytest.mark.parametrize("pairs, expected", [
    ("first", [("lab-node1", "lab-node2")]),
    ("all", [("lab-node1", "lab-node2"), ("lab-node1", "lab-node3"), ("lab-node2", "lab-node3")]),
    ("ring", [("lab-node1", "lab-node2"), ("lab-node2", "lab-node3"), ("lab-node3", "lab-node1")]),
])
def test_node_pairs(pairs, expected):
    assert P.node_pairs(NODES, pairs) == expected


def test_iperf2_udp_reverse_is_skipped_with_a_reason():
    plan = P.make_plan(protocols=("udp",), directions=("forward", "reverse"), networks=("host",))
    reasons = {c.direction: c.static_skip_reason() for c in P.cases(plan, NODES)}
    assert reasons["forward"] is None
    assert "crashes its server" in reasons["reverse"]


@pytest.mark.parametrize("overrides, message", [
    (dict(tools=("iperf4",)), "unknown iperf4"),
    (dict(networks=("overlay", "weave")), "unknown weave"),
    (dict(streams=(0,)), "--streams"),
    (dict(runs=0), "--runs"),
    (dict(duration_s=1.5), "whole number"),
    (dict(warmup_s=-1), "--warmup"),
    (dict(pairs="star"), "--pairs"),
    (dict(udp_target_mbps=0), "--udp-rate"),
    (dict(max_runs=10), "--max-runs only makes sense with --precision"),
    (dict(precision_points=0), "--precision must be a positive"),
    (dict(precision_points=1, networks=("overlay",)), "give host and at least one other network"),
    (dict(precision_points=1, runs=5, max_runs=4), r"--max-runs must be at least --runs \(5\)"),
])
def test_bad_matrix_options(overrides, message):
    with pytest.raises(PlanError, match=message):
        P.make_plan(**overrides)


def test_plan_round_trips_through_json():
    plan = P.make_plan("full", shuffle=True, seed=7, streams=(1, 4))
    assert P.Plan.from_json(plan.to_json()) == plan


def test_estimate_counts_warmup_overhead_and_skips():
    plan = P.make_plan(networks=("host",), protocols=("tcp", "udp"), directions=("forward", "reverse"),
                       runs=2, duration_s=5, warmup_s=1)
    runs = list(P.run_order(plan, P.cases(plan, NODES)))
    # 3 runnable cases (iperf2 UDP reverse is skipped) x 2 runs x (5 + 1 + overhead), and 2
    # servers (TCP and UDP: forward and reverse share one)
    assert P.estimate_s(plan, runs) == pytest.approx(6 * (6 + P.RUN_OVERHEAD_S) + 2 * P.SERVER_START_S)


def test_one_server_and_one_port_per_network_tool_protocol_and_pair():
    plan = P.make_plan("full", pairs="all", port_base=5210)
    cases = P.cases(plan, NODES)
    ports = P.server_ports(plan, cases)
    # 6 networks x 3 tools x 2 protocols x 3 pairs; streams and direction share a server.
    assert len(ports) == 6 * 3 * 2 * 3 < len(cases)
    assert sorted(ports.values()) == list(range(5210, 5210 + len(ports)))
    assert ports[P.server_key(cases[0])] == 5210
    assert {P.server_key(c) for c in cases} == set(ports)
    many = [f"n{i}" for i in range(12)]  # 66 pairs: 2376 servers, more than the firewalls open
    with pytest.raises(PlanError, match=r"needs 2376 server ports .* up to 7585, .* run fewer cases \(at most 500 servers\)"):
        P.server_ports(plan, P.cases(plan, many))


def test_precision_adds_rounds_up_to_max_runs():
    plan = P.make_plan(precision_points=1.0)
    assert (plan.runs, plan.max_runs, plan.max_rounds) == (P.PRECISION_MIN_RUNS, P.PRECISION_MAX_RUNS,
                                                           P.PRECISION_MAX_RUNS)
    assert P.make_plan(precision_points=1.0, runs=40).max_runs == 40
    plan = P.make_plan(precision_points=1.0, runs=2, max_runs=4, shuffle=True, seed=3)
    cases = P.cases(plan, NODES)
    rounds = list(P.rounds(plan, cases))
    assert [len(r) for r in rounds] == [2, 2, 2, 2]
    assert [r.run_index for round_ in rounds for r in round_] == [1, 1, 2, 2, 3, 3, 4, 4]
    # The first `runs` rounds are the run order; the same order whenever generated again.
    assert [r for round_ in rounds[:2] for r in round_] == list(P.run_order(plan, cases))
    assert rounds == list(P.rounds(plan, cases))
    assert P.Plan.from_json(plan.to_json()) == plan
    # A plan stored before --precision existed reads as exactly its runs.
    old = {k: v for k, v in P.make_plan().to_json().items() if k not in ("precision_points", "max_runs")}
    assert P.Plan.from_json(old).max_rounds == 5
