"""Provider `ssh`: machines you already have (PerfKitBenchmarker's "static machines").

Bare-metal servers, another cloud's VMs, a rack on premises: anything with a Docker engine
that root (or `sshUser`) reaches over SSH. `pulumi up` makes nothing but the cluster on
them, with the commands of stacks/remote_cluster.py (the ones the DigitalOcean stack runs
after its droplets boot): each engine checked, swarm formed (or, in classic mode, every
engine's cluster store checked), the overlay network made. `pulumi destroy` undoes that
and nothing else. bench reaches each engine as `ssh://USER@ADDRESS` with `sshPrivateKeyPath`.

Before declaring anything, each machine's SSH is tried as the docker SDK will try it (the
host key must be in ~/.ssh/known_hosts, the key must be accepted); the host key seen then
is the one Pulumi's commands insist on. Each failure is one line saying what to do.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stacks import config, outputs
from stacks.config import ConfigError, Key

if TYPE_CHECKING:
    import pulumi

MACHINES = Key("machines", None,
               "the machines, the first is the manager: a list of `{address, privateAddress}`; SSH goes "
               "to `address`, cluster traffic uses `privateAddress` (default: `address`)", shown="**required**")
SSH_USER = Key("sshUser", "root", "user SSH logs in as on every machine (it runs `docker`)")
SSH_PORT = Key("sshPort", 22, "SSH port of every machine")
SSH_PRIVATE_KEY_PATH = Key(
    "sshPrivateKeyPath", "~/.ssh/id_ed25519",
    "private key the machines accept: read by Pulumi (as a secret) for its commands, and by the "
    "bench (`ssh_key_path` in the outputs: the path, never the key)")
KEYS = (config.OVERLAY_NETWORK, MACHINES, SSH_USER, SSH_PORT, SSH_PRIVATE_KEY_PATH)

USER_RE = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME_RE = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")
# The machines exist already: a dial that fails is not a machine still booting.
DIAL_ERROR_LIMIT = 2
PER_DIAL_TIMEOUT_S = 10
PROBE_TIMEOUT_S = 10


@dataclasses.dataclass(frozen=True)
class Machine:
    address: str  # where SSH goes: an address or a host name
    private_address: str  # IPv4, on the cluster's network


@dataclasses.dataclass(frozen=True)
class SshSettings:
    machines: tuple[Machine, ...]
    ssh_user: str
    ssh_port: int
    ssh_private_key_path: str


def _machines_fix() -> str:
    return ("set them with `pulumi config set --path 'machines[0].address' 203.0.113.10` and "
            "`pulumi config set --path 'machines[0].privateAddress' 10.0.0.10` (then machines[1], ...)")


def _machines(raw: Mapping[str, Any]) -> tuple[Machine, ...]:
    key = f"config {config.NAMESPACE}:{MACHINES.name}"
    value = raw.get(MACHINES.name)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ConfigError(f"{key} is not a list of {{address, privateAddress}}: {_machines_fix()}") from None
    if not value:
        raise ConfigError(f"{key} is not set: {_machines_fix()}")
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        raise ConfigError(f"{key} must be a list of {{address, privateAddress}}: {_machines_fix()}")
    machines = []
    for i, item in enumerate(value):
        unknown = sorted(set(item) - {"address", "privateAddress"})
        if unknown:
            raise ConfigError(f"{key}[{i}] has {unknown[0]!r}; a machine has address and privateAddress: "
                              f"remove it with `pulumi config rm --path 'machines[{i}].{unknown[0]}'`")
        address = str(item.get("address") or "").strip()
        if not (HOSTNAME_RE.fullmatch(address) or _ipv4(address)):
            raise ConfigError(f"{key}[{i}].address {address!r} is not an address or host name: set it with "
                              f"`pulumi config set --path 'machines[{i}].address' 203.0.113.10`")
        private = str(item.get("privateAddress") or (address if _ipv4(address) else "")).strip()
        if not _ipv4(private):
            raise ConfigError(f"{key}[{i}].privateAddress {private!r} is not an IPv4 address (the machine's "
                              f"address on the cluster network): set it with "
                              f"`pulumi config set --path 'machines[{i}].privateAddress' 10.0.0.10`")
        machines.append(Machine(address, private))
    lo, hi = 2, 50
    if not lo <= len(machines) <= hi:
        raise ConfigError(f"{key} lists {len(machines)} machine(s): a cluster here takes {lo} to {hi}: "
                          f"{_machines_fix()}")
    for field in ("address", "private_address"):
        seen = [getattr(m, field) for m in machines]
        twice = next((a for a in seen if seen.count(a) > 1), None)
        if twice:
            raise ConfigError(f"{key} names {twice} twice: each machine once")
    return tuple(machines)


def _ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
        return True
    except ValueError:
        return False


def parse(raw: Mapping[str, Any], common: config.Common, context: config.Context) -> SshSettings:
    machines = _machines(raw)
    if config.NODES.name in raw and common.nodes != len(machines):
        raise ConfigError(f"config {config.NAMESPACE}:nodes is {common.nodes} but machines lists "
                          f"{len(machines)}: the ssh provider uses every machine listed; remove it with "
                          "`pulumi config rm nodes`")
    user = str(SSH_USER.get(raw)).strip()
    if not USER_RE.fullmatch(user):
        raise ConfigError(f"config {config.NAMESPACE}:{SSH_USER.name} {user!r} is not a user name: "
                          f"{config.fix(SSH_USER.name, 'root')}")
    port = config.integer(raw, SSH_PORT, 1, 65535)
    key_path = config.key_file(str(SSH_PRIVATE_KEY_PATH.get(raw)), SSH_PRIVATE_KEY_PATH, "private key file")
    return SshSettings(machines=machines, ssh_user=user, ssh_port=port, ssh_private_key_path=str(key_path))


def docker_host(settings: SshSettings, machine: Machine) -> str:
    """How bench reaches the engine: the docker SDK over SSH (`docker system dial-stdio`)."""
    port = "" if settings.ssh_port == 22 else f":{settings.ssh_port}"
    return f"ssh://{settings.ssh_user}@{machine.address}{port}"


def known_hosts_name(settings: SshSettings, machine: Machine) -> str:
    """The name a host key is filed under in known_hosts (`[host]:port` off port 22)."""
    return machine.address if settings.ssh_port == 22 else f"[{machine.address}]:{settings.ssh_port}"


def probe(settings: SshSettings, machine: Machine) -> str:
    """Log in as the docker SDK will (host key from ~/.ssh/known_hosts, the configured key)
    and return the host key the machine showed, as one `TYPE BASE64` line; ConfigError
    with what to do when that fails."""
    import paramiko

    where = f"machine {machine.address}"
    key_path = settings.ssh_private_key_path
    try:
        paramiko.PKey.from_path(key_path)
    except paramiko.PasswordRequiredException:
        raise ConfigError(f"config {config.NAMESPACE}:{SSH_PRIVATE_KEY_PATH.name}: {key_path} is passphrase "
                          "protected: give a key without a passphrase (`ssh-keygen -t ed25519 -N ''`)") from None
    except (paramiko.SSHException, OSError, ValueError) as exc:
        raise ConfigError(f"config {config.NAMESPACE}:{SSH_PRIVATE_KEY_PATH.name}: {key_path} is not a private "
                          f"key ({exc}): {config.fix(SSH_PRIVATE_KEY_PATH.name, '~/.ssh/id_ed25519')}") from None
    client = paramiko.SSHClient()
    client.load_system_host_keys()  # ~/.ssh/known_hosts, where the docker SDK looks
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(machine.address, port=settings.ssh_port, username=settings.ssh_user, key_filename=key_path,
                       timeout=PROBE_TIMEOUT_S, banner_timeout=PROBE_TIMEOUT_S, auth_timeout=PROBE_TIMEOUT_S,
                       look_for_keys=False, allow_agent=False)
        key = client.get_transport().get_remote_server_key()
        return f"{key.get_name()} {key.get_base64()}"
    except paramiko.BadHostKeyException:
        raise ConfigError(f"{where} shows a host key that differs from the one in ~/.ssh/known_hosts: if the "
                          f"machine was reinstalled, check its new key and replace the old one "
                          f"(`ssh-keygen -R {known_hosts_name(settings, machine)}`, then `ssh` to it once)") from None
    except paramiko.AuthenticationException:
        raise ConfigError(f"{where} refused the key {key_path} for user {settings.ssh_user}: add {key_path}.pub "
                          f"to ~{settings.ssh_user}/.ssh/authorized_keys there, or set sshPrivateKeyPath/sshUser"
                          ) from None
    except paramiko.SSHException as exc:
        if "known_hosts" in str(exc):
            raise ConfigError(f"{where} is not in ~/.ssh/known_hosts (the docker SDK refuses unknown hosts): "
                              f"check its host key fingerprint and add it, e.g. `ssh -p {settings.ssh_port} "
                              f"{settings.ssh_user}@{machine.address} true` once") from None
        raise ConfigError(f"{where}: SSH on port {settings.ssh_port} failed ({exc}): check that sshd runs "
                          "there") from None
    except OSError as exc:  # refused, unreachable, timed out
        # paramiko wraps the socket errors of each address it tried.
        causes = list(getattr(exc, "errors", {}).values()) or [exc]
        reason = "; ".join(sorted({c.strerror or str(c) or type(c).__name__ for c in causes}))
        raise ConfigError(f"{where} does not answer SSH on port {settings.ssh_port} ({reason}): check its "
                          "address, that it is up and that sshd runs there") from None
    finally:
        client.close()


def declare(common: config.Common, settings: SshSettings) -> pulumi.Output[dict]:
    import pulumi
    from pulumi_command import remote

    from stacks import remote_cluster

    host_keys = [probe(settings, m) for m in settings.machines]
    # Read here, sent only as a secret: Pulumi encrypts it in state and never prints it.
    private_key = pulumi.Output.secret(Path(settings.ssh_private_key_path).read_text())
    machines = [remote_cluster.Machine(
        name=f"node{i}", address=m.address, private_address=m.private_address,
        connection=remote.ConnectionArgs(host=m.address, port=settings.ssh_port, user=settings.ssh_user,
                                         private_key=private_key, host_key=host_key,
                                         dial_error_limit=DIAL_ERROR_LIMIT, per_dial_timeout=PER_DIAL_TIMEOUT_S))
        for i, (m, host_key) in enumerate(zip(settings.machines, host_keys), start=1)]
    cluster = remote_cluster.declare(machines, common.mode, common.overlay_network, common.stack)

    def document(resolved: dict) -> dict:
        facts = resolved["facts"]
        names = [f["name"] for f in facts]
        if len(set(names)) != len(names):  # engines of the same hostname: name them by address
            names = [f"{name}@{m.address}" for name, m in zip(names, settings.machines)]
        store = facts[0]["cluster_store"]
        keystore = _keystore(store) if store else None
        return outputs.document(
            stack=common.stack, provider=common.provider, mode=common.mode,
            nodes=[outputs.node(name, m.private_address, docker_host(settings, m),
                                ssh_key_path=settings.ssh_private_key_path)
                   for name, m in zip(names, settings.machines)],
            keystore=keystore,
            overlay_network=common.overlay_network, link_rate=None, mtu_bytes=facts[0]["mtu_bytes"])

    return pulumi.Output.all(facts=cluster.facts, done=cluster.done).apply(document)


def _keystore(url: str) -> dict[str, Any] | None:
    """The outputs' keystore from an engine's cluster store (etcd://10.0.0.2:2379); None for
    one the outputs cannot describe (another scheme, a host name)."""
    scheme, _, rest = url.partition("://")
    address = rest.rsplit(":", 1)[0]
    if scheme not in ("etcd", "consul") or not _ipv4(address):
        return None
    return outputs.keystore("keystore", address, url)
