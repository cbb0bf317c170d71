"""What a lab is asked to be, and the lab's limits: checked here only.

No engine or host tool is touched (no docker import), so the Pulumi program's
configuration (`overlay-bench:labName`, `linkRate`, `mtu`, `subnet`) and
`python -m stacks.local up` run the same checks. A failed check is a SpecError naming the
field; its message is worded for the command line (`--mtu 100: ...`), and
`SpecError.reason` is the part without the flag, which the configuration words for its key.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import Any

from common.errors import UserError
from stacks.outputs import MODES

DEFAULT_SUBNET = "10.213.0.0/24"
# The management network of --access ssh: the root namespace's side of the nodes' "public"
# interfaces (its own subnet, as a droplet's public address is apart from its VPC's).
DEFAULT_MANAGEMENT_SUBNET = "10.214.0.0/24"
ACCESS = ("unix", "ssh")
NAME_RE = re.compile(r"[a-z0-9]{1,8}")  # fits interface names: "ob-" + name + "-kv" <= 15; fullmatch it
MIN_NODES, MAX_NODES = 2, 50
MTU_MIN_BYTES, MTU_MAX_BYTES = 1280, 9000
MIN_SUBNET_ADDRESSES = 64  # a /26: keystore, nodes from .11, room for 50 nodes
# tc shapes nothing slower in practice; a typo such as `999bit` for `999mbit` is caught here.
MIN_LINK_RATE_BITS_PER_S = 1000

# field of LabSpec -> the option of `python -m stacks.local up` that sets it
FLAGS = {"name": "--name", "nodes": "--nodes", "mode": "--mode", "link_rate": "--link-rate",
         "mtu_bytes": "--mtu", "subnet": "--subnet", "access": "--access", "firewall": "--firewall",
         "bare": "--bare", "management_subnet": "--management-subnet"}


class LabError(UserError):
    """Something the user can fix; the message is one line saying what to do."""


class SpecError(LabError):
    """A LabSpec field out of the lab's limits."""

    def __init__(self, field: str, value: Any, reason: str):
        super().__init__(f"{FLAGS[field]} {value!r}: {reason}")
        self.field, self.value, self.reason = field, value, reason


@dataclasses.dataclass(frozen=True)
class LabSpec:
    name: str
    nodes: int = 2
    mode: str = "classic"
    link_rate: str | None = None
    mtu_bytes: int = 1500
    subnet: str = DEFAULT_SUBNET
    # unix: engines reached on their unix sockets; ssh: as droplets are, over SSH to each
    # node's management address (sshd in its namespace).
    access: str = "unix"
    # Inbound rules of stacks/firewall.py, with iptables in each node's namespace.
    firewall: bool = False
    # Machines only: engines (and classic mode's key-value store), no swarm, no overlay.
    bare: bool = False
    management_subnet: str = DEFAULT_MANAGEMENT_SUBNET

    def check(self) -> None:
        """Raise SpecError for the first field out of the lab's limits."""
        if not NAME_RE.fullmatch(self.name):
            raise SpecError("name", self.name, "use 1-8 lowercase letters or digits (it is part "
                            "of interface names, which are limited to 15 characters)")
        if self.nodes < MIN_NODES:
            raise SpecError("nodes", self.nodes,
                            f"a multi-host network needs at least {MIN_NODES} nodes")
        if self.nodes > MAX_NODES:
            raise SpecError("nodes", self.nodes,
                            f"at most {MAX_NODES} nodes fit the lab subnet plan")
        if self.mode not in MODES:
            raise SpecError("mode", self.mode, f"use {' or '.join(MODES)}")
        if not MTU_MIN_BYTES <= self.mtu_bytes <= MTU_MAX_BYTES:
            raise SpecError("mtu_bytes", self.mtu_bytes, f"choose an MTU between {MTU_MIN_BYTES} "
                            f"and {MTU_MAX_BYTES} bytes")
        if self.link_rate is not None:
            rate_bits_per_s(self.link_rate)
        if self.network.num_addresses < MIN_SUBNET_ADDRESSES:
            raise SpecError("subnet", self.subnet, "use a /26 or larger")
        if self.access not in ACCESS:
            raise SpecError("access", self.access, f"use {' or '.join(ACCESS)}")
        if self.access == "ssh":
            management = self.management_network
            if management.num_addresses < MIN_SUBNET_ADDRESSES:
                raise SpecError("management_subnet", self.management_subnet, "use a /26 or larger")
            if management.overlaps(self.network):
                raise SpecError("management_subnet", self.management_subnet,
                                f"it overlaps the lab subnet {self.subnet}: choose another")

    @property
    def network(self) -> ipaddress.IPv4Network:
        return _network("subnet", self.subnet, DEFAULT_SUBNET)

    @property
    def management_network(self) -> ipaddress.IPv4Network:
        return _network("management_subnet", self.management_subnet, DEFAULT_MANAGEMENT_SUBNET)


def _network(field: str, value: str, example: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(value)
    except ValueError as exc:
        raise SpecError(field, value, f"not an IPv4 network ({exc}): use for example {example}") from None


_RATE_UNITS = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9, "tbit": 10**12}


def rate_bits_per_s(rate: str) -> int:
    """Parse tc's rate syntax (e.g. 1gbit, 500mbit) into bit/s."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?bit)\s*", rate.lower())
    if not match or float(match.group(1)) <= 0:
        raise SpecError("link_rate", rate, "not a rate above zero: use tc units such as 1gbit "
                        "or 500mbit")
    bits_per_s = int(float(match.group(1)) * _RATE_UNITS[match.group(2)])
    if bits_per_s < MIN_LINK_RATE_BITS_PER_S:
        raise SpecError("link_rate", rate, "below 1kbit, the slowest rate the lab shapes: use "
                        "for example 1mbit or 1gbit")
    return bits_per_s
