"""The local lab, for real: namespaces, dockerds, etcd, VXLAN, tc, as root."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest

from common.status import Status
from stacks import outputs
from stacks.local import lab
from tests import names, residue
from tests.conftest import REPO, require_root

pytestmark = pytest.mark.root

# Names for labs that must fail to come up: unique, so another run's lab is never touched.
ERR = names.lab_name("err")
FOREIGN = names.lab_name("forn")


def lab_cli(*args: str, env: dict | None = None, user: str | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "stacks.local", *args]
    if user:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The user-facing failure: a non-zero exit and one `error:` line, no traceback."""
    assert proc.returncode != 0, proc
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def overlay_reaches(doc: dict) -> dict:
    """An iperf3 server on node 1 and a client on node 2, over the stack's overlay network."""
    from bench import image

    net = doc["overlay_network"]
    clients = [docker.DockerClient(base_url=n["docker_host"]) for n in doc["nodes"][:2]]
    for client in clients:
        image.ensure(client)
    server = clients[0].containers.run(image.IMAGE_NAME, ["iperf3", "-s", "-1"], network=net,
                                       detach=True, labels={"overlay-bench.test": "lab"})
    try:
        server.reload()
        server_ip = server.attrs["NetworkSettings"]["Networks"][net]["IPAddress"]
        for _ in range(50):  # until the server listens
            if b"Server listening" in server.logs():
                break
            time.sleep(0.1)
        client = clients[1].containers.run(image.IMAGE_NAME, ["iperf3", "-c", server_ip, "-t", "1", "-J"],
                                           network=net, detach=True, labels={"overlay-bench.test": "lab"})
        try:
            assert client.wait(timeout=60)["StatusCode"] == 0, client.logs()
            result = json.loads(client.logs())
        finally:
            client.remove(force=True)
    finally:
        server.remove(force=True)
    assert "error" not in result, result["error"]
    infos = [c.info() for c in clients]
    for c in clients:
        c.close()
    return {"mbps": result["end"]["sum_received"]["bits_per_second"] / 1e6, "server_ip": server_ip,
            "infos": infos}


@pytest.mark.parametrize("mode", ["swarm", "classic"])
def test_lab_up_overlay_down_leaves_nothing(mode):
    require_root()
    name = names.lab_name(f"u{mode[:2]}")
    before = residue.snapshot(ignore=residue.other_labs(name))
    with lab.running(name, mode=mode, status=Status(quiet=True)) as doc:
        outputs.validate(doc)
        assert doc["mode"] == mode and doc["provider"] == "local"
        assert [n["role"] for n in doc["nodes"]] == ["manager", "worker"]
        assert (doc["keystore"] is None) == (mode == "swarm")
        reached = overlay_reaches(doc)
        assert reached["mbps"] > 10, reached
        info1, info2 = reached["infos"]
        assert info1["Name"] != info2["Name"], "nodes share a hostname"
        assert info1["ID"] != info2["ID"], "nodes share an engine ID"
        assert {info1["Name"], info2["Name"]} == {n["name"] for n in doc["nodes"]}
        # The overlay is really multi-host: VXLAN in the namespace, scope as expected.
        with contextlib.closing(docker.DockerClient(base_url=doc["nodes"][0]["docker_host"])) as client:
            net = client.networks.get(doc["overlay_network"])
            assert net.attrs["Driver"] == "overlay"
            assert net.attrs["Scope"] == ("swarm" if mode == "swarm" else "global")
        if mode == "classic":
            assert doc["keystore"]["url"] == f"etcd://{doc['keystore']['address']}:2379"
            assert info1["ClusterStore"] == doc["keystore"]["url"]
        else:
            assert info1["Swarm"]["LocalNodeState"] == "active" and info1["Swarm"]["ControlAvailable"]
            assert info2["Swarm"]["LocalNodeState"] == "active" and not info2["Swarm"]["ControlAvailable"]
        # No route off the lab subnet.
        routes = json.loads(subprocess.run(["ip", "-n", lab.node_netns(name, 1), "-j", "route"],
                                           capture_output=True, text=True).stdout)
        assert [r["dst"] for r in routes if "docker" not in r.get("dev", "") and r.get("dev") != "docker_gwbridge"] \
            == [lab.DEFAULT_SUBNET], routes
        assert "residue" not in lab_cli("status", "--name", name).stderr
    assert lab.residue(name) == {}
    assert residue.added(before, residue.snapshot(ignore=residue.other_labs(name))) == {}


def test_link_rate_limits_throughput_between_nodes(lab_factory):
    name = names.lab_name("sh")
    rate_mbps = 400
    doc = lab_factory(name, mode="swarm", link_rate=f"{rate_mbps}mbit")
    assert doc["link_rate"] == f"{rate_mbps}mbit"
    server_ns, client_ns = lab.node_netns(name, 1), lab.node_netns(name, 2)
    qdisc = subprocess.run(["ip", "netns", "exec", client_ns, "tc", "qdisc", "show", "dev", "eth0"],
                           capture_output=True, text=True).stdout
    assert "tbf" in qdisc and "400Mbit" in qdisc, qdisc
    server = subprocess.Popen(["nsenter", f"--net=/var/run/netns/{server_ns}", "iperf3", "-s", "-1",
                               "-B", doc["nodes"][0]["address"]], stdout=subprocess.DEVNULL)
    try:
        for _ in range(50):
            probe = subprocess.run(["nsenter", f"--net=/var/run/netns/{client_ns}", "bash", "-c",
                                    f"exec 3<>/dev/tcp/{doc['nodes'][0]['address']}/5201"],
                                   capture_output=True)
            if probe.returncode == 0:
                break
            time.sleep(0.1)
        # The probe connection counted as the one client of `-1`: start a fresh server.
        server.wait(timeout=10)
        server = subprocess.Popen(["nsenter", f"--net=/var/run/netns/{server_ns}", "iperf3", "-s", "-1",
                                   "-B", doc["nodes"][0]["address"]], stdout=subprocess.DEVNULL)
        time.sleep(0.3)
        out = subprocess.run(["nsenter", f"--net=/var/run/netns/{client_ns}", "iperf3", "-c",
                              doc["nodes"][0]["address"], "-t", "3", "-P", "4", "-J"],
                             capture_output=True, text=True, timeout=60).stdout
    finally:
        server.kill()
        server.wait()
    measured_mbps = json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e6
    # tbf caps the wire rate; TCP/IP headers take ~3.5% of it at MTU 1500.
    assert 0.90 * rate_mbps < measured_mbps <= 1.01 * rate_mbps, measured_mbps


def test_up_is_idempotent_and_rebuilds_a_half_torn_down_lab(lab_factory):
    name = names.lab_name("he")
    doc = lab_factory(name, mode="swarm")
    again = lab.up(name, mode="swarm", status=Status(quiet=True))
    assert again == doc
    # Crash one engine the hard way: `up` must notice, rebuild, and the overlay must work.
    pid = int((lab.run_dir(name) / "n2" / "docker.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.1)
    proc = lab_cli("status", "--name", name)
    assert "not healthy" in one_error_line(proc)
    rebuilt = lab.up(name, mode="swarm", status=Status(quiet=True))
    assert overlay_reaches(rebuilt)["mbps"] > 10


def test_unmarked_look_alikes_of_leftovers_block_up_and_are_left_alone():
    """A namespace, a veth and a state directory with the lab's names that the lab did not
    make (no record, no mark): not leftovers of ours. `up` names one, with its removal."""
    require_root()
    name = names.lab_name("le")
    netns, veth, run_dir = lab.node_netns(name, 1), lab.node_veth(name, 2), lab.run_dir(name)
    subprocess.run(["ip", "netns", "add", netns], check=True)
    subprocess.run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "x" + name], check=True)
    (run_dir / "n1").mkdir(parents=True)
    try:
        assert lab.residue(name) == {}, "nothing here is the lab's"
        assert {(f.kind, f.name) for f in lab.foreign(name)} >= {
            ("namespace", netns), ("link", veth), ("directory", str(run_dir))}
        line = one_error_line(lab_cli("up", "--name", name, "--mode", "classic"))
        assert "was not made by overlay-bench" in line and "(and 2 more" in line, line
        assert any(cmd in line for cmd in (f"`ip netns delete {netns}`", f"`ip link delete {veth}`",
                                           f"`rm -r {run_dir}`")), line
        down = lab_cli("down", "--name", name)
        assert down.returncode == 0, down.stderr
        assert f"ip netns delete {netns}" in down.stderr and f"ip link delete {veth}" in down.stderr
        assert subprocess.run(["ip", "netns", "pids", netns], capture_output=True).returncode == 0
        assert subprocess.run(["ip", "link", "show", veth], capture_output=True).returncode == 0
        assert (run_dir / "n1").is_dir()
    finally:
        subprocess.run(["ip", "netns", "delete", netns])
        subprocess.run(["ip", "link", "delete", veth])
        shutil.rmtree(run_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            lab.RUN_ROOT.rmdir()


def test_cli_up_status_down_prints_the_outputs_document():
    require_root()
    name = names.lab_name("cli")
    try:
        up = lab_cli("up", "--name", name, "--mode", "swarm", "--mtu", "1400")
        assert up.returncode == 0, up.stderr
        doc = outputs.loads(up.stdout)
        assert doc["mtu_bytes"] == 1400
        # Status lines on stderr, one per step with its duration (not a terminal: plain).
        assert re.search(r"Starting engines \(2 nodes\) \.\.\. done \d+\.\d s", up.stderr), up.stderr
        status = lab_cli("status", "--name", name)
        assert status.returncode == 0 and json.loads(status.stdout) == doc
        mtu = subprocess.run(["ip", "-n", lab.node_netns(name, 1), "-j", "link", "show", "eth0"],
                             capture_output=True, text=True).stdout
        assert json.loads(mtu)[0]["mtu"] == 1400
    finally:
        down = lab_cli("down", "--name", name)
    assert down.returncode == 0, down.stderr
    assert lab_cli("residue", "--name", name).returncode == 0
    assert "no lab named" in one_error_line(lab_cli("status", "--name", name))


# --- errors a user can cause: one line, non-zero exit ----------------------------------

def _path_without(tmp_path: Path, *missing: str) -> str:
    """A PATH where every tool is found except `missing` (symlinks to the real ones)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for d in os.environ["PATH"].split(":") + ["/usr/sbin", "/sbin"]:
        if not os.path.isdir(d):
            continue
        for tool in os.listdir(d):
            if tool not in missing and not (bin_dir / tool).exists():
                (bin_dir / tool).symlink_to(os.path.join(d, tool))
    return str(bin_dir)


@pytest.mark.parametrize("args, expected", [
    (["--name", "Bad_Name"], "1-8 lowercase letters or digits"),
    (["--name", ERR, "--nodes", "1"], "at least 2 nodes"),
    (["--name", "lab\n"], "1-8 lowercase letters or digits"),
    (["--name", ERR, "--link-rate", "fast"], "tc units such as 1gbit"),
    (["--name", ERR, "--link-rate", "999bit"], "below 1kbit"),
    (["--name", ERR, "--mtu", "100"], "MTU between"),
    (["--name", ERR, "--subnet", "127.0.0.0/24"], "choose another with --subnet"),
])
def test_bad_input_is_one_line(args, expected):
    require_root()
    assert expected in one_error_line(lab_cli("up", *args))
    assert lab.residue(ERR) == {}


@pytest.mark.parametrize("command", [["up", "--name", ERR], ["down", "--name", ERR], ["down", "--all"],
                                     ["status", "--name", ERR], ["residue", "--name", ERR]])
def test_not_root_is_one_line(command):
    require_root()
    assert "needs root" in one_error_line(lab_cli(*command, user="65534"))


@pytest.mark.parametrize("tool, mode, package", [("dockerd", "swarm", "docker.io"),
                                                   ("etcd", "classic", "etcd-server")])
def test_missing_package_names_it(tmp_path, tool, mode, package):
    require_root()
    proc = lab_cli("up", "--name", ERR, "--mode", mode, env={"PATH": _path_without(tmp_path, tool)})
    assert f"apt-get install {package}" in one_error_line(proc)
    assert lab.residue(ERR) == {}


def _fake_dockerd(tmp_path: Path, script: str) -> str:
    path = _path_without(tmp_path, "dockerd")
    fake = Path(path) / "dockerd"
    fake.write_text("#!/bin/sh\n" + script)
    fake.chmod(0o755)
    return path


def test_engine_that_fails_to_start_shows_its_log(tmp_path):
    require_root()
    path = _fake_dockerd(tmp_path, 'case "$1" in --version) echo "Docker version 20.10.24, build x";;\n'
                                   '*) echo "failed to start daemon: pretend disk is broken" >&2; exit 1;; esac\n')
    started = time.monotonic()
    proc = lab_cli("up", "--name", ERR, "--mode", "swarm", env={"PATH": path})
    line = one_error_line(proc)
    assert "did not start" in line and "pretend disk is broken" in line
    assert time.monotonic() - started < 30, "a dead engine must be reported at once, not at the timeout"
    assert lab.residue(ERR) == {}


def test_classic_mode_refused_on_engine_23_or_newer(tmp_path):
    require_root()
    path = _fake_dockerd(tmp_path, 'echo "Docker version 24.0.7, build afdd53b"\n')
    line = one_error_line(lab_cli("up", "--name", ERR, "--mode", "classic", env={"PATH": path}))
    assert "removed in Docker 23.0" in line and "--mode swarm" in line


def test_foreign_bridge_is_refused():
    require_root()
    subprocess.run(["ip", "link", "add", lab.bridge_name(FOREIGN), "type", "bridge"], check=True)
    try:
        line = one_error_line(lab_cli("up", "--name", FOREIGN, "--mode", "swarm"))
        assert "not made by overlay-bench" in line
        assert f"`ip link delete {lab.bridge_name(FOREIGN)}`" in line
        assert lab.residue(FOREIGN) == {}, "a foreign bridge is not the lab's"
        assert subprocess.run(["ip", "link", "show", lab.bridge_name(FOREIGN)]).returncode == 0, "it must stay"
    finally:
        subprocess.run(["ip", "link", "delete", lab.bridge_name(FOREIGN)])
