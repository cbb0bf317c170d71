"""The measuring tools, one module each behind bench/tools/base.py's Tool, and their registry.

The plan, the runner, the image, the node facts and scripts/setup.sh loop over REGISTRY;
docs/extending.md says how to add a tool. Standard library only (see base.py).
"""
from __future__ import annotations

from bench.tools import iperf2, iperf3, sockperf
from bench.tools.base import Measurement, Tool, ToolFailure, strip_ansi

__all__ = ["Measurement", "REGISTRY", "Tool", "ToolFailure", "get", "strip_ansi"]

# In results_format.TOOLS order.
REGISTRY: dict[str, Tool] = {tool.name: tool for tool in (iperf2.TOOL, iperf3.TOOL, sockperf.TOOL)}

# The harness's own probes (is an overlay address reachable yet; does the encrypted overlay
# carry traffic) use iperf3, which every bench image holds whatever the plan measures.
PROBE_TOOL = iperf3.TOOL.name
connect_probe_argv = iperf3.connect_probe_argv


def get(name: str) -> Tool:
    return REGISTRY[name]


def binaries() -> list[str]:
    """Every tool's binaries, for the bench image."""
    return [path for tool in REGISTRY.values() for path in tool.binaries]


def apt_packages() -> dict[str, str]:
    """Debian package -> a command it provides (scripts/setup.sh checks the command first)."""
    return {tool.package: tool.binaries[0].rsplit("/", 1)[-1] for tool in REGISTRY.values()}


def versions_command() -> str:
    """One shell command that prints every tool's version."""
    return "; ".join(tool.version_command for tool in REGISTRY.values())


def versions(text: str) -> dict[str, str]:
    """Each tool's version from the output of versions_command() (tools not found left out)."""
    found = {name: tool.parse_version(text) for name, tool in REGISTRY.items()}
    return {name: version for name, version in found.items() if version}
