"""The ports bench's servers listen on: decided here and nowhere else.

Bench's runner picks each server's port with `server_port`; the firewalls of the stacks
(the DigitalOcean firewall, the lab's `--firewall`) open `OPEN`, tcp and udp, between the
cluster's machines (stacks/firewall.py reads it). A `--port-base` whose ports leave `OPEN`
is refused, so bench can never pick a port that a stack's firewall drops.

Standard library only: the Pulumi program imports this module.
"""
from __future__ import annotations

# Consecutive ports the runs of a session rotate over, so that a socket lingering from one
# run never collides with the next run's server.
ROTATION = 50
# iperf3's own default port.
DEFAULT_BASE = 5201
# First and last port every stack's firewall opens between its machines (tcp and udp).
OPEN = (5201, 5300)
# The --port-base values whose rotation stays inside OPEN.
BASES = (OPEN[0], OPEN[1] - ROTATION + 1)


def server_port(base: int, index: int) -> int:
    """The port of the `index`-th server (0, 1, ...) started from `base`."""
    return base + index % ROTATION


def used(base: int) -> tuple[int, int]:
    """First and last port the servers started from `base` may use."""
    return base, base + ROTATION - 1


def base_problem(base: int) -> str | None:
    """Why `base` cannot be a --port-base (one line saying what to choose), or None."""
    first, last = used(base)
    if BASES[0] <= base <= BASES[1]:
        return None
    return (f"--port-base {base}: the servers would use ports {first}-{last}, but the stacks' "
            f"firewalls open {OPEN[0]}-{OPEN[1]} only: choose a base from {BASES[0]} to {BASES[1]}")
