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
from bench.plan import Plan, PlanError
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


def closed_bench_ports(rules: tuple[firewall.Rule, ...]) -> list[tuple[str, int]]:
    """(protocol, port) that bench may give a server, tcp or udp, and `rules` drop between
    the cluster's machines."""
    possible = {ports.server_port(base, index) for base in accepted_bases() for index in range(3 * ports.ROTATION)}
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


def test_default_base_and_rotation_stay_inside_the_open_range():
    assert ports.used(ports.DEFAULT_BASE) == (5201, 5250)
    assert Plan().port_base == ports.DEFAULT_BASE
    assert [ports.server_port(5251, i) for i in (0, 49, 50)] == [5251, 5300, 5251]


@pytest.mark.parametrize("base", [1024, 5200, 5252, 6301, 65000])
def test_a_base_outside_the_open_range_is_refused_in_one_line(base):
    with pytest.raises(PlanError) as caught:
        Plan(port_base=base)
    assert str(caught.value) == (f"--port-base {base}: the servers would use ports {base}-{base + 49}, but the "
                                 "stacks' firewalls open 5201-5300 only: choose a base from 5201 to 5251")
    proc = subprocess.run([sys.executable, "-m", "bench", "--outputs", "/nonexistent", "--port-base", str(base)],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode != 0 and proc.stderr.strip() == f"bench: {caught.value}", proc.stderr


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
