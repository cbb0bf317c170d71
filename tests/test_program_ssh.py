"""The ssh stack under Pulumi mocks: its configuration, the commands it declares on each
machine (stacks/remote_cluster.py, shared with the DigitalOcean stack), and the outputs.

The SSH login that `declare` tries first (stacks.ssh.probe) is replaced by a stand-in
here; tests/test_ssh_stack.py runs all of it for real against droplet-like lab nodes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from stacks import config, outputs, remote_cluster
from stacks import ssh as ssh_stack
from tests.test_program_support import program_error, run_program

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_command.*")]

REMOTE = "command:remote:Command"
SECRET_SIG = "4dabf18193072939515e22adb298388d"
TOKEN = "SWMTKN-1-0123456789abcdef-worker-token"
HOST_KEYS = {"198.51.100.10": "ssh-ed25519 AAAAHostKeyOfMachineOne", "198.51.100.11": "ssh-ed25519 AAAAHostKeyOfTwo",
             "server3.example.com": "ssh-ed25519 AAAAHostKeyOfThree"}
MACHINES = [{"address": "198.51.100.10", "privateAddress": "10.0.0.10"},
            {"address": "198.51.100.11", "privateAddress": "10.0.0.11"}]


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "id_bench"
    path.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nPRIVATE-KEY-MATERIAL\n-----END OPENSSH PRIVATE KEY-----\n")
    return path


@pytest.fixture
def probed(monkeypatch) -> list[str]:
    """The machines `declare` logged in to first (it answers with their host keys)."""
    seen = []

    def probe(settings, machine):
        seen.append(machine.address)
        return HOST_KEYS[machine.address]

    monkeypatch.setattr(ssh_stack, "probe", probe)
    return seen


@pytest.fixture
def base(key) -> dict:
    return {"provider": "ssh", "mode": "swarm", "sshPrivateKeyPath": str(key), "machines": json.dumps(MACHINES)}


def stdout(name: str, inputs: dict) -> str:
    """What the machines print: the worker token, and each engine's facts."""
    if name == "swarm-token":
        return TOKEN + "\n"
    if name.endswith("-ready"):
        store = "cluster_store=etcd://10.0.0.2:2379\n" if "ClusterStore" in inputs["create"] else ""
        return f"name=server-{name[4]}\nmtu_bytes=9000\n{store}"
    return ""


def run(cfg: dict):
    return run_program(cfg, "static", command_stdout=stdout)


def secret_value(value):
    assert isinstance(value, dict) and SECRET_SIG in value, f"not a secret: {value!r}"
    return value["value"]


# --- what it declares ------------------------------------------------------------------------

def test_swarm_on_two_machines(base, key, probed):
    r = run(base)
    assert probed == ["198.51.100.10", "198.51.100.11"]
    commands = {c.name: c for c in r.mocks.of_type(REMOTE)}
    assert sorted(commands) == ["node1-ready", "node2-join", "node2-ready", "overlay-network", "swarm-init",
                                "swarm-token"]
    for name, c in commands.items():
        conn = secret_value(c.inputs["connection"])
        machine = MACHINES[1] if name.startswith("node2") else MACHINES[0]
        assert conn == {"host": machine["address"], "port": 22, "user": "root",
                        "privateKey": key.read_text(), "hostKey": HOST_KEYS[machine["address"]],
                        "dialErrorLimit": ssh_stack.DIAL_ERROR_LIMIT, "perDialTimeout": ssh_stack.PER_DIAL_TIMEOUT_S}, \
            c.urn
        assert c.inputs["addPreviousOutputInEnv"] is False, c.urn
        assert c.inputs["triggers"] == [machine["address"], machine["privateAddress"]], c.urn
        assert r.options[name].delete_before_replace, c.urn
    assert commands["node1-ready"].inputs["create"] == remote_cluster.ready_script("198.51.100.10", "10.0.0.10", "swarm")
    assert commands["swarm-init"].inputs["create"] == remote_cluster.swarm_init_script("198.51.100.10", "10.0.0.10")
    assert commands["swarm-init"].inputs["delete"] == remote_cluster.swarm_leave_script(force=True)
    token = commands["swarm-token"]
    assert token.inputs["create"] == "docker swarm join-token -q worker" and token.inputs["logging"] == "none"
    assert "stdout" in r.options["swarm-token"].additional_secret_outputs
    join = commands["node2-join"]
    assert join.inputs["create"] == remote_cluster.swarm_join_script("198.51.100.11", "10.0.0.11", "10.0.0.10")
    assert secret_value(join.inputs["stdin"]) == TOKEN + "\n"
    assert join.inputs["delete"] == remote_cluster.swarm_leave_script(force=False)
    net = commands["overlay-network"]
    assert net.inputs["create"] == remote_cluster.network_script("198.51.100.10", "overlay-bench", "swarm", "static")
    assert net.inputs["delete"] == remote_cluster.network_delete_script("198.51.100.10", "overlay-bench", "swarm",
                                                                        "static")
    # Order: checks, then init, then the join; the network after both.
    depends = {name: sorted(d._name for d in r.options[name].depends_on) for name in commands}
    assert depends["swarm-init"] == ["node1-ready", "node2-ready"]
    assert depends["node2-join"] == ["swarm-init"]
    assert depends["overlay-network"] == ["node2-join", "swarm-init"]


def test_swarm_outputs_follow_the_contract(base, key, probed):
    r = run(base)
    doc = outputs.validate(r.exports)
    assert tuple(r.exports) == outputs.KEYS
    assert doc == {
        "schema_version": outputs.SCHEMA_VERSION, "stack": "static", "provider": "ssh", "mode": "swarm",
        "nodes": [{"name": f"server-{i}", "role": "manager" if i == 1 else "worker",
                   "address": f"10.0.0.1{i - 1}", "docker_host": f"ssh://root@198.51.100.1{i - 1}",
                   "tls_cert_path": None, "ssh_key_path": str(key)} for i in (1, 2)],
        "keystore": None, "overlay_network": "overlay-bench", "link_rate": None, "mtu_bytes": 9000,
        "unsupported_networks": {}}
    assert [k for k, secret in r.secret_outputs.items() if secret] == []


def test_classic_checks_every_store_and_makes_the_network_through_it(base, probed):
    base["mode"] = "classic"
    r = run(base)
    commands = {c.name: c for c in r.mocks.of_type(REMOTE)}
    assert sorted(commands) == ["node1-ready", "node1-stale-endpoints", "node2-ready", "node2-stale-endpoints",
                                "overlay-network"]
    assert commands["node1-ready"].inputs["create"] == remote_cluster.ready_script(
        "198.51.100.10", "10.0.0.10", "classic")
    # Each machine, before the network goes, removes its own stale endpoints from it.
    for i, address in ((1, "198.51.100.10"), (2, "198.51.100.11")):
        stale = commands[f"node{i}-stale-endpoints"]
        assert stale.inputs["create"] == "true"
        assert stale.inputs["delete"] == remote_cluster.stale_endpoints_script(address, "overlay-bench")
        assert secret_value(stale.inputs["connection"])["host"] == address
        assert [d._name for d in r.options[f"node{i}-stale-endpoints"].depends_on] == ["overlay-network"]
    # The second machine's engine must use the first one's store.
    assert commands["node2-ready"].inputs["create"] == remote_cluster.ready_script(
        "198.51.100.11", "10.0.0.11", "classic", expected_store="etcd://10.0.0.2:2379")
    net = commands["overlay-network"]
    assert "docker network create -d overlay --label overlay-bench.stack=static overlay-bench" in net.inputs["create"]
    assert "--attachable" not in net.inputs["create"]
    assert sorted(d._name for d in r.options["overlay-network"].depends_on) == ["node1-ready", "node2-ready"]
    doc = outputs.validate(r.exports)
    assert doc["keystore"] == {"name": "keystore", "address": "10.0.0.2", "url": "etcd://10.0.0.2:2379"}


def test_user_port_host_names_and_default_private_address(base, probed):
    base.update(sshUser="bench", sshPort="2222", overlayNetwork="ovl",
                machines=json.dumps([{"address": "server3.example.com", "privateAddress": "10.0.0.3"},
                                     {"address": "198.51.100.11"}]))
    r = run(base)
    conn = secret_value(r.mocks.named("node1-ready").inputs["connection"])
    assert (conn["host"], conn["port"], conn["user"]) == ("server3.example.com", 2222, "bench")
    doc = outputs.validate(r.exports)
    assert [(n["address"], n["docker_host"]) for n in doc["nodes"]] == [
        ("10.0.0.3", "ssh://bench@server3.example.com:2222"), ("198.51.100.11", "ssh://bench@198.51.100.11:2222")]
    assert doc["overlay_network"] == "ovl"
    assert ssh_stack.known_hosts_name(config.parse(base, "s").settings, ssh_stack.Machine("h", "10.0.0.3")) \
        == "[h]:2222"


def test_secrets_never_in_the_clear(base, probed):
    r = run(base)
    exported = json.dumps(r.exports)
    for res in r.mocks.resources:
        visible = {k: v for k, v in res.inputs.items() if not (isinstance(v, dict) and SECRET_SIG in v)}
        for secret in ("PRIVATE-KEY-MATERIAL", TOKEN):
            assert secret not in json.dumps(visible), f"{res.urn} carries {secret} in the clear"
            assert secret not in exported


# --- configuration errors, one line each, nothing declared -------------------------------------

@pytest.mark.parametrize("machines,expected", [
    (None, "config overlay-bench:machines is not set: set them with `pulumi config set --path 'machines[0].address'"),
    ("not json", "config overlay-bench:machines is not a list of {address, privateAddress}"),
    ('[{"address": "198.51.100.10"}]', "config overlay-bench:machines lists 1 machine(s): a cluster here takes 2 to 50"),
    ('[{"address": "bad host!"}, {"address": "198.51.100.11"}]', "machines[0].address 'bad host!' is not an address"),
    ('[{"address": "a.example"}, {"address": "198.51.100.11"}]', "machines[0].privateAddress '' is not an IPv4"),
    ('[{"address": "198.51.100.10", "privateAddress": "10.0.0.1"}, {"address": "198.51.100.11", '
     '"privateAddress": "10.0.0.1"}]', "names 10.0.0.1 twice"),
    ('[{"address": "198.51.100.10", "port": 2}, {"address": "198.51.100.11"}]', "machines[0] has 'port'"),
])
def test_bad_machines(base, probed, machines, expected):
    if machines is None:
        del base["machines"]
    else:
        base["machines"] = machines
    message, mocks = program_error(base)
    assert expected in message and "\n" not in message, message
    assert not mocks.resources and not probed


@pytest.mark.parametrize("key,value,expected", [
    ("sshUser", "root user", "config overlay-bench:sshUser 'root user' is not a user name"),
    ("sshPort", "70000", "config overlay-bench:sshPort is 70000, outside 1..65535"),
    ("sshPrivateKeyPath", "/nonexistent/key", "private key file '/nonexistent/key' does not exist"),
    ("nodes", "3", "config overlay-bench:nodes is 3 but machines lists 2"),
    ("region", "ams3", "config overlay-bench:region does not apply to provider ssh"),
])
def test_bad_settings(base, probed, key, value, expected):
    base[key] = value
    message, mocks = program_error(base)
    assert expected in message and "\n" not in message, message
    assert not mocks.resources and not probed


def test_a_machine_that_fails_the_login_stops_before_anything_is_declared(base, monkeypatch):
    def probe(settings, machine):
        raise config.ConfigError(f"machine {machine.address} does not answer SSH on port 22 (No route to host)")

    monkeypatch.setattr(ssh_stack, "probe", probe)
    message, mocks = program_error(base)
    assert message == "machine 198.51.100.10 does not answer SSH on port 22 (No route to host)"
    assert not mocks.resources
