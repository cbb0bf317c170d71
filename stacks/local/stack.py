"""The `local` stack: Pulumi drives the lab of this machine through its command line.

One pulumi-command `local.Command`: create runs `python -m stacks.local up ...` (which
prints the outputs document on stdout), delete runs `python -m stacks.local down --name`.
An update (e.g. the project moved) runs `up` again, which finds the lab already up.

Changing nodes, mode, link rate, MTU, subnet or the lab name needs another lab: they are
`triggers`, so Pulumi replaces the resource. A replace normally creates the new one before
deleting the old; with the same lab name the old one's `down` would then remove the new
lab. `delete_before_replace` makes it down the old lab first, then bring the new one up.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pulumi
from pulumi_command import local

from stacks import outputs
from stacks.config import StackConfig

PROJECT_DIR = Path(__file__).resolve().parents[2]


def lab_commands(cfg: StackConfig, python: str = sys.executable) -> tuple[list[str], list[str]]:
    """The argv of `up` and `down` for this configuration (the venv's python runs them)."""
    up = [python, "-m", "stacks.local", "up", "--name", cfg.lab_name,
          "--nodes", str(cfg.nodes), "--mode", cfg.mode, "--mtu", str(cfg.mtu_bytes)]
    if cfg.link_rate:
        up += ["--link-rate", cfg.link_rate]
    if cfg.subnet:
        up += ["--subnet", cfg.subnet]
    down = [python, "-m", "stacks.local", "down", "--name", cfg.lab_name]
    return up, down


def parse_lab_outputs(stdout: str) -> dict:
    """The lab's `up` prints exactly one JSON document on stdout; validate it."""
    source = "`python -m stacks.local up` output"
    try:
        return outputs.loads(stdout, source=source)
    except outputs.OutputsError as exc:
        if str(exc).startswith(source):
            raise
        raise outputs.OutputsError(f"{source} breaks the outputs contract: {exc}") from None


def declare(cfg: StackConfig) -> dict:
    up, down = lab_commands(cfg)
    lab = local.Command(
        "lab",
        create=shlex.join(up),
        delete=shlex.join(down),
        dir=str(PROJECT_DIR),
        # Anything that makes it another lab; the python path and dir are not in here.
        triggers=[cfg.lab_name, cfg.nodes, cfg.mode, cfg.link_rate or "", cfg.mtu_bytes,
                  cfg.subnet or ""],
        opts=pulumi.ResourceOptions(delete_before_replace=True),
    )
    document = lab.stdout.apply(parse_lab_outputs)
    return {key: document.apply(lambda doc, key=key: doc[key]) for key in outputs.KEYS}
