"""Names and subnets for the labs tests and benchmarks make, unique per call.

Lab names are part of interface and namespace names (`[a-z0-9]{1,8}`): a short prefix that
says which test made it, then random characters, so that two test runs on one machine (or
the leftovers of a crashed one) never collide.
"""
from __future__ import annotations

import ipaddress
import json
import secrets
import string
import subprocess

_ALPHABET = string.ascii_lowercase + string.digits


def lab_name(prefix: str) -> str:
    """`prefix` (1-4 letters) and random characters up to the 8 a lab name may have."""
    if not (1 <= len(prefix) <= 4 and prefix.isalnum() and prefix.islower()):
        raise ValueError(f"lab name prefix {prefix!r}: 1-4 lower-case letters or digits")
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(8 - len(prefix)))


def _root_networks() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-j", "-4", "addr", "show"], capture_output=True, text=True).stdout
    nets = []
    for link in json.loads(out or "[]"):
        for addr in link.get("addr_info", []):
            nets.append(ipaddress.IPv4Network(f"{addr['local']}/{addr['prefixlen']}", strict=False))
    return nets


def subnet() -> str:
    """A random /24 in 10.200.0.0/13 that no address of the root namespace overlaps."""
    taken = _root_networks()
    for _ in range(100):
        net = ipaddress.IPv4Network(f"10.{secrets.choice(range(200, 208))}.{secrets.randbelow(256)}.0/24")
        if not any(net.overlaps(t) for t in taken):
            return str(net)
    raise RuntimeError("no free /24 in 10.200.0.0/13 on this machine")


def subnets(count: int) -> list[str]:
    """`count` different subnets as subnet() gives them (a lab's and its management's)."""
    chosen: list[str] = []
    while len(chosen) < count:
        net = subnet()
        if net not in chosen:
            chosen.append(net)
    return chosen
