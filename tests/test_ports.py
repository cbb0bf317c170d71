"""Bench's server ports and the stacks' firewall agree by construction: every port bench
can give a server is one the firewall declaration (stacks/firewall.py, which the
DigitalOcean firewall and the lab's --firewall both apply) opens between the machines."""
from __future__ import annotations

import dataclasses
import functools
import subprocess
import sys

import pytest

from bench import ports
from bench.plan import Plan, PlanError, cases, server_key, server_ports
from stacks import firewall
from tests.conftest import REPO

MODES = ("classic", "swarm")


@functools.cache
def accepted_bases() -> tuple[int, ...]:
    """Every --port-base bench takes (any port number at all is tried)."""
    bases = []
    for base in range(1, 65536):
        try:
            Plan(port_base=base)
        except PlanError:
            continue
        bases.append(base)
    return tuple(bases)


@functools.cache
def possible_ports() -> frozenset[int]:
    """Every port bench may give a server: each accepted base, with as many servers as a
    plan from it may have (any number is tried, up to the whole port space)."""
    possible = set()
    for base in accepted_bases():
        for servers in range(1, 65536 - base + 1):
            if ports.servers_problem(base, servers) is not None:
                break
            possible.add(ports.server_port(base, servers - 1))
    return frozenset(possible)


def closed_bench_ports(rules: tuple[firewall.Rule, ...]) -> list[tuple[str, int]]:
    """(protocol, port) that bench may give a server, tcp or udp, and `rules` drop between
    the cluster's machines."""
    possible = possible_ports()
    return sorted((protocol, port) for protocol in ("tcp", "udp") for port in possible
                  if not any(rule.opens(protocol, port, firewall.CLUSTER) for rule in rules))


@pytest.mark.parametrize("mode", MODES)
def test_every_port_bench_can_choose_is_open_between_the_machines(mode):
    assert accepted_bases(), "bench takes no --port-base at all"
    assert closed_bench_ports(firewall.inbound(mode, keystore_port=2379)) == []


@pytest.mark.parametrize("mode", MODES)
def test_a_firewall_that_drops_a_port_bench_uses_is_caught(mode):
    """The check above on a declaration whose bench range is one port short."""
    narrowed = tuple(dataclasses.replace(rule, ports=(rule.ports[0], rule.ports[1] - 1))
                     if rule.ports == ports.OPEN else rule
                     for rule in firewall.inbound(mode, keystore_port=2379))
    assert closed_bench_ports(narrowed) == [("tcp", ports.OPEN[1]), ("udp", ports.OPEN[1])]


def test_default_base_and_servers_stay_inside_the_open_range():
    assert Plan().port_base == ports.DEFAULT_BASE == ports.OPEN[0]
    assert [ports.server_port(5201, i) for i in (0, 1, 499)] == [5201, 5202, 5700]
    assert ports.servers_problem(5201, 500) is None
    assert ports.servers_problem(5700, 1) is None


@pytest.mark.parametrize("base", [1024, 5200, 5701, 6301, 65000])
def test_a_base_outside_the_open_range_is_refused_in_one_line(base):
    with pytest.raises(PlanError) as caught:
        Plan(port_base=base)
    assert str(caught.value) == (f"--port-base {base}: the stacks' firewalls open ports 5201-5700 only: "
                                 "choose a base from 5201 to 5700")
    proc = subprocess.run([sys.executable, "-m", "bench", "--outputs", "/nonexistent", "--port-base", str(base)],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode != 0 and proc.stderr.strip() == f"bench: {caught.value}", proc.stderr


def test_a_plan_whose_servers_run_past_the_open_range_is_refused_in_one_line():
    plan = Plan(networks=("host", "bridge"), tools=("iperf3", "iperf2", "sockperf"), protocols=("tcp", "udp"),
                port_base=5690)
    made = cases(plan, ["node1", "node2"])
    servers = len({server_key(c) for c in made})
    assert servers == 12
    with pytest.raises(PlanError) as caught:
        server_ports(plan, made)
    assert str(caught.value) == (
        "--port-base 5690: the plan needs 12 server ports (one per network, tool, protocol and node pair), "
        "up to 5701, but the stacks' firewalls open 5201-5700 only: give a --port-base of at most 5689 "
        "or fewer cases")
    assert max(server_ports(dataclasses.replace(plan, port_base=5689), made).values()) == 5700
    assert ports.servers_problem(5201, 501) == (
        "--port-base 5201: the plan needs 501 server ports (one per network, tool, protocol and node pair), "
        "up to 5701, but the stacks' firewalls open 5201-5700 only: run fewer cases (at most 500 servers)")


def test_firewall_rules_are_ranges_within_a_digitalocean_firewall():
    for mode in MODES:
        rules = firewall.inbound(mode, keystore_port=8500)
        # Inbound plus the three outbound rules (tcp, udp, icmp) the DigitalOcean stack adds.
        assert len(rules) + 3 <= firewall.MAX_RULES
        assert {rule.protocol for rule in rules} <= {"tcp", "udp", "icmp"}
        assert [r.port_range for r in rules if r.source == firewall.OPERATOR] == ["22"], "only SSH from outside"
        opened = {(r.protocol, p) for r in rules if r.ports for p in range(r.ports[0], r.ports[1] + 1)}
        assert not opened & {("tcp", 2375), ("tcp", 2376)}, "the Docker API is never open"
    assert ("tcp", "2377") in [(r.protocol, r.port_range) for r in firewall.inbound("swarm")]
    assert ("tcp", "2379") in [(r.protocol, r.port_range) for r in firewall.inbound("classic", 2379)]
    assert ("tcp", "2377") not in [(r.protocol, r.port_range) for r in firewall.inbound("classic", 2379)]


def test_the_pulumi_program_can_import_the_ports_module():
    """Standard library only: the Pulumi program (stacks/firewall.py) imports it."""
    code = ("import sys; import bench.ports; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('bench', 'docker', 'pandas')))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "['bench', 'bench.ports']"
