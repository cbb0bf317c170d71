"""`make cloud-setup`: the DigitalOcean plugin at the version the SDK asks for.

Nothing is downloaded here (no internet): the version derivation is checked against the
SDK that is installed, and scripts/setup-cloud.sh is run for real with a recording
stand-in for `pulumi` first on PATH, in the environment scripts/pulumi-env.sh makes.
The real CLI's own request for the plugin (v4.84.1, when a digitalocean stack is
previewed) is checked in tests/test_pulumi_digitalocean.py.
"""
from __future__ import annotations

import json
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

from stacks import plugins
from tests.conftest import REPO


def test_the_version_is_requirements_pin_and_what_the_installed_sdk_asks_for():
    requirements = (REPO / "requirements.txt").read_text()
    version = plugins.pinned("pulumi-digitalocean", requirements)
    assert version == metadata.version("pulumi-digitalocean")
    plugin_json = next(f for f in metadata.files("pulumi-digitalocean") if f.name == "pulumi-plugin.json")
    asks = json.loads(Path(plugin_json.locate()).read_text())
    assert (asks["name"], asks["version"].lstrip("v")) == ("digitalocean", version)
    assert plugins.install_commands(requirements) == [
        ["pulumi", "plugin", "install", "resource", "digitalocean", f"v{version}"]]


@pytest.mark.parametrize("text, expected", [
    ("pulumi==3.260.0\npulumi-digitalocean==4.84.1\n", "4.84.1"),
    ("# cloud\npulumi_digitalocean == 4.90.0  # DigitalOcean\n", "4.90.0"),
])
def test_pin_forms(text, expected):
    assert plugins.pinned("pulumi-digitalocean", text) == expected


def test_a_stale_venv_or_a_missing_pin_is_one_clear_error():
    with pytest.raises(plugins.PluginError, match="does not pin pulumi-digitalocean"):
        plugins.pinned("pulumi-digitalocean", "pulumi-digitalocean>=4\n")
    with pytest.raises(plugins.PluginError, match="asks for plugin digitalocean v.*pins 4.0.0: run `make setup`"):
        plugins.plugin_version("digitalocean", "pulumi-digitalocean==4.0.0\n")


def _run_setup(tmp_path: Path, pulumi_script: str) -> subprocess.CompletedProcess:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "pulumi").write_text(pulumi_script)
    (fake / "pulumi").chmod(0o755)
    # A HOME and cache of our own: pulumi-env.sh puts their (absent) Pulumi directories on
    # PATH first, so the stand-in is the `pulumi` found.
    env = {"PATH": f"{fake}:/usr/bin:/bin", "HOME": str(tmp_path / "home"),
           "XDG_CACHE_HOME": str(tmp_path / "cache"), "OVERLAY_BENCH_PULUMI_STATE": str(tmp_path / "state"),
           "RECORD": str(tmp_path / "argv")}
    return subprocess.run([str(REPO / "scripts/setup-cloud.sh")], env=env, capture_output=True, text=True,
                          timeout=120)


def test_cloud_setup_installs_the_plugin_explicitly(tmp_path):
    proc = _run_setup(tmp_path, '#!/bin/sh\necho "$* | offline=$PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION" '
                                '>> "$RECORD"\n')
    assert proc.returncode == 0, proc.stderr
    version = metadata.version("pulumi-digitalocean")
    assert (tmp_path / "argv").read_text().splitlines() == [
        f"plugin install resource digitalocean v{version} | offline=true"]
    assert f"+ pulumi plugin install resource digitalocean v{version}" in proc.stdout


def test_cloud_setup_without_internet_says_so(tmp_path):
    proc = _run_setup(tmp_path, '#!/bin/sh\necho "error: could not download plugin" >&2; exit 255\n')
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: `pulumi plugin install resource digitalocean v") and "needs internet" in last
