"""The digitalocean stack under Pulumi mocks: droplets, user data, VPC, SSH key, firewall,
readiness and swarm commands, and the exported outputs (validated against the shared schema).

Only the cloud can say what its API returns; the mocks answer as the SDK's functions do
(wire names: getSshKeys returns `sshKeys`, getVpc `region`), and every assertion is on a
real property value the program declared.
"""
from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from stacks import classic, config, digitalocean, firewall, outputs, remote_cluster
from tests.test_program_support import (
    PRIVATE_IPS,
    PUBLIC_IPS,
    built_documents,
    program_error,
    run_program,
    ssh_key_pair,
)

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_digitalocean.*"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_command.*")]

DROPLET = "digitalocean:index/droplet:Droplet"
SSH_KEY = "digitalocean:index/sshKey:SshKey"
GET_SSH_KEYS = "digitalocean:index/getSshKeys:getSshKeys"
GET_VPC = "digitalocean:index/getVpc:getVpc"
REMOTE = "command:remote:Command"
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # how a secret value travels to the engine
TOKEN = "SWMTKN-1-0123456789abcdef-manager-token"
DOCKER_API_PORTS = {2375, 2376}
# DigitalOcean firewalls take at most 50 rules (inbound and outbound together).
FIREWALL_RULE_LIMIT = 50
ESP = ("DigitalOcean cloud firewalls pass only TCP, UDP and ICMP, and the encrypted overlay's "
       "data travels as IPsec ESP (IP protocol 50)")


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return ssh_key_pair(tmp_path, "bench_key")


@pytest.fixture
def fingerprint(keys) -> str:
    """What DigitalOcean calls the key: ssh-keygen's MD5 fingerprint, without `MD5:`."""
    out = subprocess.run(["ssh-keygen", "-l", "-E", "md5", "-f", str(keys[0])], check=True,
                         capture_output=True, text=True).stdout
    return out.split()[1].removeprefix("MD5:")


@pytest.fixture
def base(keys, monkeypatch) -> dict:
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", "dop_v1_env_token")
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return {"provider": "digitalocean", "sshPublicKeyPath": str(keys[0]),
            "sshAllowedCidrs": '["198.51.100.7/32", "203.0.113.64/26"]'}


def stdout(name: str, inputs: dict) -> str:
    """What the commands print on droplets: the token, and each engine's facts."""
    if name == "swarm-token":
        return TOKEN + "\n"
    if name.endswith("-ready") and name.startswith("node"):
        store = f"cluster_store={classic.store_url(PRIVATE_IPS['keystore'])}\n" \
            if "ClusterStore" in inputs["create"] else ""
        return f"name=ob-digitalocean-{name[:-len('-ready')]}\niface=eth1\ncidr=10.110.0.3/20\nmtu_bytes=1500\n{store}"
    return ""


class Account:
    """What the mocked API holds: SSH keys (as getSshKeys returns them) and VPCs (getVpc)."""

    def __init__(self, ssh_keys: list[dict] | None = None, vpcs: dict[str, dict] | None = None):
        self.ssh_keys = ssh_keys or []
        self.vpcs = vpcs or {}

    def __call__(self, token: str, args: dict) -> dict:
        if token == GET_SSH_KEYS:
            wanted = {f["key"]: set(f["values"]) for f in args.get("filters") or []}
            return {"sshKeys": [k for k in self.ssh_keys
                                if all(k[field] in values for field, values in wanted.items())]}
        if token == GET_VPC:
            if args.get("id") not in self.vpcs:
                raise Exception(f"Error retrieving VPC: 404 vpc {args.get('id')} not found")
            return self.vpcs[args["id"]]
        raise AssertionError(f"unexpected invoke {token}")


def run(cfg: dict, account: Account | None = None, **kwargs):
    return run_program(cfg, "digitalocean", command_stdout=stdout, invoke=account or Account(), **kwargs)


def is_secret(value) -> bool:
    return isinstance(value, dict) and SECRET_SIG in value


def secret_value(value):
    assert is_secret(value), f"not a secret: {value!r}"
    return value["value"]


def ports_of(rule: dict) -> set[int]:
    text = rule.get("portRange")
    if not text:
        return set()
    lo, _, hi = text.partition("-")
    return set(range(int(lo), int(hi or lo) + 1))


# --- classic mode (the 2015 topology, on etcd) --------------------------------------------------

def test_classic_droplets_images_sizes_regions(base, fingerprint):
    r = run(base)
    droplets = {d.name: d for d in r.mocks.of_type(DROPLET)}
    assert sorted(droplets) == ["keystore", "node1", "node2"]
    for d in droplets.values():
        assert d.inputs["image"] == "debian-12-x64", d.urn
        assert d.inputs["size"] == "s-1vcpu-1gb", d.urn
        assert d.inputs["region"] == "ams3", d.urn
        assert d.inputs["sshKeys"] == [fingerprint], d.urn
        assert d.inputs["tags"] == ["ob-digitalocean"], d.urn
        assert d.inputs["ipv6"] is False, d.urn
    assert droplets["node1"].inputs["name"] == "ob-digitalocean-node1"
    project = r.mocks.named("project")
    assert sorted(project.inputs["resources"]) == ["do:droplet:keystore", "do:droplet:node1",
                                                   "do:droplet:node2"], project.urn


def test_configured_image_size_region_and_node_count(base):
    base.update(image="ubuntu-24-04-x64", size="s-2vcpu-2gb", region="fra1", nodes="3")
    r = run(base)
    droplets = r.mocks.of_type(DROPLET)
    assert sorted(d.name for d in droplets) == ["keystore", "node1", "node2", "node3"]
    for d in droplets:
        assert (d.inputs["image"], d.inputs["size"], d.inputs["region"]) == \
            ("ubuntu-24-04-x64", "s-2vcpu-2gb", "fra1"), d.urn
    assert [n["role"] for n in r.exports["nodes"]] == ["manager", "worker", "worker"]


def test_keystore_runs_debians_etcd_with_the_labs_arguments(base):
    r = run(base)
    ks = r.mocks.named("keystore")
    assert ks.inputs["userData"].startswith("#cloud-config\n"), ks.urn
    doc = yaml.safe_load(ks.inputs["userData"])
    assert doc["packages"] == ["etcd-server"], ks.urn  # no engine, no Consul
    drop_in = {f["path"]: f["content"] for f in doc["write_files"]}[digitalocean.ETCD_DROP_IN]
    exec_start = [line for line in drop_in.splitlines() if line.startswith("ExecStart=")]
    assert exec_start[0] == "ExecStart=", ks.urn  # Debian's own ExecStart is reset
    argv = shlex.split(exec_start[1].removeprefix("ExecStart="))
    # The lab runs `etcd` with classic.etcd_args(address, data dir): the same arguments.
    assert argv == ["/usr/bin/etcd", *classic.etcd_args("${KEYSTORE_ADDRESS}", digitalocean.ETCD_DATA_DIR)]
    assert "--enable-v2=true" in argv
    assert f"EnvironmentFile={digitalocean.KEYSTORE_ENV_FILE}" in drop_in
    # The address is the VPC interface's, written before the package starts etcd.
    bootcmd = " ".join(" ".join(c) if isinstance(c, list) else c for c in doc["bootcmd"])
    assert "ip -4 -o addr show dev eth1" in bootcmd and "KEYSTORE_ADDRESS=" in bootcmd
    assert digitalocean.KEYSTORE_ENV_FILE in bootcmd
    assert ["systemctl", "restart", "etcd"] in doc["runcmd"], ks.urn


def test_nodes_cluster_store_is_the_labs_setting_pointing_at_the_keystore(base):
    r = run(base)
    for name in ("node1", "node2"):
        node = r.mocks.named(name)
        doc = yaml.safe_load(node.inputs["userData"])
        files = {f["path"]: f["content"] for f in doc["write_files"]}
        daemon = json.loads(files["/etc/docker/daemon.json"])
        assert daemon == {"cluster-store": f"etcd://{PRIVATE_IPS['keystore']}:2379",
                          "cluster-advertise": "eth1:2376"}, node.urn
        assert daemon == classic.engine_settings(PRIVATE_IPS["keystore"], "eth1"), node.urn
        assert doc["packages"] == ["docker.io"], node.urn
        # The engine exposes no TCP API: nothing adds a -H/hosts listener.
        assert "hosts" not in daemon and "-H" not in node.inputs["userData"], node.urn


def test_readiness_waits_for_the_store_then_for_each_engine_with_its_own_words(base):
    r = run(base)
    ks_ready = r.mocks.named("keystore-ready")
    assert ks_ready.inputs["create"] == digitalocean.keystore_ready_command(), ks_ready.urn
    assert secret_value(ks_ready.inputs["connection"])["host"] == PUBLIC_IPS["keystore"]
    store = f"etcd://{PRIVATE_IPS['keystore']}:2379"
    for i in (1, 2):
        # The shared checks (stacks/remote_cluster.py) after the droplet's own wait; every
        # engine's cluster store must be the first one's.
        ready = r.mocks.named(f"node{i}-ready")
        assert ready.inputs["create"] == remote_cluster.ready_script(
            PUBLIC_IPS[f"node{i}"], PRIVATE_IPS[f"node{i}"], "classic", store if i > 1 else None,
            boot_check=digitalocean.engine_ready_command(store)), ready.urn
        assert "systemctl is-failed --quiet docker" in ready.inputs["create"]
        assert f"/dev/tcp/{PRIVATE_IPS['keystore']}/2379" in ready.inputs["create"]
        deps = [d._name for d in r.options[f"node{i}-ready"].depends_on or []]
        assert deps == ["keystore-ready"], f"{ready.urn} must wait for the key-value store"
    net = r.mocks.named("overlay-network")
    assert net.inputs["create"] == remote_cluster.network_script(
        PUBLIC_IPS["node1"], "overlay-bench", "classic", "digitalocean", 1500), net.urn
    # Made for the VPC's 1500-byte link: containers get 1450.
    assert "docker network create -d overlay --opt com.docker.network.driver.mtu=1500 --label " \
        "overlay-bench.stack=digitalocean overlay-bench" in net.inputs["create"], net.urn
    assert net.inputs["delete"] == remote_cluster.network_delete_script(
        PUBLIC_IPS["node1"], "overlay-bench", "classic", "digitalocean"), net.urn
    assert secret_value(net.inputs["connection"])["host"] == PUBLIC_IPS["node1"], net.urn


def test_classic_outputs_follow_schema(base, keys):
    r = run(base)
    doc = outputs.validate(r.exports)
    assert tuple(r.exports) == outputs.KEYS
    assert doc["provider"] == "digitalocean" and doc["mode"] == "classic"
    assert doc["stack"] == "digitalocean" and doc["schema_version"] == 3
    assert doc["keystore"] == {"name": "ob-digitalocean-keystore", "address": PRIVATE_IPS["keystore"],
                               "url": f"etcd://{PRIVATE_IPS['keystore']}:2379"}
    assert doc["nodes"] == [
        {"name": f"ob-digitalocean-node{i}", "role": "manager" if i == 1 else "worker",
         "address": PRIVATE_IPS[f"node{i}"], "docker_host": f"ssh://root@{PUBLIC_IPS[f'node{i}']}",
         "tls_cert_path": None, "ssh_key_path": str(keys[1])}
        for i in (1, 2)]
    assert doc["overlay_network"] == "overlay-bench" and doc["mtu_bytes"] == 1500
    assert doc["link_rate"] is None


@pytest.mark.parametrize("mode", ["classic", "swarm"])
def test_encrypted_overlay_is_declared_unsupported_with_the_reason(base, mode):
    base["mode"] = mode
    r = run(base)
    unsupported = r.exports["unsupported_networks"]
    assert set(unsupported) == {"overlay-encrypted", "macvlan", "ipvlan"}
    assert unsupported["overlay-encrypted"] == ESP
    # The droplet limits page: traffic not matching a droplet's IP/MAC address is restricted.
    for network, own in (("macvlan", "MAC and IP addresses of their own"),
                         ("ipvlan", "IP addresses that are not the droplet's")):
        assert unsupported[network].startswith("DigitalOcean drops traffic that does not match a "
                                               "droplet's own IP and MAC addresses"), unsupported
        assert own in unsupported[network]
    # No address range offered: the networks are skipped with the reasons above.
    assert r.exports.get("underlay_network") is None
    assert outputs.validate(r.exports)["underlay_network"] is None


def test_overlay_is_made_for_the_link_mtu_the_machines_have():
    facts = [{"name": "e1", "iface": "eth1", "mtu_bytes": 9000}, {"name": "e2", "iface": "eth1", "mtu_bytes": 9000}]
    assert remote_cluster.link_mtu(facts, 9000) == (9000, None)
    for mode, flags in (("swarm", "--attachable "), ("classic", "")):
        script = remote_cluster.network_script("203.0.113.1", "overlay-bench", mode, "do", 9000)
        assert f"docker network create -d overlay {flags}--opt com.docker.network.driver.mtu=9000 --label " \
            "overlay-bench.stack=do overlay-bench" in script, script


def test_a_link_mtu_the_droplets_do_not_have_stops_before_the_network():
    """The droplets report 1500 (facts), linkMtu says 9000: the network script only fails."""
    facts = [{"name": "e1", "iface": "eth1", "mtu_bytes": 1500}, {"name": "e2", "iface": "eth1", "mtu_bytes": 1500}]
    mtu, refused = remote_cluster.link_mtu(facts, 9000)
    assert refused == "engine e1's interface eth1 has MTU 1500, and linkMtu says 9000: set it with " \
                      "'pulumi config set linkMtu 1500'"
    script = remote_cluster.network_script("203.0.113.1", "overlay-bench", "swarm", "do", mtu, refused)
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=10)
    assert proc.returncode != 0 and "docker network create" not in script
    assert proc.stderr.strip().endswith(refused), proc.stderr
    assert remote_cluster.link_mtu(facts, None) == (1500, None)
    assert remote_cluster.link_mtu([*facts, {"name": "e3", "mtu_bytes": 9000}], None) == (1500, None)


@pytest.mark.parametrize("value", ["1279", "9217", "9k"])
def test_link_mtu_out_of_range_is_one_clear_error(base, value):
    base["linkMtu"] = value
    with pytest.raises(Exception, match="config overlay-bench:linkMtu is .*set it with `pulumi config set linkMtu 9000`"):
        run(base)


@pytest.mark.parametrize("mode", ["classic", "swarm"])
def test_exports_are_the_builders_document_and_not_secret(base, mode):
    """The mocks mark remote commands' stdout secret, as pulumi-command does; the document
    still exports in the clear (bench reads `pulumi stack output --json`, where a secret
    would read "[secret]")."""
    base["mode"] = mode
    with built_documents() as built:
        r = run(base)
    assert len(built) == 1 and r.exports == built[0]
    assert [key for key, secret in r.secret_outputs.items() if secret] == []


# --- VPC: the account's, never the stack's ---------------------------------------------------------

@pytest.mark.parametrize("mode", ["classic", "swarm"])
def test_droplets_join_the_regions_default_vpc_and_no_vpc_is_made(base, mode):
    base["mode"] = mode
    r = run(base)
    assert not [res for res in r.mocks.resources if "vpc" in res.typ.lower()]
    for d in r.mocks.of_type(DROPLET):
        assert "vpcUuid" not in d.inputs, f"{d.urn}: without vpc_uuid a droplet joins the default VPC"
    assert not [c for c in r.mocks.calls if c[0] == GET_VPC]


def test_a_configured_vpc_is_used_as_is(base):
    vpc = "c140286f-e6ce-4131-8b7b-df4590ce8d6a"
    base["vpcId"] = vpc
    r = run(base, Account(vpcs={vpc: {"id": vpc, "region": "ams3", "name": "mine", "default": False}}))
    assert (GET_VPC, {"id": vpc}) in [(t, {k: v for k, v in a.items() if v}) for t, a in r.mocks.calls]
    for d in r.mocks.of_type(DROPLET):
        assert d.inputs["vpcUuid"] == vpc, d.urn
    assert not [res for res in r.mocks.resources if "vpc" in res.typ.lower()]


def test_a_vpc_of_another_region_is_one_clear_error(base):
    vpc = "c140286f-e6ce-4131-8b7b-df4590ce8d6a"
    base["vpcId"] = vpc
    message, mocks = program_error(base, "digitalocean", command_stdout=stdout,
                                   invoke=Account(vpcs={vpc: {"id": vpc, "region": "nyc3"}}))
    assert "\n" not in message and "is a VPC of nyc3, not of ams3" in message
    assert "pulumi config rm vpcId" in message
    assert not mocks.resources


def test_vpc_id_must_look_like_one(base):
    base["vpcId"] = "my vpc"
    message, mocks = program_error(base, "digitalocean")
    assert "overlay-bench:vpcId 'my vpc' is not a VPC ID" in message and not mocks.resources


# --- the SSH key: reused when the account holds it ---------------------------------------------------

def test_fingerprint_is_ssh_keygens_md5(keys, fingerprint):
    assert digitalocean.md5_fingerprint(keys[0].read_text()) == fingerprint
    assert len(fingerprint.split(":")) == 16


def test_key_missing_from_the_account_is_created(base, keys, fingerprint):
    r = run(base, Account(ssh_keys=[]))
    assert [(t, a["filters"]) for t, a in r.mocks.calls if t == GET_SSH_KEYS] == \
        [(GET_SSH_KEYS, [{"key": "fingerprint", "values": [fingerprint]}])]
    key = r.mocks.named("ssh-key")
    assert key.typ == SSH_KEY
    assert key.inputs == {"name": "ob-digitalocean-key", "publicKey": keys[0].read_text().strip()}, key.urn


def test_key_already_on_the_account_is_reused_not_created(base, fingerprint):
    held = {"id": 512189, "name": "laptop", "fingerprint": fingerprint, "publicKey": "ssh-ed25519 ..."}
    r = run(base, Account(ssh_keys=[held]))
    assert not r.mocks.of_type(SSH_KEY), "DigitalOcean refuses a key that is already on the account"
    for d in r.mocks.of_type(DROPLET):
        assert d.inputs["sshKeys"] == [fingerprint], d.urn


def test_key_this_stack_created_stays_the_stacks(base, fingerprint):
    """On the next `pulumi up` the account holds the key the stack made: it is declared
    again (kept, and deleted by destroy), not handed over to the account."""
    ours = {"id": 7, "name": "ob-digitalocean-key", "fingerprint": fingerprint, "publicKey": "ssh-ed25519 ..."}
    r = run(base, Account(ssh_keys=[ours]))
    assert r.mocks.named("ssh-key").inputs["name"] == "ob-digitalocean-key"


# --- encrypted private keys -------------------------------------------------------------------------

@pytest.fixture
def protected(tmp_path, base) -> dict:
    public, private = ssh_key_pair(tmp_path, "locked_key", passphrase="correct horse")
    base["sshPublicKeyPath"] = str(public)
    return base


def test_protected_key_with_its_passphrase_as_a_secret(protected):
    r = run(protected, secret_config={"overlay-bench:sshPrivateKeyPassword": "correct horse"})
    for res in r.mocks.of_type(REMOTE):
        conn = secret_value(res.inputs["connection"])
        assert conn["privateKey"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----"), res.urn
        assert conn["privateKeyPassword"] == "correct horse", res.urn
        assert "agentSocketPath" not in conn, res.urn
    assert "correct horse" not in json.dumps(r.exports)


@pytest.mark.parametrize("secret, password, expected", [
    (False, "correct horse", "is set in the clear: set it again as a secret with "
                             "`pulumi config set --secret sshPrivateKeyPassword`"),
    (True, "wrong", "does not unlock"),
])
def test_passphrase_must_be_a_secret_and_right(protected, secret, password, expected):
    if secret:
        message, mocks = program_error(protected, "digitalocean",
                                       secret_config={"overlay-bench:sshPrivateKeyPassword": password})
    else:
        message, mocks = program_error({**protected, "sshPrivateKeyPassword": password}, "digitalocean")
    assert expected in message and "\n" not in message and not mocks.resources
    assert password not in message


def test_protected_key_without_passphrase_or_agent_is_one_clear_error(protected):
    message, mocks = program_error(protected, "digitalocean")
    assert "has a passphrase" in message and "\n" not in message and not mocks.resources
    assert "pulumi config set --secret sshPrivateKeyPassword" in message and "ssh-add" in message


def test_passphrase_on_a_key_without_one_is_refused(base):
    message, _ = program_error(base, "digitalocean",
                               secret_config={"overlay-bench:sshPrivateKeyPassword": "x"})
    assert "has no passphrase" in message and "pulumi config rm sshPrivateKeyPassword" in message


@pytest.fixture
def agent(tmp_path, monkeypatch):
    """A real ssh-agent of our own; yields its socket path and a function that adds a key."""
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            subprocess.run(["sleep", "0.05"])
        env = {"SSH_AUTH_SOCK": str(sock), "PATH": "/usr/bin:/bin"}

        def add(private: Path, passphrase: str) -> None:
            subprocess.run(["setsid", "-w", "ssh-add", str(private)], env={
                **env, "SSH_ASKPASS": str(_askpass(tmp_path, passphrase)), "SSH_ASKPASS_REQUIRE": "force",
                "DISPLAY": ":0"}, check=True, capture_output=True, stdin=subprocess.DEVNULL)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        yield sock, add
    finally:
        proc.terminate()
        proc.wait(10)


def _askpass(directory: Path, passphrase: str) -> Path:
    script = directory / "askpass"
    script.write_text(f"#!/bin/sh\necho {shlex.quote(passphrase)}\n")
    script.chmod(0o700)
    return script


def test_protected_key_held_by_the_agent_logs_in_through_the_agent(protected, agent, tmp_path):
    sock, add = agent
    add(tmp_path / "locked_key", "correct horse")
    r = run(protected)
    for res in r.mocks.of_type(REMOTE):
        conn = secret_value(res.inputs["connection"])
        # pulumi-command offers the agent only when no privateKey is set.
        assert "privateKey" not in conn and "privateKeyPassword" not in conn, res.urn
        assert conn["agentSocketPath"] == str(sock), res.urn


def test_agent_without_the_key_is_one_clear_error(protected, agent):
    message, mocks = program_error(protected, "digitalocean")
    assert "the ssh-agent at SSH_AUTH_SOCK does not hold it" in message and "ssh-add" in message
    assert not mocks.resources


def test_agent_socket_that_does_not_answer_is_one_clear_error(protected, monkeypatch, tmp_path):
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "no-agent.sock"))
    message, _ = program_error(protected, "digitalocean")
    assert "does not answer" in message and "ssh-add" in message


# --- secrets' passphrase ------------------------------------------------------------------------------

def test_empty_passphrase_is_refused_for_a_passphrase_stack(base, tmp_path, monkeypatch):
    ctx = dict(env={"PULUMI_CONFIG_PASSPHRASE": "", "DIGITALOCEAN_TOKEN": "t"}, secrets_provider="passphrase")
    with pytest.raises(config.ConfigError) as caught:
        config.parse(base, "digitalocean", **ctx)
    message = str(caught.value)
    assert "its passphrase is empty" in message and "export PULUMI_CONFIG_PASSPHRASE" in message
    assert "pulumi stack change-secrets-provider passphrase" in message and "\n" not in message
    empty_file = tmp_path / "phrase"
    empty_file.write_text("\n")
    with pytest.raises(config.ConfigError, match="passphrase is empty"):
        config.parse(base, "digitalocean", env={"PULUMI_CONFIG_PASSPHRASE_FILE": str(empty_file),
                                                "DIGITALOCEAN_TOKEN": "t"}, secrets_provider="passphrase")
    # A real passphrase, another secrets provider, or the local stack: accepted.
    config.parse(base, "digitalocean", env={"PULUMI_CONFIG_PASSPHRASE": "s3cret", "DIGITALOCEAN_TOKEN": "t"},
                 secrets_provider="passphrase")
    config.parse(base, "digitalocean", env={"PULUMI_CONFIG_PASSPHRASE": "", "DIGITALOCEAN_TOKEN": "t"},
                 secrets_provider="awskms://alias/x")
    config.parse({}, "local", **ctx)


def test_secrets_provider_is_read_from_the_stack_file(tmp_path):
    stack_file = tmp_path / "Pulumi.do.yaml"
    stack_file.write_text("encryptionsalt: v1:abc:v1:def:ghi\nconfig: {}\n")
    assert config.secrets_provider(stack_file) == "passphrase"
    stack_file.write_text("secretsprovider: awskms://alias/x\nencryptedkey: abc\n")
    assert config.secrets_provider(stack_file) == "awskms://alias/x"
    stack_file.write_text("config: {}\n")
    assert config.secrets_provider(stack_file) is None
    assert config.secrets_provider(tmp_path / "missing.yaml") is None


# --- the firewall ------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["classic", "swarm"])
def test_firewall_only_ssh_is_open_to_the_world(base, mode):
    base["mode"] = mode
    r = run(base)
    fw = r.mocks.named("firewall")
    assert fw.inputs["tags"] == ["ob-digitalocean"], fw.urn  # applies to every droplet
    inbound = fw.inputs["inboundRules"]
    from_addresses = [rule for rule in inbound if rule.get("sourceAddresses")]
    assert from_addresses == [{"protocol": "tcp", "portRange": "22",
                               "sourceAddresses": ["198.51.100.7/32", "203.0.113.64/26"]}], fw.urn
    for rule in inbound:
        if rule is from_addresses[0]:
            continue
        assert rule.get("sourceTags") == ["ob-digitalocean"], f"{fw.urn}: {rule}"
        assert not rule.get("sourceDropletIds") and not rule.get("sourceLoadBalancerUids"), fw.urn
    opened = {(rule["protocol"], port) for rule in inbound for port in ports_of(rule)}
    cluster = [("tcp", 2379) if mode == "classic" else ("tcp", 2377),
               ("tcp", 7946), ("udp", 7946), ("udp", 4789)]
    for needed in cluster + [(proto, port) for proto in ("tcp", "udp") for port in range(5201, 5701)]:
        assert needed in opened, f"{fw.urn}: cluster port {needed} not open between droplets"
    assert ("tcp", 2377 if mode == "classic" else 2379) not in opened, f"{fw.urn}: a port {mode} mode does not use"
    assert ("tcp", 8500) not in opened, "no Consul any more"
    assert {rule["protocol"] for rule in fw.inputs["outboundRules"]} == {"tcp", "udp", "icmp"}


@pytest.mark.parametrize("mode", ["classic", "swarm"])
def test_firewall_is_the_shared_declaration_in_ranges(base, mode):
    """The rules the lab's --firewall applies (stacks/firewall.py), one rule per range."""
    base["mode"] = mode
    r = run(base)
    fw = r.mocks.named("firewall")
    expected = [{"protocol": rule.protocol,
                 **({"portRange": rule.port_range} if rule.port_range else {}),
                 **({"sourceAddresses": ["198.51.100.7/32", "203.0.113.64/26"]} if rule.source == firewall.OPERATOR
                    else {"sourceTags": ["ob-digitalocean"]})}
                for rule in firewall.inbound(mode, 2379)]
    assert fw.inputs["inboundRules"] == expected, fw.urn
    assert {"protocol": "tcp", "portRange": "5201-5700", "sourceTags": ["ob-digitalocean"]} in expected


@pytest.mark.parametrize("nodes", ["2", "50"])
@pytest.mark.parametrize("mode", ["classic", "swarm"])
def test_firewall_stays_within_digitaloceans_50_rules(base, nodes, mode):
    base.update(nodes=nodes, mode=mode)
    r = run(base)
    fw = r.mocks.named("firewall")
    rules = len(fw.inputs["inboundRules"]) + len(fw.inputs.get("outboundRules") or [])
    assert rules <= FIREWALL_RULE_LIMIT == firewall.MAX_RULES, \
        f"{fw.urn}: {rules} rules, DigitalOcean takes {FIREWALL_RULE_LIMIT}"


def test_benchmark_ports_are_bench_s_range_not_a_setting(base):
    """bench/ports.py is the contract: a key that opened other ports would break it."""
    base["benchmarkPorts"] = "[5001]"
    message, mocks = program_error(base, "digitalocean")
    assert message.startswith("unknown config key overlay-bench:benchmarkPorts") and not mocks.resources


@pytest.mark.parametrize("mode", ["classic", "swarm"])
def test_no_docker_api_port_anywhere(base, mode):
    base["mode"] = mode
    r = run(base)
    fw = r.mocks.named("firewall")
    for rule in fw.inputs["inboundRules"]:
        assert not ports_of(rule) & DOCKER_API_PORTS, f"{fw.urn}: {rule} opens the Docker API"
        assert rule["protocol"] == "icmp" or rule.get("portRange") not in (None, "", "1-65535"), \
            f"{fw.urn}: {rule} opens every port"


# --- swarm mode ------------------------------------------------------------------------------

def test_swarm_mode_droplets_and_join(base):
    base["mode"] = "swarm"
    r = run(base)
    assert sorted(d.name for d in r.mocks.of_type(DROPLET)) == ["node1", "node2"]
    for d in r.mocks.of_type(DROPLET):
        assert "cluster-store" not in d.inputs["userData"], d.urn
    for i in (1, 2):
        ready = r.mocks.named(f"node{i}-ready")
        assert ready.inputs["create"] == remote_cluster.ready_script(
            PUBLIC_IPS[f"node{i}"], PRIVATE_IPS[f"node{i}"], "swarm",
            boot_check=digitalocean.engine_ready_command(None)), ready.urn
        assert "ClusterStore" not in ready.inputs["create"]
    init = r.mocks.named("swarm-init")
    assert secret_value(init.inputs["connection"])["host"] == PUBLIC_IPS["node1"], init.urn
    assert (f"docker swarm init --advertise-addr {PRIVATE_IPS['node1']} --listen-addr {PRIVATE_IPS['node1']}:2377"
            in init.inputs["create"]), init.urn
    assert init.inputs["delete"] == remote_cluster.swarm_leave_script(force=True), init.urn

    token = r.mocks.named("swarm-token")
    assert token.inputs["create"] == "docker swarm join-token -q worker", token.urn
    assert token.inputs["logging"] == "none", f"{token.urn}: the token would be printed"
    assert "stdout" in r.options["swarm-token"].additional_secret_outputs, token.urn

    join = r.mocks.named("node2-join")
    conn = secret_value(join.inputs["connection"])
    assert (conn["host"], conn["user"]) == (PUBLIC_IPS["node2"], "root"), join.urn
    assert secret_value(join.inputs["stdin"]) == TOKEN + "\n", join.urn
    assert TOKEN not in join.inputs["create"], f"{join.urn}: token in the command line"
    assert join.inputs["create"] == remote_cluster.swarm_join_script(
        PUBLIC_IPS["node2"], PRIVATE_IPS["node2"], PRIVATE_IPS["node1"]), join.urn
    assert (f'\\"AdvertiseAddr\\":\\"{PRIVATE_IPS["node2"]}\\",\\"RemoteAddrs\\":[\\"{PRIVATE_IPS["node1"]}:2377\\"]'
            in join.inputs["create"]), join.urn
    assert join.inputs["delete"] == remote_cluster.swarm_leave_script(force=False), join.urn

    net = r.mocks.named("overlay-network")
    assert "docker network create -d overlay --attachable --opt com.docker.network.driver.mtu=1500 --label " \
        "overlay-bench.stack=digitalocean overlay-bench" \
        in net.inputs["create"], net.urn


def test_swarm_outputs_follow_schema(base):
    base.update(mode="swarm", nodes="3")
    r = run(base)
    doc = outputs.validate(r.exports)
    assert doc["keystore"] is None and doc["mode"] == "swarm"
    assert [n["docker_host"] for n in doc["nodes"]] == [f"ssh://root@{PUBLIC_IPS[f'node{i}']}" for i in (1, 2, 3)]
    assert [r.mocks.named(f"node{i}-join").name for i in (2, 3)] == ["node2-join", "node3-join"]


# --- secrets -----------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["classic", "swarm"])
def test_secrets_never_exported_and_private_key_only_as_secret(base, keys, mode):
    base["mode"] = mode
    r = run(base)
    material = keys[1].read_text().splitlines()[1]  # a line of the private key itself
    exported = json.dumps(r.exports)
    for secret in (material, "dop_v1_env_token", TOKEN):
        assert secret not in exported
    for res in r.mocks.resources:
        if res.typ == REMOTE:
            assert is_secret(res.inputs["connection"]), f"{res.urn}: connection (private key) not secret"
            assert secret_value(res.inputs["connection"])["privateKey"] == keys[1].read_text()
            visible = {k: v for k, v in res.inputs.items() if not is_secret(v)}
        else:
            visible = res.inputs
        text = json.dumps(visible)
        for secret in (material, "dop_v1_env_token", TOKEN):
            assert secret not in text, f"{res.urn} carries {secret} in the clear"
