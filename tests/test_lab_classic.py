"""Classic mode as the droplets run it, for real in the lab, as root.

The lab's engines are Debian's docker.io and its key-value store Debian's etcd-server, the
packages cloud-init installs on the droplets, started with the settings stacks/classic.py
defines for both: each node's daemon.json holds the droplets' cluster settings, and the
lab's etcd runs with the key-value droplet's ExecStart arguments. When an engine cannot
use its store, the lab stops with the engine's own words, soon: an engine pointed at a
backend Debian's build lacks exits at once; one whose store nobody serves keeps running,
and its first use of the store fails.
"""
from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import time
from pathlib import Path

import docker
import pytest
import yaml

from common.status import Status
from stacks import classic, digitalocean
from stacks.local import lab
from stacks.local.spec import LabError
from tests import names, residue
from tests.conftest import require_root

pytestmark = pytest.mark.root


def _package_of(path: str) -> str:
    return subprocess.run(["dpkg-query", "-S", path], capture_output=True, text=True,
                          check=True).stdout.split(":")[0]


def _etcd_argv(data_dir: Path) -> list[str]:
    """The running etcd of a lab, found by its data directory: its argv."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().decode().split("\0")[:-1]
        except OSError:
            continue
        if argv and argv[0] == "etcd" and str(data_dir) in argv:
            found.append(argv)
    assert len(found) == 1, found
    return found[0]


def test_the_lab_runs_the_droplets_engine_store_and_settings(classic_lab):
    doc = classic_lab
    name, kv = doc["stack"], doc["keystore"]["address"]
    # The same binaries: the packages the droplets' cloud-init installs.
    assert _package_of("/usr/sbin/dockerd") == "docker.io"
    assert _package_of("/usr/bin/etcd") == "etcd-server"
    node_data = yaml.safe_load(digitalocean.node_user_data("classic", kv))
    assert node_data["packages"] == ["docker.io"]
    assert yaml.safe_load(digitalocean.keystore_user_data())["packages"][0] == "etcd-server"

    # The same engine settings: the droplets' daemon.json, but for the interface's name.
    droplet = json.loads(node_data["write_files"][0]["content"])
    for node in (1, 2):
        daemon = json.loads((lab.run_dir(name) / f"n{node}" / "daemon.json").read_text())
        ours = {k: v for k, v in daemon.items() if k in droplet}
        assert ours == {**droplet, "cluster-advertise": droplet["cluster-advertise"].replace("eth1", "eth0")}
        assert ours == classic.engine_settings(kv, "eth0")
    for node in doc["nodes"]:
        with contextlib.closing(docker.DockerClient(base_url=node["docker_host"])) as client:
            info = client.info()
            assert info["ClusterStore"] == droplet["cluster-store"] == doc["keystore"]["url"]
            assert info["ClusterAdvertise"] == f"{node['address']}:2376"

    # The same etcd arguments: the droplet's ExecStart, with its address and data dir.
    data_dir = lab.data_dir(name) / "keystore" / "etcd"
    running = _etcd_argv(data_dir)
    drop_in = yaml.safe_load(digitalocean.keystore_user_data())["write_files"][0]["content"]
    exec_start = [ln for ln in drop_in.splitlines() if ln.startswith("ExecStart=/")][0]
    droplet_argv = shlex.split(exec_start.removeprefix("ExecStart="))
    substituted = [a.replace("${KEYSTORE_ADDRESS}", kv).replace(digitalocean.ETCD_DATA_DIR, str(data_dir))
                   for a in droplet_argv]
    assert ["/usr/bin/etcd", *running[1:]] == substituted


def _failing_lab(prefix: str) -> tuple[str, float]:
    """Bring up a classic lab (which the test has broken) and return the LabError's message
    and how long it took. The partial lab must leave nothing behind."""
    require_root()
    name = names.lab_name(prefix)
    before = residue.snapshot(ignore=residue.other_labs(name))
    started = time.monotonic()
    with pytest.raises(LabError) as caught:
        lab.up(name, mode="classic", subnet=names.subnet(), status=Status(quiet=True))
    took = time.monotonic() - started
    assert lab.residue(name) == {}
    assert residue.added(before, residue.snapshot(ignore=residue.other_labs(name))) == {}
    message = str(caught.value)
    assert "\n" not in message
    print(f"{prefix}: {message} ({took:.1f} s)")
    return message, took


def test_an_engine_whose_store_nobody_serves_is_stopped_with_its_own_words(monkeypatch):
    """No etcd at the keystore address: Debian's dockerd 20.10 starts anyway (it logs
    "discovery error" and retries every 20 s); the first use of the store, making the
    overlay network, fails with the store's error, which the lab repeats."""
    monkeypatch.setattr(lab.Lab, "start_keystore", lambda self: None)
    message, took = _failing_lab("nokv")
    assert "cannot use its key-value store etcd://" in message, message
    assert "etcd cluster is unavailable or misconfigured" in message and "connection refused" in message
    assert took < 60, f"took {took:.0f} s"


def test_an_engine_that_exits_on_its_store_is_stopped_with_its_own_words(monkeypatch):
    """Pointed at Consul, Debian's dockerd exits at once: "discovery service not supported"."""
    real = classic.engine_settings

    def consul(address: str, interface: str) -> dict[str, str]:
        return {**real(address, interface), "cluster-store": f"consul://{address}:8500"}
    monkeypatch.setattr(classic, "engine_settings", consul)
    message, took = _failing_lab("cnsl")
    assert "did not start: it says: failed to start daemon: discovery initialization failed " \
           "(discovery service not supported)" in message, message
    assert took < 30, f"took {took:.0f} s: a dead engine must be reported at once"


def test_a_worker_that_cannot_reach_the_store_is_named_with_its_own_words(monkeypatch):
    """The manager makes the network; node 2's namespace rejects the store's port (a
    firewall in the way): node 2 never sees the network, and the lab says what its engine
    said about the store."""
    real = lab.Lab._start_engine

    def blocked(self, node):
        if node.index == 2:
            subprocess.run(["ip", "netns", "exec", node.netns, "iptables", "-w", "-A", "OUTPUT", "-p", "tcp",
                            "-d", self.keystore_address, "--dport", str(classic.ETCD_CLIENT_PORT),
                            "-j", "REJECT", "--reject-with", "tcp-reset"], check=True)
        return real(self, node)
    monkeypatch.setattr(lab.Lab, "_start_engine", blocked)
    message, took = _failing_lab("blkd")
    assert "-node2 does not see the overlay network through the key-value store etcd://" in message, message
    assert "it says: discovery error:" in message and "connection refused" in message, message
    assert took < 90, f"took {took:.0f} s"
