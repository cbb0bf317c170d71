"""The ports bench's servers listen on: decided here and nowhere else.

A session starts one server per case (network, tool, protocol, node pair), which serves
every run of that case; the `index`-th server listens on `server_port(base, index)`. The
firewalls of the stacks (the DigitalOcean firewall, the lab's `--firewall`) open `OPEN`, tcp
and udp, between the cluster's machines (stacks/firewall.py reads it). A `--port-base`
outside `OPEN`, or a plan whose servers would run past its end, is refused, so bench can
never pick a port that a stack's firewall drops.

Standard library only: the Pulumi program imports this module.
"""
from __future__ import annotations

# iperf3's own default port.
DEFAULT_BASE = 5201
# First and last port every stack's firewall opens between its machines (tcp and udp).
OPEN = (5201, 5700)


def server_port(base: int, index: int) -> int:
    """The port of the session's `index`-th server (0, 1, ...) started from `base`."""
    return base + index


def base_problem(base: int) -> str | None:
    """Why `base` cannot be a --port-base (one line saying what to choose), or None."""
    if OPEN[0] <= base <= OPEN[1]:
        return None
    return (f"--port-base {base}: the stacks' firewalls open ports {OPEN[0]}-{OPEN[1]} only: "
            f"choose a base from {OPEN[0]} to {OPEN[1]}")


def servers_problem(base: int, servers: int) -> str | None:
    """Why `servers` servers from `base` do not fit inside OPEN (one line), or None."""
    last = server_port(base, servers - 1)
    if last <= OPEN[1]:
        return None
    fits = OPEN[1] - servers + 1
    choice = (f"give a --port-base of at most {fits} or fewer cases" if fits >= OPEN[0]
              else f"run fewer cases (at most {OPEN[1] - OPEN[0] + 1} servers)")
    return (f"--port-base {base}: the plan needs {servers} server ports (one per network, tool, protocol and "
            f"node pair), up to {last}, but the stacks' firewalls open {OPEN[0]}-{OPEN[1]} only: {choice}")
