"""Droplet-like lab nodes, for real: `--access ssh --firewall --bare`.

The engines are reached as bench reaches a droplet's (docker SDK over ssh://, host keys
checked against known_hosts), the firewall drops for real what stacks/firewall.py does not
let in, and down leaves nothing. HOME is a temporary directory here, so the known_hosts the
lab writes to is the test's own (the Pulumi tests use the user's, as a user would).
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest

from bench import engines, ports
from common.status import Status
from stacks import outputs
from stacks.local import host, lab
from stacks.local.spec import LabError, LabSpec, SpecError
from tests import names, residue
from tests.conftest import REPO, require_root

pytestmark = pytest.mark.root
# Engines other test runs on this machine start in their temporary directories meanwhile.
CONCURRENT_TESTS = ("/tmp/pytest-of-",)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A HOME of the test's own: the known_hosts the lab writes and the docker SDK reads."""
    with mock.patch.dict(os.environ, {"HOME": str(tmp_path / "home")}):
        (tmp_path / "home").mkdir()
        yield tmp_path / "home"


def lab_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stacks.local", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=180, env={**os.environ, "PYTHONPATH": str(REPO)})


@contextlib.contextmanager
def listening(netns: str, port_numbers: list[int]) -> Iterator[None]:
    """TCP listeners on every address of a node, on `port_numbers`."""
    code = ("import socket, sys, time\n"
            "socks = []\n"
            "for p in sys.argv[1:]:\n"
            "    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            "    s.bind(('0.0.0.0', int(p))); s.listen(); socks.append(s)\n"
            "print('ready', flush=True); time.sleep(300)\n")
    proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", code, *map(str, port_numbers)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield
    finally:
        proc.kill()
        proc.wait()


def connects(address: str, port: int, netns: str | None = None) -> bool:
    """A TCP connection to address:port completes within 2 s (from `netns`, else from the
    root namespace): False when it is dropped (a refused one raises)."""
    cmd = ["timeout", "2", "bash", "-c", f"exec 3<>/dev/tcp/{address}/{port}"]
    proc = subprocess.run((["ip", "netns", "exec", netns] if netns else []) + cmd, capture_output=True, text=True)
    assert "refused" not in proc.stderr, f"{address}:{port} refused (nothing listens): {proc.stderr}"
    return proc.returncode == 0


def test_droplet_like_lab_over_ssh_through_its_firewall(home):
    require_root()
    name = names.lab_name("ssh")
    subnet, management = names.subnets(2)
    before = residue.snapshot()
    up = lab_cli("up", "--name", name, "--mode", "swarm", "--subnet", subnet, "--access", "ssh",
                 "--management-subnet", management, "--firewall", "--bare")
    try:
        assert up.returncode == 0, up.stderr
        doc = outputs.loads(up.stdout)
        node_ns = [lab.node_netns(name, i) for i in (1, 2)]
        public = [f"{management.rsplit('.', 1)[0]}.{11 + i}" for i in range(2)]
        private = [f"{subnet.rsplit('.', 1)[0]}.{11 + i}" for i in range(2)]
        key = str(lab.ssh_dir(name) / "id_ed25519")
        assert [(n["name"], n["address"], n["docker_host"], n["ssh_key_path"]) for n in doc["nodes"]] == [
            (f"{name}-node{i + 1}", private[i], f"ssh://root@{public[i]}", key) for i in range(2)]
        assert Path(key).stat().st_mode & 0o077 == 0, "the private key is readable by others"

        # Known hosts: one line per node, its host key, the lab's mark as comment.
        known = host.known_hosts_lines(home / ".ssh" / "known_hosts", lab.mark(name))
        assert [line.split()[0] for line in known] == public
        for i, line in enumerate(known, start=1):
            host_key = (lab.run_dir(name) / f"n{i}" / "ssh_host_ed25519_key.pub").read_text().split()
            assert line.split()[1:3] == host_key[:2]

        # bench's way in: the docker SDK over SSH, host keys checked (RejectPolicy).
        for node in doc["nodes"]:
            client = engines.connect(node)
            try:
                info = client.info()
                assert info["Name"] == node["name"]
                assert info["Swarm"]["LocalNodeState"] == "inactive", "--bare formed a swarm"
                assert not client.networks.list(names=[doc["overlay_network"]]), "--bare made the network"
            finally:
                client.close()

        # Routes: the lab subnet and the management subnet, connected; nothing beyond.
        for ns in node_ns:
            routes = json.loads(host.ip("-j", "route", netns=ns))
            assert sorted(r["dst"] for r in routes if r["dst"] != "172.17.0.0/16") == sorted([subnet, management])
            assert all(r.get("gateway") is None for r in routes), routes

        # The firewall: SSH from the management side, bench's range from the lab subnet,
        # nothing else (dropped, not refused).
        assert connects(public[0], 22)
        first, last = ports.OPEN
        with listening(node_ns[0], [first, last, last + 1, 9999]):
            assert connects(private[0], first, netns=node_ns[1])
            assert connects(private[0], last, netns=node_ns[1])
            assert not connects(private[0], last + 1, netns=node_ns[1]), "a port outside bench's range is open"
            assert not connects(private[0], 9999, netns=node_ns[1])
            assert not connects(public[0], first), "bench's range is open to the management side"
            assert connects(private[0], first, netns=node_ns[0]), "the node's own traffic is dropped"
        listed = subprocess.run(["ip", "netns", "exec", node_ns[0], "iptables", "-t", "mangle", "-S",
                                 lab.FIREWALL_CHAIN], capture_output=True, text=True, check=True).stdout
        assert all(f'"{lab.mark(name)}"' in line for line in listed.splitlines() if line.startswith("-A"))

        # Up again with the same spec: found healthy, nothing rebuilt.
        again = lab_cli("up", "--name", name, "--mode", "swarm", "--subnet", subnet, "--access", "ssh",
                        "--management-subnet", management, "--firewall", "--bare")
        assert again.returncode == 0 and "is already up" in again.stderr, again.stderr
    finally:
        down = lab_cli("down", "--name", name)
    assert down.returncode == 0, down.stderr
    assert lab_cli("residue", "--name", name).returncode == 0
    assert not (home / ".ssh").exists(), "the lab made ~/.ssh and left it"
    left = residue.added(before, residue.snapshot(ignore=residue.other_labs(name) + CONCURRENT_TESTS))
    assert left == {}, f"the lab left {left}"


def test_known_hosts_lines_of_others_are_kept_and_block_only_the_lab_addresses(home):
    require_root()
    name = names.lab_name("sshk")
    subnet, management = names.subnets(2)
    known_hosts = home / ".ssh" / "known_hosts"
    known_hosts.parent.mkdir()
    node1 = f"{management.rsplit('.', 1)[0]}.11"
    theirs = "203.0.113.9 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtheRHostsKeyOtheRHostsKeyOtheRHostsKey00 theirs\n"
    known_hosts.write_text(theirs)
    spec = dict(mode="swarm", subnet=subnet, access="ssh", management_subnet=management, bare=True)
    with lab.running(name, status=Status(quiet=True), **spec):
        assert known_hosts.read_text().startswith(theirs)
        assert len(host.known_hosts_lines(known_hosts, lab.mark(name))) == 2
    assert known_hosts.read_text() == theirs, "down touched a line it did not write"

    # A key of someone else's for a node's address: the docker SDK would check the node
    # against it, so up stops before making anything, with one line.
    stale = f"{node1} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtheRHostsKeyOtheRHostsKeyOtheRHostsKey00\n"
    known_hosts.write_text(theirs + stale)
    with pytest.raises(LabError) as caught:
        lab.up(name, status=Status(quiet=True), **spec)
    assert str(caught.value) == (
        f"host key for {node1} in {known_hosts} exists and was not made by overlay-bench for lab {name}: "
        f"remove it with `ssh-keygen -f {known_hosts} -R {node1}`, or choose another --management-subnet")
    assert lab.residue(name) == {}
    assert known_hosts.read_text() == theirs + stale


def test_management_subnet_is_checked_like_the_lab_subnet():
    with pytest.raises(SpecError, match="--management-subnet '10.213.0.0/25': it overlaps the lab subnet"):
        LabSpec("x", subnet="10.213.0.0/24", access="ssh", management_subnet="10.213.0.0/25").check()
    with pytest.raises(SpecError, match="--management-subnet '10.214.0.0/27': use a /26 or larger"):
        LabSpec("x", access="ssh", management_subnet="10.214.0.0/27").check()
    with pytest.raises(SpecError, match="--access 'tcp': use unix or ssh"):
        LabSpec("x", access="tcp").check()
    require_root()
    # 127.0.0.1/8 is on lo: not the lab's.
    proc = lab_cli("up", "--name", names.lab_name("sshs"), "--access", "ssh", "--subnet", names.subnet(),
                   "--management-subnet", "127.1.0.0/24")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: subnet 127.1.0.0/24 overlaps 127.0.0.1/8 on lo, which is not the lab's: choose another with "
        "--management-subnet")


def test_a_lab_without_ssh_access_is_unchanged(home):
    """--access unix (the default): unix sockets, no management link, no sshd, no known_hosts."""
    require_root()
    name = names.lab_name("ssun")
    with lab.running(name, mode="swarm", subnet=names.subnet(), status=Status(quiet=True)) as doc:
        assert all(n["docker_host"].startswith("unix://") and n["ssh_key_path"] is None for n in doc["nodes"])
        assert not host.link_exists(lab.management_bridge(name))
        assert not (home / ".ssh").exists()
        assert not lab.ssh_dir(name).exists()


def test_bench_keeps_within_the_ssh_sessions_sshd_allows(home):
    """sshd allows 10 sessions per connection (MaxSessions, Debian's default); the docker
    SDK's own pools pass that at once ('ChannelException: Connect failed'). Many requests
    at the same time, each exec on a session of its own, all succeed."""
    require_root()
    import concurrent.futures
    import socket

    from bench import image

    name = names.lab_name("sshn")
    subnet, management = names.subnets(2)
    with lab.running(name, mode="swarm", subnet=subnet, access="ssh", management_subnet=management, bare=True,
                     status=Status(quiet=True)) as doc:
        client = engines.connect(doc["nodes"][0])
        try:
            transport = client.api.get_adapter("http+docker://ssh").ssh_client.get_transport()
            assert transport.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), "Nagle delays each request"
            image.ensure(client)
            holder = client.containers.run(image.IMAGE_NAME, ["cat"], stdin_open=True, detach=True,
                                           network_mode="host", labels={"overlay-bench.test": "ssh"})
            try:
                with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
                    results = list(pool.map(lambda i: holder.exec_run(["sh", "-c", "echo $0", str(i)]).output, range(48)))
                assert results == [f"{i}\n".encode() for i in range(48)]
                assert len(client.containers.list(filters={"label": "overlay-bench.test=ssh"})) == 1
            finally:
                holder.remove(force=True)
        finally:
            client.close()


def test_a_known_hosts_line_is_enough_for_down_to_find_a_lab(home):
    """A crash that left only host keys (the lab's mark as their comment): down --all finds
    the lab by that mark, residue lists them, down removes them and nothing else."""
    require_root()
    name = names.lab_name("sshc")
    known_hosts = home / ".ssh" / "known_hosts"
    known_hosts.parent.mkdir()
    theirs = "203.0.113.9 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtheRHostsKeyOtheRHostsKeyOtheRHostsKey00\n"
    ours = f"10.214.9.11 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILeftOverLeftOverLeftOverLeftOverLeftOver0 {lab.mark(name)}\n"
    known_hosts.write_text(theirs + ours)
    assert name in lab.list_labs()
    assert lab.residue(name) == {"known_hosts": [f"{known_hosts}: 10.214.9.11"]}
    lab.down(name, status=Status(quiet=True))
    assert known_hosts.read_text() == theirs
    assert lab.residue(name) == {}

