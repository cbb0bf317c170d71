"""The virtualbox stack under Pulumi mocks: the post's docker-machine commands, their
deletes, the missing-tool error, and the outputs filled from `docker-machine ip` and the
machines' TLS certificate directories."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from stacks import outputs
from tests.test_program_support import built_documents, program_error, run_program

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_digitalocean.*"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_command.*")]

LOCAL = "command:local:Command"
SECRET_SIG = "4dabf18193072939515e22adb298388d"
TOKEN = "SWMTKN-1-virtualbox-worker-token"
IPS = {"keystore": "192.168.99.100", "node1": "192.168.99.101", "node2": "192.168.99.102",
       "node3": "192.168.99.103"}
CERTS = "/home/me/.docker/machine/machines"


@pytest.fixture
def tools(tmp_path: Path, monkeypatch) -> Path:
    """docker-machine, VBoxManage and docker on PATH (never run: the mocks answer)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("docker-machine", "VBoxManage", "docker"):
        path = bin_dir / tool
        path.write_text("#!/bin/sh\necho 'must not run in unit tests' >&2; exit 1\n")
        path.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))  # only these: the machine may have a real docker
    return bin_dir


def stdout(name: str, inputs: dict) -> str:
    if name in IPS:  # a machine: `docker-machine ip` then the certificate directory
        return f"Running pre-create checks...\n{IPS[name]}\n{CERTS}/mhs-{name}\n"
    return TOKEN + "\n" if name == "swarm-token" else ""


def run(cfg: dict):
    return run_program({"provider": "virtualbox", "machinePrefix": "mhs", **cfg}, "virtualbox",
                       command_stdout=stdout)


def test_classic_machines_are_the_posts_docker_machine_commands(tools):
    r = run({})
    keystore = r.mocks.named("keystore")
    create = keystore.inputs["create"]
    assert "docker-machine create -d virtualbox --virtualbox-memory 1024 --virtualbox-cpu-count 1 mhs-keystore" \
        in create, keystore.urn
    assert ("docker $(docker-machine config mhs-keystore) run -d --name consul --restart always "
            "-p 8500:8500 -h consul hashicorp/consul:1.22.7 agent -server -bootstrap") in create, keystore.urn
    assert keystore.inputs["delete"] == "docker-machine rm -y mhs-keystore", keystore.urn

    store = f"consul://{IPS['keystore']}:8500"
    master = r.mocks.named("node1")
    args = shlex.split(master.inputs["create"].split("||", 1)[1].split(";", 1)[0])
    assert args[:4] == ["docker-machine", "create", "-d", "virtualbox"], master.urn
    assert args[-1] == "mhs-node1", master.urn
    for flag in ["--swarm", "--swarm-master", f"--swarm-discovery={store}",
                 f"--engine-opt=cluster-store={store}", "--engine-opt=cluster-advertise=eth1:2376"]:
        assert flag in args, f"{master.urn}: {flag} missing from {args}"
    node = r.mocks.named("node2")
    args = shlex.split(node.inputs["create"].split("||", 1)[1].split(";", 1)[0])
    assert "--swarm" in args and "--swarm-master" not in args, node.urn
    assert f"--engine-opt=cluster-store={store}" in args and args[-1] == "mhs-node2", node.urn
    for name in ("node1", "node2"):
        res = r.mocks.named(name)
        assert res.inputs["delete"] == f"docker-machine rm -y mhs-{name}", res.urn
        # Same machine name after a replace: the old machine must go first.
        assert r.options[name].delete_before_replace is True, res.urn
        assert "docker-machine ip mhs-" + name in res.inputs["create"], res.urn

    net = r.mocks.named("overlay-network")
    assert net.inputs["create"].endswith(
        "docker $(docker-machine config mhs-node1) network create -d overlay overlay-bench"), net.urn


def test_classic_outputs_from_machine_ip_and_certs(tools):
    r = run({"nodes": "3"})
    doc = outputs.validate(r.exports)
    assert tuple(r.exports) == outputs.KEYS
    assert doc["keystore"] == {"name": "mhs-keystore", "address": IPS["keystore"],
                               "url": f"consul://{IPS['keystore']}:8500"}
    assert doc["nodes"] == [
        {"name": f"mhs-node{i}", "role": "manager" if i == 1 else "worker",
         "address": IPS[f"node{i}"], "docker_host": f"tcp://{IPS[f'node{i}']}:2376",
         "tls_cert_path": f"{CERTS}/mhs-node{i}", "ssh_key_path": None}
        for i in (1, 2, 3)]
    assert (doc["provider"], doc["mode"], doc["overlay_network"]) == ("virtualbox", "classic", "overlay-bench")


@pytest.mark.parametrize("mode", ["classic", "swarm"])
def test_exports_are_the_builders_document(tools, mode):
    with built_documents() as built:
        r = run({"mode": mode})
    assert len(built) == 1 and r.exports == built[0]
    assert [key for key, secret in r.secret_outputs.items() if secret] == []


def test_machine_options_reach_docker_machine(tools):
    r = run({"virtualboxMemoryMb": "2048", "virtualboxCpus": "2",
             "boot2dockerUrl": "file:///isos/boot2docker-v19.03.12.iso",
             "virtualboxHostonlyCidr": "192.168.56.1/24"})
    for name in ("keystore", "node1", "node2"):
        create = r.mocks.named(name).inputs["create"]
        assert ("--virtualbox-memory 2048 --virtualbox-cpu-count 2 --virtualbox-boot2docker-url "
                "file:///isos/boot2docker-v19.03.12.iso --virtualbox-hostonly-cidr 192.168.56.1/24") \
            in create, name


def test_swarm_mode_init_token_join(tools):
    r = run({"mode": "swarm"})
    names = sorted(res.name for res in r.mocks.of_type(LOCAL))
    assert names == ["node1", "node2", "node2-join", "overlay-network", "swarm-init", "swarm-token"]
    for name in ("node1", "node2"):
        assert "--swarm" not in r.mocks.named(name).inputs["create"], name
    init = r.mocks.named("swarm-init")
    assert f"docker $(docker-machine config mhs-node1) swarm init --advertise-addr {IPS['node1']}" \
        in init.inputs["create"], init.urn
    token = r.mocks.named("swarm-token")
    assert token.inputs["create"] == "docker $(docker-machine config mhs-node1) swarm join-token -q worker"
    assert token.inputs["logging"] == "none", token.urn
    assert "stdout" in r.options["swarm-token"].additional_secret_outputs, token.urn
    join = r.mocks.named("node2-join")
    env = join.inputs["environment"]
    assert SECRET_SIG in env and env["value"] == {"SWARM_TOKEN": TOKEN}, f"{join.urn}: token not secret"
    assert TOKEN not in join.inputs["create"], join.urn
    assert (f"docker $(docker-machine config mhs-node2) swarm join --token \"$SWARM_TOKEN\" "
            f"--advertise-addr eth1 {IPS['node1']}:2377") in join.inputs["create"], join.urn
    assert "--attachable overlay-bench" in r.mocks.named("overlay-network").inputs["create"]
    doc = outputs.validate(r.exports)
    assert doc["keystore"] is None and doc["mode"] == "swarm"
    assert TOKEN not in json.dumps(doc)


@pytest.mark.parametrize("missing", ["docker-machine", "VBoxManage", "docker"])
def test_missing_tool_is_one_clear_error(tools, missing):
    (tools / missing).unlink()
    message, mocks = program_error({"provider": "virtualbox"}, "virtualbox")
    assert f"needs `{missing}`, which is not on PATH" in message and "install" in message
    assert "\n" not in message
    assert not mocks.resources, "machines declared before the check"
