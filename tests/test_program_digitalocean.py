"""The digitalocean stack under Pulumi mocks: droplets, user data, firewall, swarm join,
and the exported outputs (validated against the shared schema)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from stacks import firewall, outputs, remote_cluster
from tests.test_program_support import PRIVATE_IPS, PUBLIC_IPS, built_documents, run_program

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_digitalocean.*"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_command.*")]

DROPLET = "digitalocean:index/droplet:Droplet"
REMOTE = "command:remote:Command"
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # how a secret value travels to the engine
TOKEN = "SWMTKN-1-0123456789abcdef-manager-token"
DOCKER_API_PORTS = {2375, 2376}


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    private = tmp_path / "bench_key"
    private.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nPRIVATE-KEY-MATERIAL\n-----END OPENSSH PRIVATE KEY-----\n")
    public = tmp_path / "bench_key.pub"
    public.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPublicKeyMaterial00000000000000000 me@laptop\n")
    return public, private


@pytest.fixture
def base(keys, monkeypatch) -> dict:
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", "dop_v1_env_token")
    return {"provider": "digitalocean", "sshPublicKeyPath": str(keys[0]),
            "sshAllowedCidrs": '["198.51.100.7/32", "203.0.113.64/26"]'}


def stdout(name: str, inputs: dict) -> str:
    """What the commands print on droplets: the token, and each engine's facts."""
    if name == "swarm-token":
        return TOKEN + "\n"
    if name.endswith("-ready") and name.startswith("node"):
        classic = "ClusterStore" in inputs["create"]
        return (f"name=ob-digitalocean-{name[:-len('-ready')]}\nmtu_bytes=1500\n"
                + (f"cluster_store=consul://{PRIVATE_IPS['keystore']}:8500\n" if classic else ""))
    return ""


def run(cfg: dict):
    return run_program(cfg, "digitalocean", command_stdout=stdout)


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


# --- classic mode (the 2015 topology) -------------------------------------------------------

def test_classic_droplets_images_sizes_regions(base):
    r = run(base)
    droplets = {d.name: d for d in r.mocks.of_type(DROPLET)}
    assert sorted(droplets) == ["keystore", "node1", "node2"]
    for d in droplets.values():
        assert d.inputs["image"] == "debian-12-x64", d.urn
        assert d.inputs["size"] == "s-1vcpu-1gb", d.urn
        assert d.inputs["region"] == "ams3", d.urn
        assert d.inputs["vpcUuid"] == "vpc-id", d.urn  # the stack's VPC
        assert d.inputs["sshKeys"] == ["3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa"], d.urn
        assert d.inputs["tags"] == ["ob-digitalocean"], d.urn
    assert droplets["node1"].inputs["name"] == "ob-digitalocean-node1"
    key = r.mocks.named("ssh-key")
    assert key.inputs["publicKey"].startswith("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPublicKey"), key.urn
    vpc = r.mocks.named("vpc")
    assert vpc.inputs["region"] == "ams3", vpc.urn
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


def test_keystore_runs_consul_as_in_2015(base):
    r = run(base)
    ks = r.mocks.named("keystore")
    doc = yaml.safe_load(ks.inputs["userData"])
    assert ks.inputs["userData"].startswith("#cloud-config\n"), ks.urn
    assert "docker.io" in doc["packages"], ks.urn
    script = " ".join(" ".join(c) if isinstance(c, list) else c for c in doc["runcmd"])
    assert "docker run -d --name consul" in script, ks.urn
    assert "hashicorp/consul:1.22.7 agent -server -bootstrap" in script, ks.urn
    # Consul answers on the VPC address only (the firewall is the second fence).
    assert ':8500:8500' in script and "interfaces/private/0/ipv4/address" in script, ks.urn


def test_nodes_cluster_store_points_at_keystore_private_address(base):
    r = run(base)
    for name in ("node1", "node2"):
        node = r.mocks.named(name)
        doc = yaml.safe_load(node.inputs["userData"])
        files = {f["path"]: f["content"] for f in doc["write_files"]}
        daemon = json.loads(files["/etc/docker/daemon.json"])
        assert daemon == {"cluster-store": f"consul://{PRIVATE_IPS['keystore']}:8500",
                          "cluster-advertise": "eth1:2376"}, node.urn
        assert doc["packages"] == ["docker.io"], node.urn
        # The engine exposes no TCP API: nothing adds a -H/hosts listener.
        assert "hosts" not in daemon and "-H" not in node.inputs["userData"], node.urn


def test_classic_outputs_follow_schema(base, keys):
    r = run(base)
    doc = outputs.validate(r.exports)
    assert tuple(r.exports) == outputs.KEYS
    assert doc["provider"] == "digitalocean" and doc["mode"] == "classic"
    assert doc["stack"] == "digitalocean"
    assert doc["keystore"] == {"name": "ob-digitalocean-keystore", "address": PRIVATE_IPS["keystore"],
                               "url": f"consul://{PRIVATE_IPS['keystore']}:8500"}
    assert doc["nodes"] == [
        {"name": f"ob-digitalocean-node{i}", "role": "manager" if i == 1 else "worker",
         "address": PRIVATE_IPS[f"node{i}"], "docker_host": f"ssh://root@{PUBLIC_IPS[f'node{i}']}",
         "tls_cert_path": None, "ssh_key_path": str(keys[1])}
        for i in (1, 2)]
    assert doc["overlay_network"] == "overlay-bench" and doc["mtu_bytes"] == 1500
    assert doc["link_rate"] is None


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


def test_overlay_network_created_on_manager_after_engines_are_ready(base):
    r = run(base)
    net = r.mocks.named("overlay-network")
    assert net.inputs["create"] == remote_cluster.network_script(
        PUBLIC_IPS["node1"], "overlay-bench", "classic", "digitalocean"), net.urn
    assert "docker network create -d overlay --label overlay-bench.stack=digitalocean overlay-bench" \
        in net.inputs["create"], net.urn
    assert net.inputs["delete"] == remote_cluster.network_delete_script(
        PUBLIC_IPS["node1"], "overlay-bench", "classic", "digitalocean"), net.urn
    assert secret_value(net.inputs["connection"])["host"] == PUBLIC_IPS["node1"], net.urn
    ready = r.mocks.named("keystore-ready")
    assert "/v1/status/leader" in ready.inputs["create"], ready.urn
    # The droplets' engines are checked by the shared commands, waiting for cloud-init.
    for i in (1, 2):
        node = r.mocks.named(f"node{i}-ready")
        assert secret_value(node.inputs["connection"])["host"] == PUBLIC_IPS[f"node{i}"], node.urn
        assert "cloud-init status --wait" in node.inputs["create"], node.urn
        assert f"awk -v a={PRIVATE_IPS[f'node{i}']} " in node.inputs["create"], node.urn
    # Every engine's cluster store must be the first one's.
    assert f"= consul://{PRIVATE_IPS['keystore']}:8500 ]" in r.mocks.named("node2-ready").inputs["create"]


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
    cluster = [("tcp", 8500) if mode == "classic" else ("tcp", 2377),
               ("tcp", 7946), ("udp", 7946), ("udp", 4789)]
    for needed in cluster + [(proto, port) for proto in ("tcp", "udp") for port in range(5201, 5301)]:
        assert needed in opened, f"{fw.urn}: cluster port {needed} not open between droplets"
    assert ("tcp", 2377 if mode == "classic" else 8500) not in opened, f"{fw.urn}: a port {mode} mode does not use"
    assert {rule["protocol"] for rule in fw.inputs["outboundRules"]} == {"tcp", "udp", "icmp"}


@pytest.mark.parametrize("mode", ["classic", "swarm"])
def test_firewall_is_the_shared_declaration_in_ranges(base, mode):
    """The rules the lab's --firewall applies, one rule per range: well under the limit."""
    base["mode"] = mode
    r = run(base)
    fw = r.mocks.named("firewall")
    expected = [{"protocol": rule.protocol,
                 **({"portRange": rule.port_range} if rule.port_range else {}),
                 **({"sourceAddresses": ["198.51.100.7/32", "203.0.113.64/26"]} if rule.source == firewall.OPERATOR
                    else {"sourceTags": ["ob-digitalocean"]})}
                for rule in firewall.inbound(mode, 8500)]
    assert fw.inputs["inboundRules"] == expected, fw.urn
    assert {"protocol": "tcp", "portRange": "5201-5300", "sourceTags": ["ob-digitalocean"]} in expected
    assert len(fw.inputs["inboundRules"]) + len(fw.inputs["outboundRules"]) <= firewall.MAX_RULES


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
    assert "docker network create -d overlay --attachable --label overlay-bench.stack=digitalocean overlay-bench" \
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
    exported = json.dumps(r.exports)
    for secret in ("PRIVATE-KEY-MATERIAL", "dop_v1_env_token", TOKEN):
        assert secret not in exported
    for res in r.mocks.resources:
        if res.typ == REMOTE:
            assert is_secret(res.inputs["connection"]), f"{res.urn}: connection (private key) not secret"
            assert "PRIVATE-KEY-MATERIAL" in secret_value(res.inputs["connection"])["privateKey"]
            visible = {k: v for k, v in res.inputs.items() if not is_secret(v)}
        else:
            visible = res.inputs
        text = json.dumps(visible)
        for secret in ("PRIVATE-KEY-MATERIAL", "dop_v1_env_token", TOKEN):
            assert secret not in text, f"{res.urn} carries {secret} in the clear"
