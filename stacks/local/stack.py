"""The `local` provider: Pulumi drives the lab of this machine through its command line.

One pulumi-command `local.Command`: create runs `python -m stacks.local up ...` (which
prints the outputs document on stdout), delete runs `python -m stacks.local down --name`.
An update (e.g. the project moved) runs `up` again, which finds the lab already up.

Changing nodes, mode, link rate, MTU, subnet or the lab name needs another lab: they are
`triggers`, so Pulumi replaces the resource. A replace normally creates the new one before
deleting the old; with the same lab name the old one's `down` would then remove the new
lab. `delete_before_replace` makes it down the old lab first, then bring the new one up.

The settings are checked with the lab's own rules (stacks/local/spec.py), the ones
`python -m stacks.local up` applies, before any resource exists.
"""
from __future__ import annotations

import dataclasses
import re
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stacks import config, outputs
from stacks.local import spec

if TYPE_CHECKING:
    import pulumi

PROJECT_DIR = Path(__file__).resolve().parents[2]

LAB_NAME = config.Key("labName", None, "lab name (`[a-z0-9]{1,8}`)",
                      shown="the stack name, lower-cased, letters and digits only, 8 at most")
LINK_RATE = config.Key("linkRate", None, "tc rate of each node's link, e.g. `1gbit`, `100mbit`",
                       shown="unset (unshaped)")
MTU = config.Key("mtu", 1500, f"MTU of the lab links, {spec.MTU_MIN_BYTES}-{spec.MTU_MAX_BYTES}")
SUBNET = config.Key("subnet", None, "lab subnet, /26 or larger",
                    shown=f"the lab's (`{spec.DEFAULT_SUBNET}`)")
KEYS = (LAB_NAME, LINK_RATE, MTU, SUBNET)

# LabSpec field -> (its key, an example value for the fix)
_SPEC_KEYS = {"name": (LAB_NAME, "lab1"), "nodes": (config.NODES, "2"),
              "mode": (config.MODE, "classic"), "link_rate": (LINK_RATE, "1gbit"),
              "mtu_bytes": (MTU, "1500"), "subnet": (SUBNET, spec.DEFAULT_SUBNET)}


@dataclasses.dataclass(frozen=True)
class LocalSettings:
    lab_name: str
    link_rate: str | None = None
    mtu_bytes: int = 1500
    # None: the lab's default subnet.
    subnet: str | None = None


def default_lab_name(stack: str) -> str:
    """Lab names are [a-z0-9]{1,8}; derive one from the stack name (`local` -> `local`)."""
    name = re.sub(r"[^a-z0-9]", "", stack.lower())[:8]
    return name or "lab"


def parse(raw: Mapping[str, Any], common: config.Common, context: config.Context) -> LocalSettings:
    link_rate = LINK_RATE.get(raw) or None
    settings = LocalSettings(lab_name=LAB_NAME.get(raw) or default_lab_name(common.stack),
                             link_rate=link_rate.lower() if link_rate else None,
                             mtu_bytes=config.whole_number(raw, MTU),
                             subnet=SUBNET.get(raw) or None)
    try:
        lab_spec(common, settings).check()
    except spec.SpecError as exc:
        key, example = _SPEC_KEYS[exc.field]
        raise config.ConfigError(f"config {config.NAMESPACE}:{key.name} is {exc.value!r}: "
                                 f"{exc.reason}: {config.fix(key.name, example)}") from None
    return settings


def lab_spec(common: config.Common, settings: LocalSettings) -> spec.LabSpec:
    return spec.LabSpec(settings.lab_name, common.nodes, common.mode, settings.link_rate,
                        settings.mtu_bytes, settings.subnet or spec.DEFAULT_SUBNET)


def lab_commands(common: config.Common, settings: LocalSettings,
                 python: str = sys.executable) -> tuple[list[str], list[str]]:
    """The argv of `up` and `down` for this configuration (the venv's python runs them)."""
    up = [python, "-m", "stacks.local", "up", "--name", settings.lab_name,
          "--nodes", str(common.nodes), "--mode", common.mode, "--mtu", str(settings.mtu_bytes)]
    if settings.link_rate:
        up += ["--link-rate", settings.link_rate]
    if settings.subnet:
        up += ["--subnet", settings.subnet]
    down = [python, "-m", "stacks.local", "down", "--name", settings.lab_name]
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


def declare(common: config.Common, settings: LocalSettings) -> pulumi.Output[dict]:
    """The lab as one command; its stdout is the document the lab built (Lab.outputs)."""
    import pulumi
    from pulumi_command import local

    up, down = lab_commands(common, settings)
    lab = local.Command(
        "lab",
        create=shlex.join(up),
        delete=shlex.join(down),
        dir=str(PROJECT_DIR),
        # Anything that makes it another lab; the python path and dir are not in here.
        triggers=[settings.lab_name, common.nodes, common.mode, settings.link_rate or "",
                  settings.mtu_bytes, settings.subnet or ""],
        opts=pulumi.ResourceOptions(delete_before_replace=True),
    )
    return lab.stdout.apply(parse_lab_outputs)
