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
"""
from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema

from common.errors import UsageError
from stacks import providers

SCHEMA_VERSION = 2
# The versions this code reads; `validate` brings an older one to the current keys.
READABLE_VERSIONS = (1, 2)

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
)

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
    },
}

_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())


class OutputsError(UsageError, ValueError):
    """Stack outputs that do not follow the contract; the message says what to fix."""


# Keys whose value may be null. Pulumi drops a top-level output whose value is None, so
# `pulumi stack output --json` omits them; readers put them back (see `validate`).
NULLABLE_KEYS = ("keystore", "link_rate")
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
    return outputs


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
             mtu_bytes: int, unsupported_networks: dict[str, str] | None = None) -> dict[str, Any]:
    """The outputs document, validated. The first of `nodes` is the manager (swarm manager
    or classic Swarm master), the others are workers. `unsupported_networks` names the
    network kinds that cannot work on this stack, with the reason."""
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
