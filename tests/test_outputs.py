"""The stack outputs contract: what it accepts and the one-line errors it gives."""
from __future__ import annotations

import copy
import json

import pytest

from stacks import outputs

GOOD = {
    "schema_version": 2, "stack": "lab", "provider": "local", "mode": "swarm",
    "nodes": [
        {"name": "lab-node1", "role": "manager", "address": "10.213.0.11",
         "docker_host": "unix:///run/overlay-bench/lab/n1/docker.sock", "tls_cert_path": None, "ssh_key_path": None},
        {"name": "lab-node2", "role": "worker", "address": "10.213.0.12",
         "docker_host": "unix:///run/overlay-bench/lab/n2/docker.sock", "tls_cert_path": None, "ssh_key_path": None},
    ],
    "keystore": None, "overlay_network": "overlay-bench", "link_rate": None, "mtu_bytes": 1500,
    "unsupported_networks": {},
}


def test_valid_document_round_trips_in_contract_order():
    text = outputs.dumps(GOOD)
    assert list(json.loads(text)) == list(outputs.KEYS)
    assert outputs.loads(text) == GOOD


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("nodes"), "'nodes' is a required property"),
    (lambda d: d.update(schema_version=3), "schema_version 3; this overlay-bench reads versions 1, 2"),
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
    with pytest.raises(outputs.OutputsError, match=message.replace("(", r"\(")):
        outputs.validate(doc)


def test_not_json_says_what_to_pass():
    with pytest.raises(outputs.OutputsError, match="pulumi stack output --json"):
        outputs.loads("{nope", source="outputs.json")


def test_pulumi_dropped_nulls_read_as_null():
    # Pulumi never exports a top-level null: `pulumi stack output --json` omits those keys.
    doc = {k: v for k, v in GOOD.items() if k not in ("keystore", "link_rate")}
    assert outputs.validate(doc) == GOOD


def test_version_1_documents_are_still_read():
    """A version 1 document (before unsupported_networks) reads as one with none."""
    doc = {k: v for k, v in copy.deepcopy(GOOD).items() if k != "unsupported_networks"}
    doc["schema_version"] = 1
    read = outputs.validate(doc)
    assert read["unsupported_networks"] == {} and read["schema_version"] == 1
    assert list(json.loads(outputs.dumps(doc))) == list(outputs.KEYS)


def test_the_builder_writes_the_current_version_with_unsupported_networks():
    doc = outputs.document(
        stack="do", provider="digitalocean", mode="swarm",
        nodes=[outputs.node(n["name"], n["address"], "ssh://root@203.0.113.1") for n in GOOD["nodes"]],
        keystore=None, overlay_network="overlay-bench", link_rate=None, mtu_bytes=1500,
        unsupported_networks={"overlay-encrypted": "no ESP through the firewall"})
    assert doc["schema_version"] == outputs.SCHEMA_VERSION == 2
    assert doc["unsupported_networks"] == {"overlay-encrypted": "no ESP through the firewall"}
    plain = outputs.document(stack="lab", provider="local", mode="swarm", nodes=GOOD["nodes"],
                             keystore=None, overlay_network="overlay-bench", link_rate=None,
                             mtu_bytes=1500)
    assert plain["unsupported_networks"] == {}
    plain["unsupported_networks"]["x"] = "y"  # each document has its own mapping
    assert outputs.validate({k: v for k, v in GOOD.items() if k != "unsupported_networks"}
                            )["unsupported_networks"] == {}
