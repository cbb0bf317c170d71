"""The 2015 DigitalOcean cluster, rebuilt: a key-value droplet and N Docker droplets.

classic (the post's topology): Consul in a container on the key-value droplet, engines
configured by cloud-init with `cluster-store=consul://KV:8500` and `cluster-advertise` on
the VPC interface. swarm: swarm mode; the first droplet initialises, the others join with
the manager's token (a Pulumi secret, carried on stdin, never logged).

The bench reaches every engine as `ssh://root@PUBLIC_IP` (docker SDK over SSH): no Docker
API port is opened anywhere. The 2015 classic Swarm manager is not deployed: it needs each
engine's TCP API reachable over the network, which this stack refuses to open (see
README.md, "The Pulumi program"); the bench pins containers to nodes by talking to each engine.

The Pulumi SDKs are imported where resources are declared: reading the configuration
never loads the DigitalOcean SDK.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from stacks import config, firewall, outputs, remote_cluster
from stacks.config import ConfigError, Key

if TYPE_CHECKING:
    import pulumi

REGION = Key("region", "ams3", "region slug", shown="`ams3` (as 2015)")
SIZE = Key("size", "s-1vcpu-1gb", "droplet size slug")
IMAGE = Key("image", "debian-12-x64", "image slug; any slug is accepted")
NAME_PREFIX = Key("namePrefix", None, "prefix of droplet, tag, VPC, firewall, key and project names",
                  shown="`ob-STACK`")
SSH_PUBLIC_KEY_PATH = Key("sshPublicKeyPath", "~/.ssh/id_ed25519.pub",
                          "your public key, installed on the droplets")
SSH_PRIVATE_KEY_PATH = Key(
    "sshPrivateKeyPath", None,
    "its private key: used by Pulumi (as a secret) to run the swarm and network commands, and "
    "by the bench (`ssh_key_path` in the outputs: the path, never the key)",
    shown="the public key path without `.pub`")
SSH_ALLOWED_CIDRS = Key("sshAllowedCidrs", None,
                        "networks SSH is open to, e.g. your address `/32`", shown="**required**")
TOKEN = Key("token", None, "API token: `pulumi config set --secret digitalocean:token ...`",
            shown="`DIGITALOCEAN_TOKEN` from the environment", namespace="digitalocean")
KEYS = (config.OVERLAY_NETWORK, REGION, SIZE, IMAGE, config.CONSUL_IMAGE, NAME_PREFIX,
        SSH_PUBLIC_KEY_PATH, SSH_PRIVATE_KEY_PATH, SSH_ALLOWED_CIDRS, TOKEN)

# DigitalOcean's images name the VPC interface eth1 (eth0 is public). libnetwork needs a
# host:port for cluster-advertise; nothing listens on 2376 (no TCP API, see module doc).
PRIVATE_INTERFACE = "eth1"
CONSUL_PORT = 8500
# DigitalOcean's VPC carries 1500-byte frames; overlay containers get 1450 (VXLAN's 50).
VPC_MTU_BYTES = 1500
METADATA_PRIVATE_IP = "http://169.254.169.254/metadata/v1/interfaces/private/0/ipv4/address"
# How long a new droplet's engine may take to answer, after cloud-init (which installs it).
ENGINE_WAIT_S = 600


@dataclasses.dataclass(frozen=True)
class DigitalOceanSettings:
    region: str
    size: str
    image: str
    consul_image: str
    name_prefix: str
    ssh_public_key_path: str
    ssh_public_key: str
    ssh_private_key_path: str
    ssh_allowed_cidrs: tuple[str, ...]


def parse(raw: Mapping[str, Any], common: config.Common,
          context: config.Context) -> DigitalOceanSettings:
    if TOKEN.qualified_name not in context.config_keys and not context.env.get("DIGITALOCEAN_TOKEN"):
        raise ConfigError("no DigitalOcean API token: set it with `pulumi config set --secret "
                          "digitalocean:token YOUR_TOKEN` or export DIGITALOCEAN_TOKEN")
    prefix = config.name_prefix(raw, NAME_PREFIX, common.stack, "hostname", "ob-lab")
    public_path = config.key_file(SSH_PUBLIC_KEY_PATH.get(raw), SSH_PUBLIC_KEY_PATH,
                                  "public key file")
    public_key = public_path.read_text().strip()
    if not public_key.startswith(("ssh-", "ecdsa-")):
        raise ConfigError(f"config {config.NAMESPACE}:sshPublicKeyPath {str(public_path)!r} is "
                          f"not an OpenSSH public key: point it at the .pub file, "
                          f"{config.fix('sshPublicKeyPath', SSH_PUBLIC_KEY_PATH.default)}")
    default_private = str(public_path)[:-4] if str(public_path).endswith(".pub") else ""
    private_path = config.key_file(raw.get(SSH_PRIVATE_KEY_PATH.name, default_private) or "",
                                   SSH_PRIVATE_KEY_PATH, "private key file")
    return DigitalOceanSettings(
        region=REGION.get(raw), size=SIZE.get(raw), image=IMAGE.get(raw),
        consul_image=config.CONSUL_IMAGE.get(raw), name_prefix=prefix,
        ssh_public_key_path=str(public_path), ssh_public_key=public_key,
        ssh_private_key_path=str(private_path), ssh_allowed_cidrs=_ssh_allowed_cidrs(raw))


def _ssh_allowed_cidrs(raw: Mapping[str, Any]) -> tuple[str, ...]:
    key = SSH_ALLOWED_CIDRS.name
    cidrs = config.listing(raw, SSH_ALLOWED_CIDRS)
    if not cidrs:
        raise ConfigError(f"config {config.NAMESPACE}:{key} is not set; SSH is open only to "
                          f"these networks: {config.list_fix(key, 'YOUR.PUBLIC.IP/32')}")
    networks = []
    for cidr in cidrs:
        try:
            networks.append(str(ipaddress.ip_network(cidr, strict=False)))
        except ValueError:
            raise ConfigError(f"config {config.NAMESPACE}:{key} has {cidr!r}, which is not a "
                              f"CIDR such as 203.0.113.7/32: "
                              f"{config.list_fix(key, '203.0.113.7/32')}") from None
    return tuple(networks)


def _cloud_config(doc: dict) -> str:
    return "#cloud-config\n" + yaml.safe_dump(doc, sort_keys=False, width=1000)


def keystore_user_data(consul_image: str) -> str:
    """Consul as in 2015 (`-server -bootstrap`), published on the VPC address only."""
    consul = ("docker inspect consul >/dev/null 2>&1 || "
              f"docker run -d --name consul --restart always -h consul "
              f"-p \"$(curl -fsS {METADATA_PRIVATE_IP}):{CONSUL_PORT}:{CONSUL_PORT}\" "
              f"{shlex.quote(consul_image)} agent -server -bootstrap -client 0.0.0.0")
    return _cloud_config({
        "package_update": True,
        "packages": ["docker.io", "curl"],
        "runcmd": [["systemctl", "enable", "--now", "docker"], ["sh", "-c", consul]],
    })


def node_user_data(mode: str, keystore_private_ip: str | None) -> str:
    """Debian's docker.io (20.10): the last engine line that still honours cluster-store."""
    doc: dict = {"package_update": True, "packages": ["docker.io"]}
    if mode == "classic":
        daemon = {
            "cluster-store": f"consul://{keystore_private_ip}:{CONSUL_PORT}",
            "cluster-advertise": f"{PRIVATE_INTERFACE}:2376",
        }
        # write_files runs before packages: the engine's first start already has it.
        doc["write_files"] = [{"path": "/etc/docker/daemon.json", "permissions": "0644",
                               "content": json.dumps(daemon, indent=2) + "\n"}]
    doc["runcmd"] = [["systemctl", "enable", "docker"], ["systemctl", "restart", "docker"]]
    return _cloud_config(doc)


def firewall_rules(settings: DigitalOceanSettings, mode: str, cluster_tag: pulumi.Input[str]):
    """stacks/firewall.py's inbound rules (the ones the lab's --firewall applies): SSH from
    the configured networks, the rest from the cluster's droplets only; outbound open."""
    import pulumi_digitalocean as do

    def source(rule: firewall.Rule) -> dict:
        if rule.source == firewall.OPERATOR:
            return {"source_addresses": list(settings.ssh_allowed_cidrs)}
        return {"source_tags": [cluster_tag]}

    inbound = [do.FirewallInboundRuleArgs(protocol=rule.protocol, port_range=rule.port_range, **source(rule))
               for rule in firewall.inbound(mode, CONSUL_PORT)]
    everywhere = ["0.0.0.0/0", "::/0"]
    outbound = [do.FirewallOutboundRuleArgs(protocol=p, port_range="1-65535",
                                            destination_addresses=everywhere)
                for p in ("tcp", "udp")]
    outbound.append(do.FirewallOutboundRuleArgs(protocol="icmp", destination_addresses=everywhere))
    return inbound, outbound


def declare(common: config.Common, settings: DigitalOceanSettings) -> pulumi.Output[dict]:
    import pulumi
    import pulumi_digitalocean as do
    from pulumi_command import remote

    prefix = settings.name_prefix
    tag = do.Tag("cluster", name=prefix)
    vpc = do.Vpc("vpc", name=f"{prefix}-vpc", region=settings.region,
                 description=f"overlay-bench stack {common.stack}")
    key = do.SshKey("ssh-key", name=f"{prefix}-key", public_key=settings.ssh_public_key)

    def droplet(name: str, user_data: pulumi.Input[str]) -> do.Droplet:
        return do.Droplet(name, name=f"{prefix}-{name}", image=settings.image, region=settings.region,
                          size=settings.size, vpc_uuid=vpc.id, ssh_keys=[key.fingerprint],
                          tags=[tag.name], user_data=user_data, ipv6=False)

    keystore = droplet("keystore", keystore_user_data(settings.consul_image)) \
        if common.mode == "classic" else None
    kv_ip = keystore.ipv4_address_private if keystore else None
    nodes = [droplet(f"node{i}", kv_ip.apply(lambda ip: node_user_data("classic", ip))
                     if kv_ip is not None else node_user_data("swarm", None))
             for i in range(1, common.nodes + 1)]
    machines = ([keystore] if keystore else []) + nodes

    inbound, outbound = firewall_rules(settings, common.mode, tag.name)
    do.Firewall("firewall", name=f"{prefix}-fw", tags=[tag.name],
                inbound_rules=inbound, outbound_rules=outbound)
    do.Project("project", name=prefix, description=f"overlay-bench stack {common.stack}",
               environment="Development", resources=[m.droplet_urn for m in machines])

    # Read here, sent only as a secret: Pulumi encrypts it in state and never prints it.
    private_key = pulumi.Output.secret(Path(settings.ssh_private_key_path).read_text())

    def ssh(machine: do.Droplet) -> remote.ConnectionArgs:
        # New droplets take a minute to start sshd: allow for it before failing.
        return remote.ConnectionArgs(host=machine.ipv4_address, user="root",
                                     private_key=private_key, dial_error_limit=40)

    keystore_ready = []
    if keystore:
        keystore_ready.append(remote.Command(
            "keystore-ready", connection=ssh(keystore),
            create=("cloud-init status --wait >/dev/null 2>&1; "
                    f"timeout {ENGINE_WAIT_S} sh -c 'until curl -fsS "
                    f"\"$(curl -fsS {METADATA_PRIVATE_IP}):{CONSUL_PORT}/v1/status/leader\" "
                    f"| grep -q :; do sleep 2; done'")))
    # After boot, the same commands as on machines people already have (the ssh provider).
    cluster = remote_cluster.declare(
        [remote_cluster.Machine(f"node{i}", n.ipv4_address, ssh(n), n.ipv4_address_private)
         for i, n in enumerate(nodes, start=1)],
        common.mode, common.overlay_network, common.stack, wait_s=ENGINE_WAIT_S, network_after=keystore_ready)

    def document(resolved: dict) -> dict:
        kv = resolved["keystore"]
        return outputs.document(
            stack=common.stack, provider=common.provider, mode=common.mode,
            nodes=[outputs.node(f"{prefix}-node{i}", private, f"ssh://root@{public}",
                                ssh_key_path=settings.ssh_private_key_path)
                   for i, (public, private) in enumerate(resolved["nodes"], start=1)],
            keystore=(outputs.keystore(f"{prefix}-keystore", kv, f"consul://{kv}:{CONSUL_PORT}")
                      if kv else None),
            overlay_network=common.overlay_network, link_rate=None, mtu_bytes=VPC_MTU_BYTES)

    return pulumi.Output.all(
        nodes=pulumi.Output.all(*[pulumi.Output.all(n.ipv4_address, n.ipv4_address_private)
                                  for n in nodes]),
        keystore=kv_ip,
        # Resolved (not a secret) once the network exists: a finished `pulumi up` means a
        # usable cluster.
        network=cluster.done,
    ).apply(document)
