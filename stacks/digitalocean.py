"""The 2015 DigitalOcean cluster, rebuilt: a key-value droplet and N Docker droplets.

classic (the post's topology): Consul in a container on the key-value droplet, engines
configured by cloud-init with `cluster-store=consul://KV:8500` and `cluster-advertise` on
the VPC interface. swarm: swarm mode; the first droplet initialises, the others join with
the manager's token (a Pulumi secret, carried on stdin, never logged).

The bench reaches every engine as `ssh://root@PUBLIC_IP` (docker SDK over SSH): no Docker
API port is opened anywhere. The 2015 classic Swarm manager is not deployed: it needs each
engine's TCP API reachable over the network, which this stack refuses to open (see
README.md, "The Pulumi program"); the bench pins containers to nodes by talking to each engine.
"""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import pulumi
import pulumi_digitalocean as do
import yaml
from pulumi_command import remote

from stacks import outputs
from stacks.config import StackConfig

# DigitalOcean's images name the VPC interface eth1 (eth0 is public). libnetwork needs a
# host:port for cluster-advertise; nothing listens on 2376 (no TCP API, see module doc).
PRIVATE_INTERFACE = "eth1"
CONSUL_PORT = 8500
# DigitalOcean's VPC carries 1500-byte frames; overlay containers get 1450 (VXLAN's 50).
VPC_MTU_BYTES = 1500
METADATA_PRIVATE_IP = "http://169.254.169.254/metadata/v1/interfaces/private/0/ipv4/address"
# Waits for cloud-init (it may report "degraded" and exit non-zero: the engine check decides).
WAIT_FOR_ENGINE = ("cloud-init status --wait >/dev/null 2>&1; "
                   "timeout 600 sh -c 'until docker info >/dev/null 2>&1; do sleep 2; done'")
SWARM_STATE = "docker info --format '{{.Swarm.LocalNodeState}}'"


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


def firewall_rules(cfg: StackConfig, cluster_tag: pulumi.Input[str]):
    """SSH from the configured networks; cluster ports only between the cluster's droplets."""
    inbound = [do.FirewallInboundRuleArgs(protocol="tcp", port_range="22",
                                          source_addresses=list(cfg.ssh_allowed_cidrs))]
    cluster = [("tcp", str(CONSUL_PORT)),   # KV store (classic)
               ("tcp", "2377"),             # swarm management
               ("tcp", "7946"), ("udp", "7946"),  # gossip (serf)
               ("udp", "4789")]             # VXLAN data
    for port in cfg.benchmark_ports:
        cluster += [("tcp", str(port)), ("udp", str(port))]
    inbound += [do.FirewallInboundRuleArgs(protocol=proto, port_range=port,
                                           source_tags=[cluster_tag])
                for proto, port in cluster]
    inbound.append(do.FirewallInboundRuleArgs(protocol="icmp", source_tags=[cluster_tag]))
    everywhere = ["0.0.0.0/0", "::/0"]
    outbound = [do.FirewallOutboundRuleArgs(protocol=p, port_range="1-65535",
                                            destination_addresses=everywhere)
                for p in ("tcp", "udp")]
    outbound.append(do.FirewallOutboundRuleArgs(protocol="icmp", destination_addresses=everywhere))
    return inbound, outbound


def declare(cfg: StackConfig) -> dict:
    prefix = cfg.name_prefix
    tag = do.Tag("cluster", name=prefix)
    vpc = do.Vpc("vpc", name=f"{prefix}-vpc", region=cfg.region,
                 description=f"overlay-bench stack {cfg.stack}")
    key = do.SshKey("ssh-key", name=f"{prefix}-key", public_key=cfg.ssh_public_key)

    def droplet(name: str, user_data: pulumi.Input[str]) -> do.Droplet:
        return do.Droplet(name, name=f"{prefix}-{name}", image=cfg.image, region=cfg.region,
                          size=cfg.size, vpc_uuid=vpc.id, ssh_keys=[key.fingerprint],
                          tags=[tag.name], user_data=user_data, ipv6=False)

    keystore = droplet("keystore", keystore_user_data(cfg.consul_image)) \
        if cfg.mode == "classic" else None
    kv_ip = keystore.ipv4_address_private if keystore else None
    nodes = [droplet(f"node{i}", kv_ip.apply(lambda ip: node_user_data("classic", ip))
                     if kv_ip is not None else node_user_data("swarm", None))
             for i in range(1, cfg.nodes + 1)]
    machines = ([keystore] if keystore else []) + nodes

    inbound, outbound = firewall_rules(cfg, tag.name)
    do.Firewall("firewall", name=f"{prefix}-fw", tags=[tag.name],
                inbound_rules=inbound, outbound_rules=outbound)
    do.Project("project", name=prefix, description=f"overlay-bench stack {cfg.stack}",
               environment="Development", resources=[m.droplet_urn for m in machines])

    # Read here, sent only as a secret: Pulumi encrypts it in state and never prints it.
    private_key = pulumi.Output.secret(Path(cfg.ssh_private_key_path).read_text())

    def ssh(machine: do.Droplet) -> remote.ConnectionArgs:
        # New droplets take a minute to start sshd: allow for it before failing.
        return remote.ConnectionArgs(host=machine.ipv4_address, user="root",
                                     private_key=private_key, dial_error_limit=40)

    ready = []
    if keystore:
        ready.append(remote.Command(
            "keystore-ready", connection=ssh(keystore),
            create=(f"{WAIT_FOR_ENGINE}; timeout 600 sh -c 'until curl -fsS "
                    f"\"$(curl -fsS {METADATA_PRIVATE_IP}):{CONSUL_PORT}/v1/status/leader\" "
                    f"| grep -q :; do sleep 2; done'")))
    ready += [remote.Command(f"node{i}-ready", connection=ssh(n), create=WAIT_FOR_ENGINE)
              for i, n in enumerate(nodes, start=1)]

    manager = nodes[0]
    if cfg.mode == "swarm":
        init = manager.ipv4_address_private.apply(lambda ip: (
            f"[ \"$({SWARM_STATE})\" = active ] || "
            f"docker swarm init --advertise-addr {ip} --listen-addr {ip}:2377"))
        swarm_init = remote.Command("swarm-init", connection=ssh(manager), create=init,
                                    opts=pulumi.ResourceOptions(depends_on=ready))
        token = remote.Command(
            "swarm-token", connection=ssh(manager), create="docker swarm join-token -q worker",
            logging=remote.Logging.NONE,
            opts=pulumi.ResourceOptions(depends_on=[swarm_init],
                                        additional_secret_outputs=["stdout"]))
        joined = []
        for i, worker in enumerate(nodes[1:], start=2):
            join = pulumi.Output.all(manager.ipv4_address_private,
                                     worker.ipv4_address_private).apply(lambda ips: (
                f"read -r TOKEN; [ \"$({SWARM_STATE})\" = active ] || "
                f"docker swarm join --token \"$TOKEN\" --advertise-addr {ips[1]} {ips[0]}:2377"))
            joined.append(remote.Command(
                f"node{i}-join", connection=ssh(worker), create=join,
                stdin=pulumi.Output.secret(token.stdout.apply(lambda t: t.strip() + "\n")),
                delete="docker swarm leave --force || true",
                opts=pulumi.ResourceOptions(depends_on=[swarm_init])))
        network_after, create_flags = [swarm_init] + joined, "--attachable "
    else:
        network_after, create_flags = ready, ""
    net = shlex.quote(cfg.overlay_network)
    # Classic mode: the engines reach Consul a few seconds after it answers; retry.
    network = remote.Command(
        "overlay-network", connection=ssh(manager),
        create=(f"for try in $(seq 60); do docker network inspect {net} >/dev/null 2>&1 && exit 0; "
                f"docker network create -d overlay {create_flags}{net} && exit 0; sleep 5; done; "
                f"exit 1"),
        opts=pulumi.ResourceOptions(depends_on=network_after))

    def node_doc(ips: list[str]) -> list[dict]:
        pairs = zip(ips[0::2], ips[1::2])
        return [{"name": f"{prefix}-node{i}", "role": "manager" if i == 1 else "worker",
                 "address": private, "docker_host": f"ssh://root@{public}",
                 "tls_cert_path": None, "ssh_key_path": cfg.ssh_private_key_path}
                for i, (public, private) in enumerate(pairs, start=1)]

    addresses = [ip for n in nodes for ip in (n.ipv4_address, n.ipv4_address_private)]
    keystore_doc = kv_ip.apply(lambda ip: {"name": f"{prefix}-keystore", "address": ip,
                                           "url": f"consul://{ip}:{CONSUL_PORT}"}) \
        if kv_ip is not None else None
    return {
        "schema_version": outputs.SCHEMA_VERSION,
        "stack": cfg.stack,
        "provider": "digitalocean",
        "mode": cfg.mode,
        "nodes": pulumi.Output.all(*addresses).apply(node_doc),
        "keystore": keystore_doc,
        # Exported once the network exists, so a finished `pulumi up` means a usable cluster.
        "overlay_network": network.stdout.apply(lambda _: cfg.overlay_network),
        "link_rate": None,
        "mtu_bytes": VPC_MTU_BYTES,
    }
