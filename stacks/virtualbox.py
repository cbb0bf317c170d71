"""The 2015 VirtualBox cluster, made exactly as the post made it: with docker-machine.

Each machine is a pulumi-command `local.Command` whose create runs `docker-machine create`
(kept when the machine is there and its engine answers; a half-made one is removed and
made again) and whose delete runs `docker-machine rm -f -y` (which also succeeds when the
machine is already gone). classic mode: a key-store machine running Consul, a classic
Swarm master and Swarm nodes with `--swarm-discovery consul://...`, `--engine-opt
cluster-store=...` and `cluster-advertise=eth1:2376` (the post's flags). Consul works
here, unlike on Debian's engine (stacks/classic.py): boot2docker's engine is Docker's own
build, whose libnetwork registers the consul, zookeeper, etcd and boltdb stores
(docker/libnetwork store.go, registerKVStores).
swarm mode: plain machines, then `docker swarm init` / `join` with the manager's token
(a Pulumi secret passed in the environment, never logged).

Each create prints what the outputs need on stdout (the rest goes to stderr):
line 1 `docker-machine ip NAME`, line 2 the machine's TLS certificate directory.

The Pulumi SDKs are imported where resources are declared (see stacks/providers.py).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import re
import shlex
import shutil
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from stacks import config, outputs
from stacks.config import ConfigError, Key, StackError

if TYPE_CHECKING:
    import pulumi
    from pulumi_command import local

CONSUL_PORT = 8500
# boot2docker: eth0 is VirtualBox NAT, eth1 the host-only network the machines share.
CLUSTER_INTERFACE = "eth1"
# The host-only adapter's MTU (VirtualBox default).
HOST_ONLY_MTU_BYTES = 1500
REQUIRED_TOOLS = {
    "docker-machine": "install it from https://github.com/docker/machine/releases (archived; "
                      "v0.16.2 is the last release)",
    "VBoxManage": "install VirtualBox from https://www.virtualbox.org/wiki/Downloads",
    "docker": "install the Docker CLI (the docker-ce-cli package)",
}

# Pinned KV store image for classic mode: the 2015 post ran progrium/consul (retired); this
# is the current official image, in the 1.x line whose KV HTTP API libkv speaks.
CONSUL_IMAGE = Key("consulImage", "hashicorp/consul:1.22.7",
                   "Consul image of the key-value machine (classic mode)")
MACHINE_PREFIX = Key("machinePrefix", None,
                     "machine names: `PREFIX-keystore`, `PREFIX-node1`, ...", shown="`ob-STACK`")
MEMORY_MB = Key("virtualboxMemoryMb", 1024, "`--virtualbox-memory`")
CPUS = Key("virtualboxCpus", 1, "`--virtualbox-cpu-count`")
BOOT2DOCKER_URL = Key("boot2dockerUrl", None,
                      "`--virtualbox-boot2docker-url` (e.g. a `file://` ISO)",
                      shown="docker-machine's default")
HOSTONLY_CIDR = Key("virtualboxHostonlyCidr", None,
                    "`--virtualbox-hostonly-cidr` (see prerequisites)",
                    shown="docker-machine's `192.168.99.1/24`")
KEYS = (config.OVERLAY_NETWORK, CONSUL_IMAGE, MACHINE_PREFIX, MEMORY_MB, CPUS,
        BOOT2DOCKER_URL, HOSTONLY_CIDR)


@dataclasses.dataclass(frozen=True)
class VirtualBoxSettings:
    machine_prefix: str
    consul_image: str = CONSUL_IMAGE.default
    memory_mb: int = MEMORY_MB.default
    cpus: int = CPUS.default
    boot2docker_url: str | None = None
    hostonly_cidr: str | None = None


def parse(raw: Mapping[str, Any], common: config.Common,
          context: config.Context) -> VirtualBoxSettings:
    url = BOOT2DOCKER_URL.get(raw) or None
    if url is not None and not re.match(r"^(https?|file)://", url):
        raise ConfigError(f"config {config.NAMESPACE}:boot2dockerUrl {url!r} must be an http(s):// "
                          f"or file:// URL of a boot2docker ISO: "
                          f"{config.fix('boot2dockerUrl', 'file:///path/boot2docker.iso')}")
    hostonly = HOSTONLY_CIDR.get(raw) or None
    if hostonly is not None:
        try:
            ipaddress.IPv4Interface(hostonly)
            valid = "/" in hostonly
        except ValueError:
            valid = False
        if not valid:
            raise ConfigError(f"config {config.NAMESPACE}:virtualboxHostonlyCidr {hostonly!r} must "
                              f"be the host's address and prefix on the host-only network: "
                              f"{config.fix('virtualboxHostonlyCidr', '192.168.56.1/24')}")
    return VirtualBoxSettings(
        machine_prefix=config.name_prefix(raw, MACHINE_PREFIX, common.stack, "name", "mhs"),
        consul_image=CONSUL_IMAGE.get(raw),
        memory_mb=config.integer(raw, MEMORY_MB, 512, 65536),
        cpus=config.integer(raw, CPUS, 1, 64),
        boot2docker_url=url, hostonly_cidr=hostonly)


def check_tools() -> None:
    """One clear line when a tool the post used is missing, before anything is created."""
    for tool, how in REQUIRED_TOOLS.items():
        if shutil.which(tool) is None:
            raise StackError(f"the virtualbox stack needs `{tool}`, which is not on PATH: {how}")


def machine_create(settings: VirtualBoxSettings, name: str, extra: list[str], setup: str = "") -> str:
    """A `docker-machine create`, then `setup`; stdout: the machine's address and certificate
    directory.

    Skipped only when the machine runs and its engine answers. A failed create leaves the
    machine registered (half made: no VM, or an engine without certificates); it is removed
    and made again, as is one that no longer answers.
    """
    argv = ["docker-machine", "create", "-d", "virtualbox",
            "--virtualbox-memory", str(settings.memory_mb),
            "--virtualbox-cpu-count", str(settings.cpus)]
    if settings.boot2docker_url:
        argv += ["--virtualbox-boot2docker-url", settings.boot2docker_url]
    if settings.hostonly_cidr:
        # VirtualBox 6.1.28+ only allows 192.168.56.0/21 for host-only networks by default.
        argv += ["--virtualbox-hostonly-cidr", settings.hostonly_cidr]
    argv += extra + [name]
    q = shlex.quote(name)
    then = f" && {{ {setup}; }} >&2" if setup else ""
    answers = (f"[ \"$(docker-machine status {q} 2>/dev/null)\" = Running ] && "
               f"{on_machine(name, 'version')} >/dev/null 2>&1")
    remove = f"{{ ! docker-machine inspect {q} >/dev/null 2>&1 || {machine_delete(name)}; }}"
    return (f"{{ if {answers}; then :; else {remove} && {shlex.join(argv)}; fi; }} >&2{then} && "
            f"docker-machine ip {q} && "
            f"docker-machine inspect --format '{{{{.HostOptions.AuthOptions.StorePath}}}}' {q}")


def machine_delete(name: str) -> str:
    """`docker-machine rm`: -f also removes what cannot be reached and exits 0 when the
    machine is already gone (docker/machine commands/rm.go: errors are only logged with
    --force), -y does not ask."""
    return f"docker-machine rm -f -y {shlex.quote(name)}"


def on_machine(name: str, command: str) -> str:
    """Run a docker CLI command against one machine's engine (TLS, as docker-machine set up).

    Only when `docker-machine config` succeeds: `docker $(docker-machine config NAME)` with
    a failing config would run the command against this machine's own default engine.
    """
    return f"(config=$(docker-machine config {shlex.quote(name)}) && docker $config {command})"


def _machine(resource: str, create: pulumi.Input[str], name: str) -> local.Command:
    import pulumi
    from pulumi_command import local

    # Any change of the create command makes another machine (triggers: replace). The name
    # stays the same, so the old machine must be removed before the new one is created.
    return local.Command(resource, create=create, delete=machine_delete(name),
                         triggers=[create],
                         opts=pulumi.ResourceOptions(delete_before_replace=True))


def _lines(stdout: pulumi.Output[str], name: str) -> pulumi.Output[list[str]]:
    """The address and certificate directory a machine's create printed last."""
    def last_two(text: str) -> list[str]:
        lines = text.strip().splitlines()[-2:]
        if len(lines) != 2:
            raise StackError(f"docker-machine printed no address and certificate directory for "
                             f"{name} (got {text!r}): check `docker-machine ls`")
        return lines
    return stdout.apply(last_two)


def declare(common: config.Common, settings: VirtualBoxSettings) -> pulumi.Output[dict]:
    import pulumi
    from pulumi_command import local

    check_tools()
    prefix = settings.machine_prefix
    keystore_name = f"{prefix}-keystore"
    names = [f"{prefix}-node{i}" for i in range(1, common.nodes + 1)]

    keystore = kv_ip = None
    if common.mode == "classic":
        consul = (f"{on_machine(keystore_name, 'inspect consul')} >/dev/null 2>&1 || "
                  + on_machine(keystore_name,
                               f"run -d --name consul --restart always -p {CONSUL_PORT}:{CONSUL_PORT} "
                               f"-h consul {shlex.quote(settings.consul_image)} "
                               f"agent -server -bootstrap -client 0.0.0.0"))
        keystore = _machine("keystore", machine_create(settings, keystore_name, [], consul),
                            keystore_name)
        kv_ip = _lines(keystore.stdout, keystore_name).apply(lambda lines: lines[0])

        def classic_flags(ip: str, master: bool) -> list[str]:
            store = f"consul://{ip}:{CONSUL_PORT}"
            return (["--swarm"] + (["--swarm-master"] if master else []) +
                    [f"--swarm-discovery={store}", f"--engine-opt=cluster-store={store}",
                     f"--engine-opt=cluster-advertise={CLUSTER_INTERFACE}:2376"])

        machines = [_machine(f"node{i}", kv_ip.apply(
            lambda ip, i=i, name=name: machine_create(settings, name, classic_flags(ip, i == 1))), name)
            for i, name in enumerate(names, start=1)]
        network_after: list[pulumi.Resource] = machines
        create_flags = ""
    else:
        machines = [_machine(f"node{i}", machine_create(settings, name, []), name)
                    for i, name in enumerate(names, start=1)]
        manager_ip = _lines(machines[0].stdout, names[0]).apply(lambda lines: lines[0])
        swarm_state = "info --format '{{.Swarm.LocalNodeState}}'"
        init = local.Command("swarm-init", create=manager_ip.apply(lambda ip: (
            f"[ \"$({on_machine(names[0], swarm_state)})\" = active ] || "
            + on_machine(names[0], f"swarm init --advertise-addr {ip}"))),
            opts=pulumi.ResourceOptions(depends_on=machines))
        token = local.Command(
            "swarm-token", create=on_machine(names[0], "swarm join-token -q worker"),
            logging=local.Logging.NONE,
            opts=pulumi.ResourceOptions(depends_on=[init], additional_secret_outputs=["stdout"]))
        joins = [local.Command(
            f"node{i}-join",
            create=manager_ip.apply(lambda ip, name=name: (
                f"[ \"$({on_machine(name, swarm_state)})\" = active ] || "
                + on_machine(name, f"swarm join --token \"$SWARM_TOKEN\" "
                             f"--advertise-addr {CLUSTER_INTERFACE} {ip}:2377"))),
            environment={"SWARM_TOKEN": pulumi.Output.secret(token.stdout.apply(str.strip))},
            opts=pulumi.ResourceOptions(depends_on=[init]))
            for i, name in enumerate(names[1:], start=2)]
        network_after = [init] + joins
        create_flags = "--attachable "

    net = shlex.quote(common.overlay_network)
    network = local.Command("overlay-network", create=(
        f"{on_machine(names[0], f'network inspect {net}')} >/dev/null 2>&1 || "
        + on_machine(names[0], f"network create -d overlay {create_flags}{net}")),
        opts=pulumi.ResourceOptions(depends_on=network_after))

    def document(resolved: dict) -> dict:
        kv = resolved["keystore"]
        return outputs.document(
            stack=common.stack, provider=common.provider, mode=common.mode,
            nodes=[outputs.node(name, ip, f"tcp://{ip}:2376", tls_cert_path=certs)
                   for name, (ip, certs) in zip(names, resolved["nodes"])],
            keystore=(outputs.keystore(keystore_name, kv, f"consul://{kv}:{CONSUL_PORT}")
                      if kv else None),
            overlay_network=common.overlay_network, link_rate=None, mtu_bytes=HOST_ONLY_MTU_BYTES)

    return pulumi.Output.all(
        nodes=pulumi.Output.all(*[_lines(m.stdout, n) for m, n in zip(machines, names)]),
        keystore=kv_ip,
        # Resolved once the network exists, so a finished `pulumi up` means a usable cluster.
        network=network.stdout,
    ).apply(document)
