"""macvlan, ipvlan and the overlay MTU without a machine: the plan, the skip rules from the
outputs, the lab's address range, the MTU warnings, and a dry run as a user runs it.
(tests/test_jumbo_lab.py runs them on the real lab.)"""
from __future__ import annotations

import copy
import ipaddress
import json

import pytest

from bench import engines, underlay
from bench import plan as P
from bench.results_format import NETWORKS
from bench.session import static_skip
from stacks import outputs
from stacks.local import lab, spec
from tests.test_bench_cli import bench, outputs_doc

NODES = ["lab-node1", "lab-node2"]
LAB = {
    "schema_version": 3, "stack": "lab", "provider": "local", "mode": "swarm",
    "nodes": [{"name": n, "role": "manager" if i == 0 else "worker", "address": f"10.213.0.{11 + i}",
               "docker_host": f"unix:///run/overlay-bench/lab/n{i + 1}/docker.sock",
               "tls_cert_path": None, "ssh_key_path": None} for i, n in enumerate(NODES)],
    "keystore": None, "overlay_network": "overlay-bench", "link_rate": None, "mtu_bytes": 9000,
    "unsupported_networks": {},
    "underlay_network": {"parent_interface": "eth0", "subnet": "10.213.0.0/24",
                         "address_range": "10.213.0.128/25"},
}


def cases_of(network: str, doc: dict) -> list[tuple[str, str | None]]:
    plan = P.make_plan(networks=("host", network), tools=("iperf3",))
    return [(c.network, static_skip(c, outputs.validate(copy.deepcopy(doc)))) for c in P.cases(plan, NODES)]


def test_macvlan_and_ipvlan_are_networks_of_the_matrix_after_the_others():
    assert NETWORKS[-2:] == ("macvlan", "ipvlan") == underlay.NETWORKS
    assert P.make_plan("full").networks == NETWORKS
    plan = P.make_plan(networks=("host", "macvlan", "ipvlan"))
    assert [c.network for c in P.cases(plan, NODES)] == ["host", "macvlan", "ipvlan"]


@pytest.mark.parametrize("network", ["macvlan", "ipvlan"])
def test_a_stack_with_a_range_leaves_them_to_the_probe(network):
    assert cases_of(network, LAB) == [("host", None), (network, None)]


@pytest.mark.parametrize("network", ["macvlan", "ipvlan"])
def test_a_stack_that_cannot_offer_them_skips_them_with_its_reason(network):
    doc = dict(LAB, provider="digitalocean", underlay_network=None,
               unsupported_networks={"macvlan": "no foreign MACs", "ipvlan": "no foreign IPs"})
    reason = dict(cases_of(network, doc))[network]
    own = {"macvlan": "no foreign MACs", "ipvlan": "no foreign IPs"}[network]
    assert reason == f"unsupported on stack lab (digitalocean): {own}"


@pytest.mark.parametrize("version", [1, 2])
def test_outputs_of_before_the_range_skip_them_and_say_to_update_the_stack(version):
    doc = {k: v for k, v in LAB.items() if k not in ("underlay_network", "unsupported_networks")}
    doc["schema_version"] = version
    reason = dict(cases_of("macvlan", doc))["macvlan"]
    assert reason == ("unsupported on stack lab (local): " + outputs.UNDERLAY_MISSING.format(version=version))
    assert dict(cases_of("host", doc))["host"] is None


def test_each_node_and_network_gets_its_own_block():
    ranges = {kind: outputs.node_ranges(LAB["underlay_network"]["address_range"], 2, kind)
              for kind in underlay.NETWORKS}
    blocks = [ipaddress.IPv4Network(b) for kind in ranges for b in ranges[kind]]
    assert all(not a.overlaps(b) for i, a in enumerate(blocks) for b in blocks[i + 1:])
    assert all(b.subnet_of(ipaddress.IPv4Network("10.213.0.128/25")) for b in blocks)
    assert underlay.network_name("macvlan", "20261129-215012-lab") == "ob-macvlan-20261129-215012-lab"
    assert underlay.MODES == {"macvlan": ("macvlan_mode", "bridge"), "ipvlan": ("ipvlan_mode", "l2")}


@pytest.mark.parametrize("subnet, nodes, expected", [
    ("10.213.0.0/24", 2, "10.213.0.128/25"),
    ("10.213.0.0/24", 8, "10.213.0.128/25"),
    ("10.213.0.0/24", 16, "10.213.0.128/25"),
    ("10.213.0.0/24", 17, None),  # 128 addresses for 32 blocks of 4: fewer than 8 each
    ("10.213.0.0/23", 50, None),  # a /24 for 64 blocks: 4 each
    ("10.213.0.0/22", 50, "10.213.2.0/23"),
    ("10.99.0.0/26", 4, "10.99.0.32/27"),
    ("10.99.0.0/26", 21, None),  # nodes up to .31: no block above them
])
def test_the_labs_range_is_the_top_of_its_subnet_above_its_nodes(subnet, nodes, expected):
    net = ipaddress.IPv4Network(subnet)
    last = net.network_address + lab.FIRST_NODE_ADDRESS_INDEX - 1 + nodes
    span = lab.underlay_range(net, last, nodes)
    assert (str(span) if span else None) == expected
    if span:
        assert last < span.network_address and span.subnet_of(net)


def test_overlay_mtu_defaults_to_the_link_less_vxlan_and_can_be_forced_lower():
    assert spec.LabSpec("lab", mtu_bytes=9000).overlay_mtu == 8950
    assert spec.LabSpec("lab", mtu_bytes=9000, overlay_mtu_bytes=1450).overlay_mtu == 1450
    spec.LabSpec("lab", mtu_bytes=9000, overlay_mtu_bytes=1450).check()
    with pytest.raises(spec.SpecError, match=r"--overlay-mtu 8951: choose an overlay MTU between 1230 "
                                             r"and 8950 bytes \(the link MTU less VXLAN's 50\)"):
        spec.LabSpec("lab", mtu_bytes=9000, overlay_mtu_bytes=8951).check()
    with pytest.raises(spec.SpecError, match=r"--overlay-mtu 1000: choose an overlay MTU between 1230 and 1450"):
        spec.LabSpec("lab", overlay_mtu_bytes=1000).check()


def facts(link, overlay):
    return {"host_mtu_bytes": link, "overlay_mtu_bytes": overlay}


def test_mtu_warnings_name_the_node_the_gap_and_the_fix():
    warnings = engines.mtu_warnings({"n1": facts(9000, 1450), "n2": facts(9000, 8950),
                                     "n3": facts(1500, 1450), "n4": facts(1500, 1500),
                                     "n5": facts(None, 1450)})
    assert warnings == [
        "node n1: overlay MTU 1450 is 7500 bytes below the 8950 its 9000-byte link carries: overlay "
        "results understate what the overlay can do (create the overlay network with -o "
        "com.docker.network.driver.mtu=9000)",
        "node n4: overlay MTU 1500 is above the 1450 its 1500-byte link carries: VXLAN packets outgrow "
        "the link and are fragmented or dropped (create the overlay network with -o "
        "com.docker.network.driver.mtu=1500)",
    ]


def test_dry_run_says_macvlan_and_ipvlan_are_probed_or_why_they_are_skipped(tmp_path):
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(dict(LAB, nodes=LAB["nodes"])))
    res = bench("--outputs", str(path), "--dry-run", "--networks", "host,macvlan,ipvlan", "--runs", "1")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    for network in ("macvlan", "ipvlan"):
        assert any(f"-{network}-lab-node1-lab-node2  (probed first: skipped if this host cannot carry it)"
                   in line for line in lines), res.stdout
    old = tmp_path / "old.json"
    old.write_text(json.dumps(outputs_doc()))  # schema version 1: no range
    res = bench("--outputs", str(old), "--dry-run", "--networks", "host,macvlan", "--runs", "1")
    assert res.returncode == 0, res.stderr
    assert "-macvlan-lab-node1-lab-node2  skipped: unsupported on stack lab (local): the stack's " \
           "outputs (schema version 1) declare no address range" in res.stdout
