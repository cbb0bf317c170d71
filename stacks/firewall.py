"""What may reach a cluster's machines from outside, declared once.

The DigitalOcean firewall (stacks/digitalocean.py) and the lab's `--firewall` (iptables in
each node's namespace, stacks/local/lab.py) are both made from `inbound(...)`, so the lab
tests the very rules a droplet gets. Everything not listed is dropped.

Two kinds of source:
- OPERATOR: where the person running Pulumi and bench comes from (DigitalOcean:
  `sshAllowedCidrs`; the lab: its management subnet). SSH only.
- CLUSTER: the cluster's own machines on the private network (DigitalOcean: droplets with
  the stack's tag; the lab: the lab subnet). Cluster ports and bench's ports.

Ports are ranges: a DigitalOcean firewall takes at most MAX_RULES rules, and bench's
servers rotate over bench.ports.OPEN. Only tcp, udp and icmp: what a cloud firewall takes.
Standard library only (the Pulumi program and the lab import it).
"""
from __future__ import annotations

import dataclasses

from bench import ports

OPERATOR = "operator"
CLUSTER = "cluster"
# A DigitalOcean firewall's limit on inbound plus outbound rules.
MAX_RULES = 50

SSH_PORT = 22
SWARM_MANAGEMENT_PORT = 2377
GOSSIP_PORT = 7946
VXLAN_PORT = 4789


@dataclasses.dataclass(frozen=True)
class Rule:
    """Inbound traffic that is let in: a protocol, a port range (None for icmp), a source."""

    protocol: str  # tcp, udp or icmp
    ports: tuple[int, int] | None
    source: str  # OPERATOR or CLUSTER
    why: str

    @property
    def port_range(self) -> str | None:
        """As a cloud firewall writes it: `22`, `5201-5700`; None for icmp."""
        if self.ports is None:
            return None
        first, last = self.ports
        return str(first) if first == last else f"{first}-{last}"

    def opens(self, protocol: str, port: int, source: str) -> bool:
        return (self.protocol, self.source) == (protocol, source) and self.ports is not None \
            and self.ports[0] <= port <= self.ports[1]


def _one(port: int) -> tuple[int, int]:
    return port, port


def inbound(mode: str, keystore_port: int | None = None) -> tuple[Rule, ...]:
    """The inbound rules of every machine of a cluster in `mode` (classic or swarm);
    `keystore_port`: the key-value store's client port (classic mode)."""
    rules = [Rule("tcp", _one(SSH_PORT), OPERATOR, "SSH: Pulumi's commands and bench's engines (ssh://)")]
    if mode == "swarm":
        rules.append(Rule("tcp", _one(SWARM_MANAGEMENT_PORT), CLUSTER, "swarm management"))
    elif keystore_port is not None:
        rules.append(Rule("tcp", _one(keystore_port), CLUSTER, "the key-value store's clients (the engines)"))
    rules += [
        Rule("tcp", _one(GOSSIP_PORT), CLUSTER, "gossip (serf)"),
        Rule("udp", _one(GOSSIP_PORT), CLUSTER, "gossip (serf)"),
        Rule("udp", _one(VXLAN_PORT), CLUSTER, "overlay data (VXLAN)"),
        Rule("tcp", ports.OPEN, CLUSTER, "bench's servers (host and bridge networks)"),
        Rule("udp", ports.OPEN, CLUSTER, "bench's servers (host and bridge networks)"),
        Rule("icmp", None, CLUSTER, "ping, and path MTU discovery"),
    ]
    return tuple(rules)

