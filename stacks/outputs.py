"""The stack outputs contract: the one document every stack exports, and its one builder.

`python -m stacks.local up|status` prints it, `pulumi stack output --json` prints it for
every provider, and `python -m bench` depends on nothing else. Defined once, here; every
provider makes it with `document(...)` and `node(...)`, which validate what they build.

The builder takes plain values, never Pulumi Outputs: this module imports nothing from
Pulumi (bench imports it), and only a whole document can be checked (one manager, unique
names). A provider whose values are Outputs gathers them with one
`pulumi.Output.all(...).apply(...)` and calls the builder inside it.

Version history of SCHEMA_VERSION:
  1  first version (provider, mode, nodes, keystore, overlay_network, link_rate, mtu_bytes)
  2  unsupported_networks: {network kind: reason} the stack knows cannot work on it (the
     encrypted overlay on DigitalOcean, whose firewalls pass no ESP); bench skips those
     cases up front with the reason. Version 1 documents are still read (as if it were {}).
  3  underlay_network: where macvlan and ipvlan containers get their addresses (the nodes'
     cluster interface, its subnet, a range of it no machine uses), or null with both
     networks in unsupported_networks. Versions 1 and 2 are still read: as null, with
     macvlan and ipvlan unsupported for want of a range (UNDERLAY_MISSING).
"""
from __future__ import annotations

import copy
import ipaddress
import json
from typing import Any

import jsonschema

from common.errors import UsageError
from stacks import providers

SCHEMA_VERSION = 3
# The versions this code reads; `validate` brings an older one to the current keys.
READABLE_VERSIONS = (1, 2, 3)

PROVIDERS = providers.NAMES
MODES = ("classic", "swarm")
ROLES = ("manager", "worker")

# Top-level keys, in the order they are exported by Pulumi and printed by the lab.
KEYS = (
    "schema_version",
    "stack",
    "provider",
    "mode",
    "nodes",
    "keystore",
    "overlay_network",
    "link_rate",
    "mtu_bytes",
    "unsupported_networks",
    "underlay_network",
)

# VXLAN's bytes per packet (outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14): every
# stack creates its overlay so that containers get MTU = link MTU - this, the largest that
# fits the link unfragmented. Docker's own default is 1450, whatever the link (moby/moby#37855).
VXLAN_OVERHEAD_BYTES = 50
# The overlay driver's MTU option (`docker network create -o`). Its value is the MTU of the
# link under the overlay: the driver gives containers VXLAN_OVERHEAD_BYTES less (libnetwork's
# overlay driver, maxMTU; seen on Docker 20.10: 9000 gives containers 8950). Unset it is
# 1500, hence 1450 inside whatever the link.
OVERLAY_MTU_OPTION = "com.docker.network.driver.mtu"
# The networks that take their addresses from underlay_network.
UNDERLAY_NETWORKS = ("macvlan", "ipvlan")
# Why they are skipped on a stack whose outputs predate underlay_network (version 1 or 2).
UNDERLAY_MISSING = ("the stack's outputs (schema version {version}) declare no address range for "
                    "macvlan and ipvlan containers: update the stack (pulumi up, or "
                    "`python -m stacks.local up` again) to get one")
# Each node gets one equal block of address_range, halved between macvlan and ipvlan; a
# block smaller than this is refused (per network: a server or client container, and the
# previous run's while it is removed).
MIN_ADDRESSES_PER_NODE = 8


def overlay_mtu_bytes(link_mtu_bytes: int) -> int:
    """The overlay MTU that fits a link of `link_mtu_bytes` (VXLAN_OVERHEAD_BYTES less)."""
    return link_mtu_bytes - VXLAN_OVERHEAD_BYTES

_NODE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "role", "address", "docker_host", "tls_cert_path", "ssh_key_path"],
    "properties": {
        # The engine's name (hostname), unique in the cluster.
        "name": {"type": "string", "minLength": 1},
        # manager: swarm-mode manager or classic Swarm master; worker: the others.
        "role": {"enum": list(ROLES)},
        # The node's address on the cluster network: what host-network servers bind to.
        "address": {"type": "string", "format": "ipv4"},
        # How the docker SDK reaches the engine: unix://, ssh:// or tcp:// (always with TLS).
        "docker_host": {"type": "string", "pattern": "^(unix|ssh|tcp)://"},
        # Directory with ca.pem, cert.pem, key.pem for tcp:// engines, else null.
        "tls_cert_path": {"type": ["string", "null"]},
        # Private key file for ssh:// engines, else null. A path, never the key itself.
        "ssh_key_path": {"type": ["string", "null"]},
    },
}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "overlay-bench stack outputs",
    "type": "object",
    "additionalProperties": False,
    "required": list(KEYS),
    "properties": {
        "schema_version": {"enum": list(READABLE_VERSIONS)},
        # The lab or Pulumi stack name, used in labels and result metadata.
        "stack": {"type": "string", "minLength": 1},
        "provider": {"enum": list(PROVIDERS)},
        # classic: engines with --cluster-store on a key-value node (2015); swarm: swarm mode.
        "mode": {"enum": list(MODES)},
        "nodes": {"type": "array", "minItems": 2, "items": _NODE},
        # The key-value node of classic mode (null in swarm mode).
        "keystore": {
            "oneOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name", "address", "url"],
                    "properties": {
                        "name": {"type": "string"},
                        "address": {"type": "string", "format": "ipv4"},
                        # What engines get as --cluster-store: consul://IP:8500 or etcd://IP:2379.
                        "url": {"type": "string", "pattern": "^(consul|etcd)://"},
                    },
                },
            ]
        },
        # Name of the multi-host overlay network the stack created.
        "overlay_network": {"type": "string", "minLength": 1},
        # tc shaping of each node's link, e.g. "1gbit", or null when unshaped / not ours.
        "link_rate": {"type": ["string", "null"]},
        # MTU of the nodes' link on the cluster network.
        "mtu_bytes": {"type": "integer", "minimum": 576, "maximum": 65535},
        # Network kinds (bench's `--networks` names) that cannot work on this stack, each
        # with the reason bench reports when it skips them. {} when there is none.
        "unsupported_networks": {
            "type": "object",
            "propertyNames": {"pattern": "^[a-z][a-z0-9-]*$"},
            "additionalProperties": {"type": "string", "minLength": 1},
        },
        # Where macvlan and ipvlan containers get their addresses, or null when the stack
        # cannot offer them (both are then in unsupported_networks, with the reason).
        "underlay_network": {
            "oneOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["parent_interface", "subnet", "address_range"],
                    "properties": {
                        # Each node's interface on the cluster network (the networks' parent).
                        "parent_interface": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,15}$"},
                        # The cluster network's subnet (CIDR), which the nodes' addresses are in.
                        "subnet": {"type": "string", "minLength": 1},
                        # A CIDR inside subnet that no machine uses; bench gives each node one
                        # equal block of it, in node order (node_ranges).
                        "address_range": {"type": "string", "minLength": 1},
                    },
                },
            ]
        },
    },
}

_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())


class OutputsError(UsageError, ValueError):
    """Stack outputs that do not follow the contract; the message says what to fix."""


# Keys whose value may be null. Pulumi drops a top-level output whose value is None, so
# `pulumi stack output --json` omits them; readers put them back (see `validate`).
NULLABLE_KEYS = ("keystore", "link_rate", "underlay_network")
# Keys a document may lack, with the value that stands for them: added after version 1.
DEFAULTS: dict[str, Any] = {"unsupported_networks": {}}


def validate(outputs: Any) -> dict[str, Any]:
    """Return `outputs` if it follows the schema, else raise OutputsError naming the key.

    A nullable key that is absent (Pulumi never exports a top-level null) reads as null; a
    key of DEFAULTS that is absent (a version 1 document) reads as its default.
    """
    if isinstance(outputs, dict):
        outputs = {**{k: None for k in NULLABLE_KEYS}, **copy.deepcopy(DEFAULTS), **outputs}
    if isinstance(outputs, dict) and outputs.get("schema_version") not in (None, *READABLE_VERSIONS):
        raise OutputsError(
            f"stack outputs have schema_version {outputs.get('schema_version')!r}; this "
            f"overlay-bench reads versions {', '.join(map(str, READABLE_VERSIONS))}: update one "
            f"or the other"
        )
    errors = sorted(_VALIDATOR.iter_errors(outputs), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise OutputsError(f"stack outputs invalid at {where}: {err.message}")
    roles = [n["role"] for n in outputs["nodes"]]
    if roles.count("manager") != 1:
        raise OutputsError("stack outputs invalid at nodes: exactly one node must be the manager")
    names = [n["name"] for n in outputs["nodes"]]
    if len(set(names)) != len(names):
        raise OutputsError("stack outputs invalid at nodes: node names must be unique")
    if outputs["schema_version"] in (1, 2):
        reason = UNDERLAY_MISSING.format(version=outputs["schema_version"])
        outputs["unsupported_networks"] = {**{n: reason for n in UNDERLAY_NETWORKS},
                                           **outputs["unsupported_networks"]}
    _check_underlay(outputs)
    return outputs


def _check_underlay(outputs: dict[str, Any]) -> None:
    """A range inside the subnet, clear of every node, big enough for each node's block; or
    null with macvlan and ipvlan said to be unsupported."""
    underlay = outputs["underlay_network"]
    if underlay is None:
        missing = [n for n in UNDERLAY_NETWORKS if n not in outputs["unsupported_networks"]]
        if missing:
            raise OutputsError(f"stack outputs invalid at underlay_network: null, yet "
                               f"{' and '.join(missing)} not in unsupported_networks (declare an "
                               f"address range, or say why the stack cannot offer them)")
        return
    where = "stack outputs invalid at underlay_network"
    try:
        subnet = ipaddress.IPv4Network(underlay["subnet"])
        span = ipaddress.IPv4Network(underlay["address_range"])
    except ValueError as exc:
        raise OutputsError(f"{where}: {exc}") from None
    if not span.subnet_of(subnet):
        raise OutputsError(f"{where}: address_range {span} is not inside subnet {subnet}")
    for node in outputs["nodes"]:
        address = ipaddress.IPv4Address(node["address"])
        if address not in subnet:
            raise OutputsError(f"{where}: node {node['name']} ({address}) is not in subnet {subnet}")
        if address in span:
            raise OutputsError(f"{where}: address_range {span} holds node {node['name']} ({address})")
    node_ranges(underlay["address_range"], len(outputs["nodes"]))


def node_ranges(address_range: str, nodes: int, network: str | None = None) -> list[str]:
    """address_range cut into `nodes` equal blocks (powers of two), the first for the first
    node: each node's engine hands out addresses of its own block only, so two engines never
    give out the same address. With `network`, each block's half for it: macvlan the first,
    ipvlan the second (an engine refuses two networks with one range: "Pool overlaps")."""
    span = ipaddress.IPv4Network(address_range)
    bits = max(0, (nodes - 1).bit_length())
    if span.num_addresses >> bits < MIN_ADDRESSES_PER_NODE:
        raise OutputsError(f"stack outputs invalid at underlay_network: address_range {span} gives "
                           f"{nodes} nodes fewer than {MIN_ADDRESSES_PER_NODE} addresses each: "
                           f"declare a larger range")
    blocks = list(span.subnets(prefixlen_diff=bits))[:nodes]
    if network is None:
        return [str(block) for block in blocks]
    half = UNDERLAY_NETWORKS.index(network)
    return [str(list(block.subnets(prefixlen_diff=1))[half]) for block in blocks]


def underlay(parent_interface: str, subnet: str, address_range: str) -> dict[str, str]:
    """underlay_network's value: where macvlan and ipvlan containers get their addresses."""
    return {"parent_interface": parent_interface, "subnet": subnet, "address_range": address_range}


def node(name: str, address: str, docker_host: str, tls_cert_path: str | None = None,
         ssh_key_path: str | None = None) -> dict[str, Any]:
    """One engine of the cluster; its role comes from its place in `document(nodes=...)`."""
    return {"name": name, "address": address, "docker_host": docker_host,
            "tls_cert_path": tls_cert_path, "ssh_key_path": ssh_key_path}


def keystore(name: str, address: str, url: str) -> dict[str, Any]:
    """The key-value node of classic mode."""
    return {"name": name, "address": address, "url": url}


def document(*, stack: str, provider: str, mode: str, nodes: list[dict[str, Any]],
             keystore: dict[str, Any] | None, overlay_network: str, link_rate: str | None,
             mtu_bytes: int, unsupported_networks: dict[str, str] | None = None,
             underlay_network: dict[str, str] | None = None) -> dict[str, Any]:
    """The outputs document, validated. The first of `nodes` is the manager (swarm manager
    or classic Swarm master), the others are workers. `unsupported_networks` names the
    network kinds that cannot work on this stack, with the reason; `underlay_network`
    (underlay()) is where macvlan and ipvlan get addresses, None when both are unsupported."""
    doc = {
        "schema_version": SCHEMA_VERSION,
        "stack": stack,
        "provider": provider,
        "mode": mode,
        "nodes": [{"name": n["name"], "role": "manager" if i == 0 else "worker",
                   **{k: v for k, v in n.items() if k != "name"}} for i, n in enumerate(nodes)],
        "keystore": keystore,
        "overlay_network": overlay_network,
        "link_rate": link_rate,
        "mtu_bytes": mtu_bytes,
        "unsupported_networks": dict(unsupported_networks or {}),
        "underlay_network": underlay_network,
    }
    return validate(doc)


def loads(text: str, source: str = "stack outputs") -> dict[str, Any]:
    """Parse and validate a JSON document; errors name the source."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OutputsError(f"{source} is not JSON ({exc}): pass the output of "
                           "`pulumi stack output --json`") from None
    return validate(doc)


def dumps(outputs: dict[str, Any]) -> str:
    """The canonical JSON text: keys in contract order, two-space indent."""
    outputs = validate(outputs)
    return json.dumps({k: outputs[k] for k in KEYS}, indent=2)
