"""The stack outputs contract: what it accepts and the one-line errors it gives."""
from __future__ import annotations

import copy
import json

import pytest

from stacks import outputs

GOOD = {
    "schema_version": 3, "stack": "lab", "provider": "local", "mode": "swarm",
    "nodes": [
        {"name": "lab-node1", "role": "manager", "address": "10.213.0.11",
         "docker_host": "unix:///run/overlay-bench/lab/n1/docker.sock", "tls_cert_path": None, "ssh_key_path": None},
        {"name": "lab-node2", "role": "worker", "address": "10.213.0.12",
         "docker_host": "unix:///run/overlay-bench/lab/n2/docker.sock", "tls_cert_path": None, "ssh_key_path": None},
    ],
    "keystore": None, "overlay_network": "overlay-bench", "link_rate": None, "mtu_bytes": 1500,
    "unsupported_networks": {},
    "underlay_network": {"parent_interface": "eth0", "subnet": "10.213.0.0/24",
                         "address_range": "10.213.0.128/25"},
}


def test_valid_document_round_trips_in_contract_order():
    text = outputs.dumps(GOOD)
    assert list(json.loads(text)) == list(outputs.KEYS)
    assert outputs.loads(text) == GOOD


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("nodes"), "'nodes' is a required property"),
    (lambda d: d.update(schema_version=4), "schema_version 4; this overlay-bench reads versions 1, 2, 3"),
    (lambda d: d.update(underlay_network=None), "underlay_network: null, yet macvlan and ipvlan not in"),
    (lambda d: d.update(underlay_network=None, unsupported_networks={"macvlan": "why"}),
     "underlay_network: null, yet ipvlan not in"),
    (lambda d: d["underlay_network"].update(address_range="10.213.1.0/25"), "is not inside subnet"),
    (lambda d: d["underlay_network"].update(address_range="10.213.0.0/28"), "holds node lab-node1"),
    (lambda d: d["underlay_network"].update(address_range="10.213.0.128/29"),
     "gives 2 nodes fewer than 8 addresses each"),
    (lambda d: d["underlay_network"].update(subnet="10.213.0.0/33"), "at underlay_network"),
    (lambda d: d["underlay_network"].update(subnet="10.213.1.0/24", address_range="10.213.1.128/25"),
     r"node lab-node1 \(10.213.0.11\) is not in subnet"),
    (lambda d: d["underlay_network"].pop("parent_interface"), "at underlay_network"),
    (lambda d: d.update(unsupported_networks={"overlay-encrypted": ""}), "at unsupported_networks"),
    (lambda d: d.update(unsupported_networks={"Overlay Encrypted": "why"}), "at unsupported_networks"),
    (lambda d: d.update(unsupported_networks=["overlay-encrypted"]), "at unsupported_networks"),
    (lambda d: d.update(provider="aws"), "at provider"),
    (lambda d: d["nodes"].pop(), "at nodes"),
    (lambda d: d["nodes"][1].update(role="manager"), "exactly one node must be the manager"),
    (lambda d: d["nodes"][1].update(name="lab-node1"), "node names must be unique"),
    (lambda d: d["nodes"][0].update(docker_host="http://x"), "at nodes/0/docker_host"),
    (lambda d: d["nodes"][0].update(address="not-an-ip"), "at nodes/0/address"),
    (lambda d: d.update(keystore={"name": "kv", "address": "10.0.0.2", "url": "redis://x"}), "at keystore"),
    (lambda d: d.update(token="secret"), "Additional properties"),
])
def test_invalid_documents_name_the_key(mutate, message):
    doc = copy.deepcopy(GOOD)
    mutate(doc)
    with pytest.raises(outputs.OutputsError, match=message if "\\(" in message else message.replace("(", r"\(")):
        outputs.validate(doc)


def test_not_json_says_what_to_pass():
    with pytest.raises(outputs.OutputsError, match="pulumi stack output --json"):
        outputs.loads("{nope", source="outputs.json")


def test_pulumi_dropped_nulls_read_as_null():
    # Pulumi never exports a top-level null: `pulumi stack output --json` omits those keys.
    doc = {k: v for k, v in GOOD.items() if k not in ("keystore", "link_rate")}
    assert outputs.validate(doc) == GOOD
    unsupported = dict.fromkeys(outputs.UNDERLAY_NETWORKS, "no range here")
    dropped = {k: v for k, v in GOOD.items() if k != "underlay_network"}
    dropped["unsupported_networks"] = unsupported
    assert outputs.validate(dropped)["underlay_network"] is None


OLD_REASON = outputs.UNDERLAY_MISSING


def test_version_1_documents_are_still_read():
    """A version 1 document (before unsupported_networks and underlay_network) reads as one
    where only macvlan and ipvlan are unsupported, for want of an address range."""
    doc = {k: v for k, v in copy.deepcopy(GOOD).items()
           if k not in ("unsupported_networks", "underlay_network")}
    doc["schema_version"] = 1
    read = outputs.validate(doc)
    assert read["schema_version"] == 1 and read["underlay_network"] is None
    assert read["unsupported_networks"] == dict.fromkeys(("macvlan", "ipvlan"), OLD_REASON.format(version=1))
    assert list(json.loads(outputs.dumps(doc))) == list(outputs.KEYS)


def test_version_2_documents_are_still_read_with_their_own_reasons_first():
    doc = {k: v for k, v in copy.deepcopy(GOOD).items() if k != "underlay_network"}
    doc.update(schema_version=2, unsupported_networks={"overlay-encrypted": "no ESP", "ipvlan": "its own"})
    read = outputs.validate(doc)
    assert read["unsupported_networks"] == {"macvlan": OLD_REASON.format(version=2),
                                            "ipvlan": "its own", "overlay-encrypted": "no ESP"}
    assert "pulumi up" in read["unsupported_networks"]["macvlan"]


def test_node_ranges_split_the_range_in_node_order():
    assert outputs.node_ranges("10.213.0.128/25", 2) == ["10.213.0.128/26", "10.213.0.192/26"]
    assert outputs.node_ranges("10.213.0.128/25", 3) == ["10.213.0.128/27", "10.213.0.160/27",
                                                         "10.213.0.192/27"]
    assert outputs.node_ranges("192.168.99.64/27", 4)[-1] == "192.168.99.88/29"
    with pytest.raises(outputs.OutputsError, match="fewer than 8 addresses each"):
        outputs.node_ranges("192.168.99.64/27", 5)
    # Each node's block halved: macvlan the first half, ipvlan the second (one engine
    # refuses two networks with the same range).
    assert outputs.node_ranges("10.213.0.128/25", 2, "macvlan") == ["10.213.0.128/27", "10.213.0.192/27"]
    assert outputs.node_ranges("10.213.0.128/25", 2, "ipvlan") == ["10.213.0.160/27", "10.213.0.224/27"]


def test_overlay_mtu_is_the_link_less_vxlan():
    assert outputs.overlay_mtu_bytes(1500) == 1450 and outputs.overlay_mtu_bytes(9000) == 8950


def test_the_builder_writes_the_current_version_with_unsupported_networks():
    doc = outputs.document(
        stack="do", provider="digitalocean", mode="swarm",
        nodes=[outputs.node(n["name"], n["address"], "ssh://root@203.0.113.1") for n in GOOD["nodes"]],
        keystore=None, overlay_network="overlay-bench", link_rate=None, mtu_bytes=1500,
        unsupported_networks={"overlay-encrypted": "no ESP through the firewall",
                              "macvlan": "no foreign MACs", "ipvlan": "no foreign IPs"})
    assert doc["schema_version"] == outputs.SCHEMA_VERSION == 3
    assert doc["unsupported_networks"]["overlay-encrypted"] == "no ESP through the firewall"
    assert doc["underlay_network"] is None
    plain = outputs.document(stack="lab", provider="local", mode="swarm", nodes=GOOD["nodes"],
                             keystore=None, overlay_network="overlay-bench", link_rate=None,
                             mtu_bytes=1500, underlay_network=outputs.underlay(
                                 "eth0", "10.213.0.0/24", "10.213.0.128/25"))
    assert plain["unsupported_networks"] == {}
    assert plain["underlay_network"] == GOOD["underlay_network"]
    plain["unsupported_networks"]["x"] = "y"  # each document has its own mapping
    assert outputs.validate({k: v for k, v in GOOD.items() if k != "unsupported_networks"}
                            )["unsupported_networks"] == {}
