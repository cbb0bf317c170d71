"""The Pulumi resource plugins the cloud stacks need, at the versions requirements.txt pins.

A provider's Python SDK asks the engine for its plugin at the SDK's own version
(pulumi-digitalocean 4.84.1 asks for resource plugin digitalocean v4.84.1). Nothing
downloads it here: scripts/pulumi-env.sh turns automatic plugin acquisition off, so that the
local stack and offline CI never reach out. `make cloud-setup` (scripts/setup-cloud.sh)
installs each cloud plugin once, explicitly, on a machine with internet:

    python -m stacks.plugins            # print the commands
    python -m stacks.plugins --install  # run them (`pulumi plugin install ...`)

The local and virtualbox stacks need only the command plugin, which scripts/setup-pulumi.sh
installs.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from common.errors import UsageError

REQUIREMENTS = Path(__file__).resolve().parents[1] / "requirements.txt"
# Resource plugin -> the PyPI package (the SDK) whose version it must match.
CLOUD_PLUGINS = {"digitalocean": "pulumi-digitalocean"}


class PluginError(UsageError):
    """A pin is missing or disagrees with what is installed; the message says what to do."""


def pinned(package: str, requirements: str) -> str:
    """The version `package==X` pins in requirements.txt's text."""
    name = re.escape(package).replace(r"\-", "[-_]")
    found = re.search(rf"^\s*{name}\s*==\s*([0-9][^\s;#]*)", requirements, re.MULTILINE | re.IGNORECASE)
    if not found:
        raise PluginError(f"requirements.txt does not pin {package} (`{package}==VERSION`): the "
                          f"plugin version follows that pin")
    return found.group(1)


def plugin_version(plugin: str, requirements: str) -> str:
    """The plugin version to install: the SDK's pin. When the SDK is installed, the version it
    will ask for (its pulumi-plugin.json) must be the same, or the venv is stale."""
    package = CLOUD_PLUGINS[plugin]
    version = pinned(package, requirements)
    try:
        files = metadata.files(package) or []
    except metadata.PackageNotFoundError:
        return version
    for file in files:
        if file.name == "pulumi-plugin.json":
            asks = json.loads(Path(file.locate()).read_text())["version"]
            if asks.lstrip("v") != version:
                raise PluginError(f"the installed {package} asks for plugin {plugin} v{asks}, "
                                  f"requirements.txt pins {version}: run `make setup` first")
    return version


def install_commands(requirements: str) -> list[list[str]]:
    return [["pulumi", "plugin", "install", "resource", plugin, f"v{plugin_version(plugin, requirements)}"]
            for plugin in CLOUD_PLUGINS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stacks.plugins", description=__doc__.splitlines()[0])
    parser.add_argument("--install", action="store_true", help="run the commands (needs internet)")
    args = parser.parse_args(argv)
    try:
        commands = install_commands(REQUIREMENTS.read_text())
        if not args.install:
            for command in commands:
                print(" ".join(command))
            return 0
        if shutil.which("pulumi") is None:
            raise PluginError("the pulumi CLI is not on PATH: run `make setup` (or install it), "
                              "then `. scripts/pulumi-env.sh`")
        for command in commands:
            print("+ " + " ".join(command), flush=True)
            if subprocess.run(command).returncode != 0:
                raise PluginError(f"`{' '.join(command)}` failed (above): it downloads the plugin, "
                                  "so it needs internet")
    except PluginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
