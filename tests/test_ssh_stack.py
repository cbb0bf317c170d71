"""The cloud path for real: the `ssh` stack on droplet-like lab nodes, bench over ssh://.

A lab made as a cloud hands machines over (`--access ssh --firewall --bare`: engines
reached only over SSH on a management network, the DigitalOcean firewall's rules in each
node, no swarm, no overlay network), then the real Pulumi CLI runs the `ssh` stack against
it (pulumi-command's remote commands really go over SSH), bench measures over ssh://
through the firewall, analysis reads the runs, `pulumi destroy` undoes the cluster (checked
on the engines), and the lab goes without residue. In swarm mode and in classic mode.

The project is a copy with its own file backend (tests/test_pulumi_local.py's Project); the
known_hosts is the user's, as for a user (the lab's lines carry its mark and leave with it).
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from common.polling import retry
from common.status import Status
from stacks import outputs
from stacks.local import host, lab
from tests import names, residue
from tests.conftest import REPO, require_root
from tests.test_pulumi_local import Project

pytestmark = [pytest.mark.root, pytest.mark.slow]

BENCH_ARGS = ("--networks", "host,overlay,bridge", "--tools", "iperf3,iperf2", "--runs", "3", "--duration", "2")
# Engines other test runs on this machine start in their temporary directories meanwhile.
CONCURRENT_TESTS = ("/tmp/pytest-of-",)


def ssh_project(root: Path, lab_doc: dict, mode: str, **settings: str) -> Project:
    """A copy of the project with stack `ssh` pointed at the lab's machines."""
    proj = Project(root, stack="ssh", lab_name=lab_doc["stack"])
    proj.run("stack", "init", "ssh")
    machines = [{"address": n["docker_host"].rsplit("@", 1)[1], "privateAddress": n["address"]}
                for n in lab_doc["nodes"]]
    config = {"provider": "ssh", "mode": mode, "sshPrivateKeyPath": lab_doc["nodes"][0]["ssh_key_path"],
              "machines": json.dumps(machines), **settings}
    for key, value in config.items():
        path = ("--path",) if key == "machines" else ()
        proj.run("config", "set", "--stack", "ssh", *path, f"overlay-bench:{key}", value)
    return proj


def engine(lab_name: str, index: int) -> docker.DockerClient:
    """Node `index`'s engine on its own socket: how the test checks what the stack did."""
    return docker.DockerClient(base_url=f"unix://{lab.node_socket(lab_name, index)}", timeout=30)


def swarm_states(lab_name: str, network: str) -> list[tuple[str, bool]]:
    """Per node: its swarm state and whether it has the network."""
    found = []
    for index in (1, 2):
        with contextlib.closing(engine(lab_name, index)) as client:
            found.append((client.info()["Swarm"]["LocalNodeState"], bool(client.networks.list(names=[network]))))
    return found


def run_python(*args: str, env: dict, timeout_s: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout_s)


@contextlib.contextmanager
def droplet_like_lab(prefix: str, mode: str, firewall: bool = True) -> Iterator[dict]:
    name = names.lab_name(prefix)
    subnet, management = names.subnets(2)
    with lab.running(name, mode=mode, subnet=subnet, access="ssh", management_subnet=management,
                     firewall=firewall, bare=True, status=Status(quiet=True)) as doc:
        yield doc


@pytest.mark.parametrize("mode", ["swarm", "classic"])
def test_up_bench_analysis_destroy_over_ssh(tmp_path, mode):
    require_root()
    before = residue.snapshot()
    with droplet_like_lab("sst" if mode == "swarm" else "ssc", mode) as lab_doc:
        name = lab_doc["stack"]
        assert swarm_states(name, "overlay-bench") == [("inactive", False)] * 2, "the lab was not bare"
        proj = ssh_project(tmp_path, lab_doc, mode)
        try:
            up = proj.up()
            assert "created" in up.stdout, up.stdout
            doc = outputs.loads(proj.outputs())
            assert (doc["provider"], doc["mode"], doc["stack"]) == ("ssh", mode, "ssh")
            assert [(n["name"], n["address"], n["docker_host"], n["ssh_key_path"]) for n in doc["nodes"]] == \
                [(n["name"], n["address"], n["docker_host"], n["ssh_key_path"]) for n in lab_doc["nodes"]]
            # Classic mode: the key-value node as the engines' cluster store names it.
            assert doc["keystore"] == (lab_doc["keystore"] and {**lab_doc["keystore"], "name": "keystore"})
            if mode == "swarm":
                assert swarm_states(name, "overlay-bench") == [("active", True), ("active", False)]
            else:
                assert swarm_states(name, "overlay-bench") == [("inactive", True)] * 2  # global scope
            proj.up("--expect-no-changes")  # a second up changes nothing

            # bench reads the stack through Pulumi, like a user's `python -m bench --stack ssh`.
            results = tmp_path / "results"
            bench = run_python("bench", "--stack", "ssh", "--results", str(results), *BENCH_ARGS, env=proj.env)
            assert bench.returncode == 0, f"{bench.stdout[-3000:]}\n{bench.stderr[-3000:]}"
            (session,) = results.iterdir()
            runs = [json.loads(line) for line in (session / "runs.jsonl").read_text().splitlines()]
            assert len(runs) == 18, len(runs)
            failed = [(r["tool"], r["network"], r["reason"]) for r in runs if r["status"] != "ok"]
            assert failed == [], f"runs failed (a firewall drop would show here): {failed}"
            assert {r["network"] for r in runs} == {"host", "overlay", "bridge"}
            metadata = json.loads((session / "metadata.json").read_text())
            assert [n["docker_host"] for n in metadata["stack_outputs"]["nodes"]] == \
                [n["docker_host"] for n in doc["nodes"]], "bench did not reach the engines over ssh://"
            assert all(n["docker_host"].startswith("ssh://root@") for n in doc["nodes"])

            analysis = run_python("analysis", str(session), env=proj.env, timeout_s=300)
            assert analysis.returncode == 0, analysis.stderr[-3000:]
            assert (session / "analysis" / "report.md").is_file()

            if mode == "classic":
                # An endpoint the engine kept for a container it removed while it could not
                # read its store: destroy removes it (the network could not go otherwise).
                stale = leave_stale_endpoint(name, doc["overlay_network"])
                # A container of someone else's on the network: destroy stops, says so in one
                # line, and leaves the container running; without it, destroy goes through.
                with contextlib.closing(engine(name, 2)) as client:
                    theirs = client.containers.run("overlay-bench/tools:1", ["cat"], stdin_open=True, detach=True,
                                                   network=doc["overlay_network"], name="theirs")
                    try:
                        refused = proj.run("destroy", "--stack", "ssh", "--yes", check=False)
                        machine = doc["nodes"][0]["docker_host"].rsplit("@", 1)[1]
                        line = failed_line(refused, f"overlay-bench: machine {machine}:")
                        assert line.startswith(f"overlay-bench: machine {machine}: the engine does not remove "
                                               "the network overlay-bench ("), line
                        assert "its endpoints: theirs : remove those containers" in line, line
                        assert stale not in line, "the stale endpoint was not removed"
                        theirs.reload()
                        assert theirs.status == "running"
                    finally:
                        theirs.remove(force=True)
            proj.destroy()
            assert proj.resources() == [], "the stack still holds resources after destroy"
            # The swarm left, the network gone: as the machines were handed over.
            assert swarm_states(name, "overlay-bench") == [("inactive", False)] * 2
        finally:
            proj.run("destroy", "--stack", "ssh", "--yes", check=False)
    left = residue.added(before, residue.snapshot(ignore=residue.other_labs(name) + CONCURRENT_TESTS))
    assert left == {}, f"left behind: {left}"


def leave_stale_endpoint(lab_name: str, network: str) -> str:
    """Make what an engine under load sometimes leaves (seen in bench sessions): the
    endpoint of a removed container, kept in the key-value store because the engine could
    not read the network while removing the container (here: the store is paused meanwhile).
    Returns the container's name."""
    keystore = [e["pid"] for e in lab.ledger(lab_name).entries("process") if e.get("what") == "keystore"]
    assert len(keystore) == 1, keystore
    with contextlib.closing(engine(lab_name, 2)) as client:
        gone = client.containers.run("overlay-bench/tools:1", ["cat"], stdin_open=True, detach=True,
                                     network=network, name="gone")
        os.kill(keystore[0], signal.SIGSTOP)
        try:
            gone.remove(force=True)
        finally:
            os.kill(keystore[0], signal.SIGCONT)
        # The engine reads the network from the store, which has just resumed.
        left = retry(lambda: client.networks.get(network).attrs["Containers"] or {}, tries=20, delay_s=0.5,
                     again_on=lambda exc: isinstance(exc, docker.errors.NotFound))
    assert [ep["Name"] for ep in left.values()] == ["gone"], f"no stale endpoint made: {left}"
    return "gone"


# --- each new error path: one clear line ----------------------------------------------------------

def failed_line(proc: subprocess.CompletedProcess, start: str) -> str:
    """The one line of a failed `pulumi up` that starts with `start` (after Pulumi's indent)."""
    assert proc.returncode != 0, proc.stdout
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text, text[-3000:]
    lines = {line.strip().removeprefix("error: ") for line in text.splitlines()
             if line.strip().removeprefix("error: ").startswith(start)}
    assert len(lines) == 1, f"expected one line starting with {start!r}:\n{text[-4000:]}"
    return lines.pop()


@contextlib.contextmanager
def extra_sshd(lab_name: str, port: int, extra: str) -> Iterator[None]:
    """A second sshd in each lab node, on `port` of its management address, with the lab's
    keys and `extra` configuration; its host keys known under [address]:port."""
    procs, mark = [], f"overlay-bench-test:{lab_name}"
    known_hosts = lab.known_hosts_file()
    state = json.loads((lab.data_dir(lab_name) / "lab.json").read_text())
    try:
        lines = []
        for index, node in enumerate(state["outputs"]["nodes"], start=1):
            address = node["docker_host"].rsplit("@", 1)[1]
            rdir = lab.run_dir(lab_name) / f"n{index}"
            config = rdir / f"sshd_{port}_config"
            config.write_text(f"ListenAddress {address}:{port}\nHostKey {rdir / 'ssh_host_ed25519_key'}\n"
                              f"PidFile none\nAuthorizedKeysFile {lab.ssh_dir(lab_name) / 'authorized_keys'}\n"
                              f"UsePAM no\nStrictModes no\nPasswordAuthentication no\n{extra}\n")
            procs.append(subprocess.Popen(["nsenter", f"--net={lab.netns_bind(lab_name, lab.node_netns(lab_name, index))}",
                                           "--", lab.SSHD, "-D", "-e", "-f", str(config)],
                                          stderr=subprocess.DEVNULL))
            key = (rdir / "ssh_host_ed25519_key.pub").read_text().split()
            lines.append(f"[{address}]:{port} {key[0]} {key[1]} {mark}")
        host.known_hosts_add(known_hosts, lines)
        for line in lines:
            address = line.split()[0][1:].split("]")[0]
            assert host.run("timeout", "5", "bash", "-c",
                            f"until exec 3<>/dev/tcp/{address}/{port}; do sleep 0.1; done", check=False) == ""
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        host.known_hosts_remove(known_hosts, mark)


@pytest.fixture(scope="module")
def plain_lab():
    """Bare swarm-mode machines over SSH, no firewall (the tests add an sshd of their own)."""
    require_root()
    with droplet_like_lab("sse", "swarm", firewall=False) as doc:
        yield doc


def up_fails(tmp_path: Path, lab_doc: dict, mode: str = "swarm", **settings: str) -> subprocess.CompletedProcess:
    proj = ssh_project(tmp_path, lab_doc, mode, **settings)
    try:
        return proj.up(check=False)
    finally:
        proj.destroy()
        assert proj.resources() == []


def test_unreachable_machine(tmp_path, plain_lab):
    machines = [{"address": n["docker_host"].rsplit("@", 1)[1], "privateAddress": n["address"]}
                for n in plain_lab["nodes"]]
    gone = machines[1]["address"].rsplit(".", 1)[0] + ".99"
    machines[1]["address"] = gone
    proc = up_fails(tmp_path, plain_lab, machines=json.dumps(machines))
    assert failed_line(proc, f"machine {gone}") == (
        f"machine {gone} does not answer SSH on port 22 (No route to host): check its address, that it is up "
        "and that sshd runs there")


def test_wrong_key(tmp_path, plain_lab):
    key = tmp_path / "id_other"
    host.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    machine = plain_lab["nodes"][0]["docker_host"].rsplit("@", 1)[1]
    proc = up_fails(tmp_path, plain_lab, sshPrivateKeyPath=str(key))
    assert failed_line(proc, f"machine {machine}") == (
        f"machine {machine} refused the key {key} for user root: add {key}.pub to ~root/.ssh/authorized_keys there, "
        "or set sshPrivateKeyPath/sshUser")


def test_host_key_not_in_known_hosts(tmp_path, plain_lab):
    machine = plain_lab["nodes"][0]["docker_host"].rsplit("@", 1)[1]
    with extra_sshd(plain_lab["stack"], 2222, ""):
        host.known_hosts_remove(lab.known_hosts_file(), f"overlay-bench-test:{plain_lab['stack']}")
        proc = up_fails(tmp_path, plain_lab, sshPort="2222")
    assert failed_line(proc, f"machine {machine}").startswith(
        f"machine {machine} is not in ~/.ssh/known_hosts (the docker SDK refuses unknown hosts): check its host key")


def test_docker_missing_on_a_machine(tmp_path, plain_lab):
    machine = plain_lab["nodes"][0]["docker_host"].rsplit("@", 1)[1]
    # A session whose PATH has no docker: as on a machine without the package.
    with extra_sshd(plain_lab["stack"], 2222, "SetEnv PATH=/nonexistent"):
        proc = up_fails(tmp_path, plain_lab, sshPort="2222")
    assert failed_line(proc, f"overlay-bench: machine {machine}:") == (
        f"overlay-bench: machine {machine}: Docker is not installed (no docker command): install it "
        "(Debian: apt-get install docker.io) and start it")


def test_classic_mode_on_engines_without_a_cluster_store(tmp_path, plain_lab):
    machine = plain_lab["nodes"][0]["docker_host"].rsplit("@", 1)[1]
    proc = up_fails(tmp_path, plain_lab, mode="classic")
    assert failed_line(proc, f"overlay-bench: machine {machine}:") == (
        f"overlay-bench: machine {machine}: the Docker engine has no cluster store (classic mode): set cluster-store "
        "(etcd://KEYSTORE:2379) and cluster-advertise (INTERFACE:2376) in /etc/docker/daemon.json and restart "
        "docker, or use swarm mode (pulumi config set mode swarm)")
    assert swarm_states(plain_lab["stack"], "overlay-bench") == [("inactive", False)] * 2


def test_a_machine_already_in_a_swarm_is_refused_and_left_as_it_was(tmp_path, plain_lab):
    """Delete undoes what create did and nothing more: a swarm the stack did not form stays."""
    machine = plain_lab["nodes"][0]["docker_host"].rsplit("@", 1)[1]
    with contextlib.closing(engine(plain_lab["stack"], 1)) as client:
        client.swarm.init(advertise_addr=plain_lab["nodes"][0]["address"])
        try:
            proc = up_fails(tmp_path, plain_lab)
            assert failed_line(proc, f"overlay-bench: machine {machine}:").startswith(
                f"overlay-bench: machine {machine}: the engine is already in a swarm (state: active): this stack "
                "forms its own")
            assert client.info()["Swarm"]["LocalNodeState"] == "active", "destroy left a swarm it did not form"
        finally:
            client.swarm.leave(force=True)
