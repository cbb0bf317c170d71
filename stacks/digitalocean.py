"""The 2015 DigitalOcean cluster, rebuilt: a key-value droplet and N Docker droplets.

classic (the post's topology, with etcd for Consul: stacks/classic.py says why): etcd
with its v2 API on the key-value droplet, engines configured by cloud-init with
`cluster-store=etcd://KV:2379` and `cluster-advertise` on the VPC interface, the same
settings and the same Debian packages the local lab runs. swarm: swarm mode; the first
droplet initialises, the others join with the manager's token (a Pulumi secret, carried
on stdin, never logged).

The bench reaches every engine as `ssh://root@PUBLIC_IP` (docker SDK over SSH): no Docker
API port is opened anywhere. The 2015 classic Swarm manager is not deployed: it needs each
engine's TCP API reachable over the network, which this stack refuses to open (see
README.md, "The Pulumi program"); the bench pins containers to nodes by talking to each engine.

What an account already has is used, never made twice and never destroyed: the droplets
join the region's default VPC (or the VPC `vpcId` names), and the public key is reused
when the account holds it already (docs/digitalocean.md).

The Pulumi SDKs are imported where resources are declared: reading the configuration
never loads the DigitalOcean SDK.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import ipaddress
import json
import shlex
import socket
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from stacks import classic, config, firewall, outputs, remote_cluster
from stacks.config import ConfigError, Key, StackError

if TYPE_CHECKING:
    import pulumi

REGION = Key("region", "ams3", "region slug", shown="`ams3` (as 2015)")
SIZE = Key("size", "s-1vcpu-1gb", "droplet size slug")
IMAGE = Key("image", "debian-12-x64", "image slug; any slug is accepted")
NAME_PREFIX = Key("namePrefix", None, "prefix of droplet, tag, firewall, key and project names",
                  shown="`ob-STACK`")
VPC_ID = Key("vpcId", None, "an existing VPC of the region for the droplets (never created "
             "or destroyed by the stack)", shown="the region's default VPC")
SSH_PUBLIC_KEY_PATH = Key("sshPublicKeyPath", "~/.ssh/id_ed25519.pub",
                          "your public key, installed on the droplets (reused when the account "
                          "already holds it)")
SSH_PRIVATE_KEY_PATH = Key(
    "sshPrivateKeyPath", None,
    "its private key: used by Pulumi (as a secret) to run the swarm and network commands, and "
    "by the bench (`ssh_key_path` in the outputs: the path, never the key)",
    shown="the public key path without `.pub`")
SSH_PRIVATE_KEY_PASSWORD = Key(
    "sshPrivateKeyPassword", None,
    "passphrase of a protected private key, a secret: `pulumi config set --secret "
    "sshPrivateKeyPassword` (or load the key into ssh-agent)", shown="unset")
SSH_ALLOWED_CIDRS = Key("sshAllowedCidrs", None,
                        "IPv4 networks SSH is open to, e.g. your address `/32`", shown="**required**")
ALLOW_SSH_FROM_ANYWHERE = Key("allowSshFromAnywhere", False,
                              "allow `0.0.0.0/0` in `sshAllowedCidrs`")
TOKEN = Key("token", None, "API token: `pulumi config set --secret digitalocean:token` (it asks "
            "for the token)", shown="`DIGITALOCEAN_TOKEN` from the environment",
            namespace="digitalocean")
KEYS = (config.OVERLAY_NETWORK, REGION, SIZE, IMAGE, NAME_PREFIX, VPC_ID, SSH_PUBLIC_KEY_PATH,
        SSH_PRIVATE_KEY_PATH, SSH_PRIVATE_KEY_PASSWORD, SSH_ALLOWED_CIDRS, ALLOW_SSH_FROM_ANYWHERE,
        TOKEN)

# DigitalOcean's images name the VPC interface eth1 (eth0 is public).
PRIVATE_INTERFACE = "eth1"
# DigitalOcean's VPC carries 1500-byte frames; overlay containers get 1450 (VXLAN's 50).
VPC_MTU_BYTES = 1500
# Networks bench must not try here, and why (the outputs' `unsupported_networks`).
UNSUPPORTED_NETWORKS = {
    # The SDK's FirewallInboundRuleArgs: protocol "may be one of tcp, udp, or icmp".
    "overlay-encrypted": "DigitalOcean cloud firewalls pass only TCP, UDP and ICMP, and the "
                         "encrypted overlay's data travels as IPsec ESP (IP protocol 50)",
}
# What the stack holds that the passphrase protects (config.require_passphrase).
SECRETS = "secrets (the DigitalOcean token, your SSH private key, the swarm join token)"

# The key-value droplet: the address etcd serves on is the VPC interface's, known only on
# the droplet. bootcmd (each boot, before packages) writes it where etcd's unit reads it.
KEYSTORE_ENV_FILE = "/etc/overlay-bench/keystore.env"
KEYSTORE_ADDRESS_VAR = "KEYSTORE_ADDRESS"
ETCD_DATA_DIR = "/var/lib/etcd/overlay-bench"
ETCD_DROP_IN = "/etc/systemd/system/etcd.service.d/overlay-bench.conf"

# How long a droplet may take to boot, install its packages and start its engine, and how
# long an engine may take to reach the (ready) key-value store after that.
ENGINE_WAIT_S = 600
STORE_WAIT_S = 60


@dataclasses.dataclass(frozen=True)
class DigitalOceanSettings:
    region: str
    size: str
    image: str
    name_prefix: str
    vpc_id: str | None
    ssh_public_key_path: str
    ssh_public_key: str
    # DigitalOcean's name for a public key: the MD5 of its blob, as colon-separated hex.
    ssh_key_fingerprint: str
    ssh_private_key_path: str
    # How Pulumi's remote commands log in: "key" (the private key), "key+password" (a
    # protected key and its passphrase), "agent" (the ssh-agent at agent_socket_path).
    ssh_login: str
    ssh_allowed_cidrs: tuple[str, ...]
    agent_socket_path: str | None = None
    ssh_private_key_password: str | None = dataclasses.field(default=None, repr=False)


def parse(raw: Mapping[str, Any], common: config.Common,
          context: config.Context) -> DigitalOceanSettings:
    config.require_passphrase(context, SECRETS)
    if TOKEN.qualified_name not in context.config_keys and not context.env.get("DIGITALOCEAN_TOKEN"):
        raise ConfigError("no DigitalOcean API token: set it with `pulumi config set --secret "
                          "digitalocean:token` (it asks for the token; never put it on the "
                          "command line) or export DIGITALOCEAN_TOKEN")
    prefix = config.name_prefix(raw, NAME_PREFIX, common.stack, "hostname", "ob-lab")
    public_path = config.key_file(SSH_PUBLIC_KEY_PATH.get(raw), SSH_PUBLIC_KEY_PATH,
                                  "public key file")
    public_key = public_path.read_text().strip()
    try:
        fingerprint = md5_fingerprint(public_key)
    except ValueError:
        raise ConfigError(f"config {config.NAMESPACE}:sshPublicKeyPath {str(public_path)!r} is "
                          f"not an OpenSSH public key: point it at the .pub file, "
                          f"{config.fix('sshPublicKeyPath', SSH_PUBLIC_KEY_PATH.default)}") from None
    default_private = str(public_path)[:-4] if str(public_path).endswith(".pub") else ""
    private_path = config.key_file(raw.get(SSH_PRIVATE_KEY_PATH.name, default_private) or "",
                                   SSH_PRIVATE_KEY_PATH, "private key file")
    password = config.secret(raw, SSH_PRIVATE_KEY_PASSWORD, context, "the key's passphrase")
    login, agent = _ssh_login(private_path, public_key, password, context)
    return DigitalOceanSettings(
        region=REGION.get(raw), size=SIZE.get(raw), image=IMAGE.get(raw), name_prefix=prefix,
        vpc_id=_vpc_id(raw), ssh_public_key_path=str(public_path), ssh_public_key=public_key,
        ssh_key_fingerprint=fingerprint, ssh_private_key_path=str(private_path), ssh_login=login,
        agent_socket_path=agent, ssh_private_key_password=password,
        ssh_allowed_cidrs=_ssh_allowed_cidrs(raw))


# --- the SSH key --------------------------------------------------------------------------

def _key_blob(public_key: str) -> bytes:
    """The binary key of an OpenSSH public key line (`TYPE BASE64 [COMMENT]`)."""
    parts = public_key.split()
    if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-", "sk-")):
        raise ValueError("not an OpenSSH public key")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except binascii.Error:
        raise ValueError("not an OpenSSH public key") from None
    # The blob starts with its own key type, as a length-prefixed string.
    if blob[4:4 + int.from_bytes(blob[:4], "big")] != parts[0].encode():
        raise ValueError("not an OpenSSH public key")
    return blob


def md5_fingerprint(public_key: str) -> str:
    """DigitalOcean's fingerprint of a public key: what `ssh-keygen -l -E md5` prints
    (without `MD5:`), the MD5 of the key blob in colon-separated hex."""
    digest = hashlib.md5(_key_blob(public_key), usedforsecurity=False).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def _ssh_login(private_path: Path, public_key: str, password: str | None,
               context: config.Context) -> tuple[str, str | None]:
    """How Pulumi's remote commands log in with this key; one ConfigError when they cannot.

    pulumi-command reads `privateKey` without a passphrase unless `privateKeyPassword` is
    given, and offers the agent's keys only when no `privateKey` is set.
    """
    key = SSH_PRIVATE_KEY_PATH.name
    protected = _is_protected(private_path, key)
    if not protected:
        if password is not None:
            raise ConfigError(f"config {config.NAMESPACE}:{SSH_PRIVATE_KEY_PASSWORD.name} is set but "
                              f"{str(private_path)!r} has no passphrase: remove it with "
                              f"`pulumi config rm {SSH_PRIVATE_KEY_PASSWORD.name}`")
        return "key", None
    if password is not None:
        if not _decrypts(private_path, password):
            raise ConfigError(f"config {config.NAMESPACE}:{SSH_PRIVATE_KEY_PASSWORD.name} does not "
                              f"unlock {str(private_path)!r}: set the right one with `pulumi config "
                              f"set --secret {SSH_PRIVATE_KEY_PASSWORD.name}` (it asks for it)")
        return "key+password", None
    socket_path = context.env.get("SSH_AUTH_SOCK")
    if socket_path:
        held = agent_public_keys(socket_path)
        if held is None:
            raise ConfigError(f"the private key {str(private_path)!r} has a passphrase and the "
                              f"ssh-agent at SSH_AUTH_SOCK={socket_path} does not answer: start "
                              f"one (`eval $(ssh-agent)`, `ssh-add {private_path}`) or set the "
                              f"passphrase with `pulumi config set --secret "
                              f"{SSH_PRIVATE_KEY_PASSWORD.name}`")
        if _key_blob(public_key) not in held:
            raise ConfigError(f"the private key {str(private_path)!r} has a passphrase and the "
                              f"ssh-agent at SSH_AUTH_SOCK does not hold it: `ssh-add "
                              f"{private_path}`, or set the passphrase with `pulumi config set "
                              f"--secret {SSH_PRIVATE_KEY_PASSWORD.name}`")
        return "agent", socket_path
    raise ConfigError(f"config {config.NAMESPACE}:{key}: {str(private_path)!r} has a passphrase: "
                      f"set it with `pulumi config set --secret {SSH_PRIVATE_KEY_PASSWORD.name}` "
                      f"(it asks for it), or load the key into ssh-agent (`ssh-add "
                      f"{private_path}`) and run `pulumi up` with SSH_AUTH_SOCK set")


def _load_private_key(data: bytes, password: bytes | None):
    from cryptography.hazmat.primitives import serialization

    if b"-----BEGIN OPENSSH PRIVATE KEY-----" in data:
        return serialization.load_ssh_private_key(data, password=password)
    return serialization.load_pem_private_key(data, password=password)


def _is_protected(path: Path, key: str) -> bool:
    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        _load_private_key(path.read_bytes(), None)
        return False
    except TypeError:  # "Password was not given but private key is encrypted"
        return True
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"config {config.NAMESPACE}:{key}: {str(path)!r} is not a private key "
                          f"ssh can read ({exc}): point it at the key of sshPublicKeyPath, "
                          f"{config.fix(key, '~/.ssh/id_ed25519')}") from None


def _decrypts(path: Path, password: str) -> bool:
    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        _load_private_key(path.read_bytes(), password.encode())
        return True
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False


# The agent protocol (draft-miller-ssh-agent): list the keys an agent holds.
_REQUEST_IDENTITIES, _IDENTITIES_ANSWER = 11, 12


def agent_public_keys(socket_path: str, timeout_s: float = 5) -> set[bytes] | None:
    """The key blobs the ssh-agent at `socket_path` holds; None when it does not answer."""
    def read(sock: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            if not chunk:
                raise OSError("agent closed the connection")
            data += chunk
        return data

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(socket_path)
            sock.sendall(struct.pack(">IB", 1, _REQUEST_IDENTITIES))
            length = struct.unpack(">I", read(sock, 4))[0]
            reply = read(sock, length)
    except OSError:
        return None
    if not reply or reply[0] != _IDENTITIES_ANSWER:
        return None
    count, offset, blobs = struct.unpack(">I", reply[1:5])[0], 5, set()
    for _ in range(count):
        for field in ("blob", "comment"):
            size = struct.unpack(">I", reply[offset:offset + 4])[0]
            if field == "blob":
                blobs.add(reply[offset + 4:offset + 4 + size])
            offset += 4 + size
    return blobs


# --- other keys -------------------------------------------------------------------------------

def _vpc_id(raw: Mapping[str, Any]) -> str | None:
    value = VPC_ID.get(raw)
    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    if not all(c.isalnum() or c == "-" for c in text):
        raise ConfigError(f"config {config.NAMESPACE}:{VPC_ID.name} {text!r} is not a VPC ID (see "
                          f"`doctl vpcs list`): {config.fix(VPC_ID.name, 'VPC_ID')}, or remove it "
                          f"with `pulumi config rm {VPC_ID.name}` for the region's default VPC")
    return text


def _ssh_allowed_cidrs(raw: Mapping[str, Any]) -> tuple[str, ...]:
    key = SSH_ALLOWED_CIDRS.name
    cidrs = config.listing(raw, SSH_ALLOWED_CIDRS)
    example = "\"$(curl -4 -s https://ifconfig.me)/32\""
    if not cidrs:
        raise ConfigError(f"config {config.NAMESPACE}:{key} is not set; SSH is open only to "
                          f"these networks: {config.list_fix(key, example)}")
    anywhere = config.boolean(raw, ALLOW_SSH_FROM_ANYWHERE)
    networks = []
    for cidr in cidrs:
        try:
            network = ipaddress.ip_network(cidr, strict=True)
        except ValueError:
            try:
                became = ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ConfigError(f"config {config.NAMESPACE}:{key} has {cidr!r}, which is not a "
                                  f"CIDR such as 203.0.113.7/32: {config.list_fix(key, example)}") from None
            one = f"{cidr.split('/', 1)[0]}/{became.max_prefixlen}"
            raise ConfigError(f"config {config.NAMESPACE}:{key} has {cidr!r}, which has host bits "
                              f"set: it would open SSH to all of {became}; for that one address "
                              f"write {one}: {config.list_fix(key, one)}") from None
        if network.version != 4:
            raise ConfigError(f"config {config.NAMESPACE}:{key} has {cidr!r}, an IPv6 network; the "
                              f"droplets have no IPv6 address, so SSH reaches them from IPv4 only: "
                              f"give your IPv4 address, {config.list_fix(key, example)}")
        if network.prefixlen == 0 and not anywhere:
            raise ConfigError(f"config {config.NAMESPACE}:{key} has {cidr!r}, which opens SSH to the "
                              f"whole internet: give your own address, {config.list_fix(key, example)}; "
                              f"or, if you mean it, `pulumi config set {ALLOW_SSH_FROM_ANYWHERE.name} true`")
        networks.append(str(network))
    return tuple(networks)


# --- cloud-init -----------------------------------------------------------------------------

def _cloud_config(doc: dict) -> str:
    return "#cloud-config\n" + yaml.safe_dump(doc, sort_keys=False, width=1000)


def etcd_exec_start() -> str:
    """The key-value droplet's etcd command line, as systemd's ExecStart: the lab's etcd
    arguments (classic.etcd_args), the address read from KEYSTORE_ENV_FILE at start."""
    args = classic.etcd_args("${" + KEYSTORE_ADDRESS_VAR + "}", ETCD_DATA_DIR)
    return " ".join(["/usr/bin/etcd", *args])


def keystore_user_data() -> str:
    """Debian's etcd-server, started by its own systemd unit with classic mode's arguments."""
    address = (f"ip -4 -o addr show dev {PRIVATE_INTERFACE} scope global "
               "| awk '{split($4, a, \"/\"); print a[1]; exit}'")
    drop_in = "\n".join([
        "# overlay-bench: classic mode's key-value store, with the arguments the local lab's",
        "# etcd runs with (stacks/classic.py), serving the VPC address only.",
        "[Service]",
        f"EnvironmentFile={KEYSTORE_ENV_FILE}",
        # Debian's unit sets these for its own ExecStart; ours names every setting.
        "UnsetEnvironment=ETCD_NAME ETCD_DATA_DIR DAEMON_ARGS",
        "ExecStart=",
        f"ExecStart={etcd_exec_start()}",
        ""])
    return _cloud_config({
        # bootcmd runs before write_files and packages, on every boot.
        "bootcmd": [["sh", "-c", f"mkdir -p {Path(KEYSTORE_ENV_FILE).parent} && a=$({address}) && "
                                 f"[ -n \"$a\" ] && echo \"{KEYSTORE_ADDRESS_VAR}=$a\" > {KEYSTORE_ENV_FILE}"]],
        # Written before the package is installed: etcd's first start already has it.
        "write_files": [{"path": ETCD_DROP_IN, "permissions": "0644", "content": drop_in}],
        "package_update": True,
        "packages": ["etcd-server"],
        "runcmd": [["systemctl", "daemon-reload"], ["systemctl", "enable", "etcd"],
                   ["systemctl", "restart", "etcd"]],
    })


def node_user_data(mode: str, keystore_private_ip: str | None) -> str:
    """Debian's docker.io (20.10): the last engine line that still honours cluster-store."""
    doc: dict = {"package_update": True, "packages": ["docker.io"]}
    if mode == "classic":
        assert keystore_private_ip is not None
        daemon = classic.engine_settings(keystore_private_ip, PRIVATE_INTERFACE)
        # write_files runs before packages: the engine's first start already has it.
        doc["write_files"] = [{"path": "/etc/docker/daemon.json", "permissions": "0644",
                               "content": json.dumps(daemon, indent=2) + "\n"}]
    doc["runcmd"] = [["systemctl", "enable", "docker"], ["systemctl", "restart", "docker"]]
    return _cloud_config(doc)


# --- readiness --------------------------------------------------------------------------------

def _journal_says(unit: str, pattern: str) -> str:
    """Shell: the last journal line of `unit` this boot matching `pattern` (else its last
    line), without dockerd's logrus prefix."""
    last = f"journalctl -u {unit} -b --no-pager -o cat 2>/dev/null"
    untelling = "|".join(classic.UNTELLING)
    return (f"{{ {last} | grep -E {shlex.quote(pattern)} | grep -v -E {shlex.quote(untelling)} "
            f"| tail -n 1 | grep . || {last} | tail -n 1; }} "
            "| sed -e 's/^time=\"[^\"]*\" level=[a-z]* msg=\"//' -e 's/\"$//' -e 's/\\\\n$//'")


def engine_ready_command(store_url: str | None, engine_wait_s: int = ENGINE_WAIT_S,
                         store_wait_s: int = STORE_WAIT_S) -> str:
    """Shell run on a node droplet: exit 0 once its engine answers (and, in classic mode,
    reaches its key-value store); else exit 1 with the engine's own last words.

    A dockerd that exits (an unsupported store, a bad daemon.json) is restarted by systemd
    until StartLimitBurst, then the unit is failed: that is seen within seconds, not at the
    timeout. A classic engine whose store does not answer keeps running and logs "discovery
    error: ..." every 20 s: that line is the message.
    """
    says = _journal_says("docker", f"{classic.ENGINE_GAVE_UP}|{classic.STORE_ERROR}")
    lines = [
        # cloud-init may report "degraded" and exit non-zero: the engine check decides.
        "cloud-init status --wait >/dev/null 2>&1",
        f"end=$(( $(date +%s) + {engine_wait_s} ))",
        "until docker info >/dev/null 2>&1; do",
        "  if systemctl is-failed --quiet docker; then",
        f"    echo \"dockerd did not start: $({says})\" >&2; exit 1",
        "  fi",
        "  if [ \"$(date +%s)\" -ge \"$end\" ]; then",
        f"    echo \"dockerd did not answer within {engine_wait_s} s: $({says})\" >&2; exit 1",
        "  fi",
        "  sleep 2",
        "done",
    ]
    if store_url:
        host, port = store_url.split("://", 1)[1].rsplit(":", 1)
        lines += [
            "store=$(docker info --format '{{.ClusterStore}}')",
            f"if [ \"$store\" != {shlex.quote(store_url)} ]; then",
            f"  echo \"this engine ignores cluster-store (it reports '$store', not {store_url}): "
            "classic mode needs an engine older than Docker 23.0\" >&2; exit 1",
            "fi",
            f"end=$(( $(date +%s) + {store_wait_s} ))",
            f"until timeout 3 bash -c 'exec 3<>/dev/tcp/{host}/{port}' 2>/dev/null; do",
            "  if [ \"$(date +%s)\" -ge \"$end\" ]; then",
            f"    echo \"this engine cannot reach its key-value store {store_url}: $({says})\" >&2; exit 1",
            "  fi",
            "  sleep 2",
            "done",
        ]
    return "\n".join(lines)


def keystore_ready_command(wait_s: int = ENGINE_WAIT_S, env_file: str = KEYSTORE_ENV_FILE) -> str:
    """Shell run on the key-value droplet: exit 0 once etcd answers its v2 API on the VPC
    address, else exit 1 with etcd's last log line."""
    says = _journal_says("etcd", "level=(error|fatal)|error|fatal")
    port = classic.ETCD_CLIENT_PORT
    return "\n".join([
        "cloud-init status --wait >/dev/null 2>&1",
        f"end=$(( $(date +%s) + {wait_s} ))",
        f"if [ -r {env_file} ]; then . {env_file}; fi",
        f"if [ -z \"${{{KEYSTORE_ADDRESS_VAR}:-}}\" ]; then",
        f"  echo \"the key-value droplet found no VPC address on {PRIVATE_INTERFACE} at boot "
        f"({env_file} is missing): etcd has no address to serve\" >&2; exit 1",
        "fi",
        # GET /v2/keys/ answers 200 only with the v2 API on (bash's /dev/tcp: no curl needed).
        f"until timeout 3 bash -c 'exec 3<>/dev/tcp/$0/{port} && printf \"GET /v2/keys/ HTTP/1.0\\r\\n\\r\\n\" >&3 "
        f"&& head -n 1 <&3' \"${KEYSTORE_ADDRESS_VAR}\" 2>/dev/null | grep -q ' 200 '; do",
        "  if systemctl is-failed --quiet etcd; then",
        f"    echo \"etcd did not start: $({says})\" >&2; exit 1",
        "  fi",
        "  if [ \"$(date +%s)\" -ge \"$end\" ]; then",
        f"    echo \"etcd did not answer its v2 API on ${KEYSTORE_ADDRESS_VAR}:{port} within "
        f"{wait_s} s: $({says})\" >&2; exit 1",
        "  fi",
        "  sleep 2",
        "done",
    ])


# --- resources --------------------------------------------------------------------------------

def firewall_rules(settings: DigitalOceanSettings, mode: str, cluster_tag: pulumi.Input[str]):
    """stacks/firewall.py's inbound rules (the ones the lab's --firewall applies), in port
    ranges: SSH from the configured networks, the rest from the cluster's droplets only;
    outbound open."""
    import pulumi_digitalocean as do

    def source(rule: firewall.Rule) -> dict:
        if rule.source == firewall.OPERATOR:
            return {"source_addresses": list(settings.ssh_allowed_cidrs)}
        return {"source_tags": [cluster_tag]}

    inbound = [do.FirewallInboundRuleArgs(protocol=rule.protocol, port_range=rule.port_range, **source(rule))
               for rule in firewall.inbound(mode, classic.ETCD_CLIENT_PORT)]
    everywhere = ["0.0.0.0/0", "::/0"]
    outbound = [do.FirewallOutboundRuleArgs(protocol=p, port_range="1-65535",
                                            destination_addresses=everywhere)
                for p in ("tcp", "udp")]
    outbound.append(do.FirewallOutboundRuleArgs(protocol="icmp", destination_addresses=everywhere))
    return inbound, outbound


def ssh_key(settings: DigitalOceanSettings) -> pulumi.Input[str]:
    """What droplets name the public key by: the account's key when it already holds this
    one (DigitalOcean refuses a second copy), else a key the stack creates and destroys.

    A key this stack created is found on the account too, under the stack's name: it is
    declared again so that it stays the stack's (and goes with `pulumi destroy`).
    """
    import pulumi
    import pulumi_digitalocean as do

    name = f"{settings.name_prefix}-key"
    # An account holds a public key at most once: one match at most.
    held = do.get_ssh_keys(filters=[do.GetSshKeysFilterArgs(
        key="fingerprint", values=[settings.ssh_key_fingerprint])]).ssh_keys or []
    if held and held[0].name != name:
        pulumi.log.info(f"using the account's SSH key {held[0].name!r} "
                        f"({settings.ssh_key_fingerprint}); the stack neither creates nor deletes it")
        return settings.ssh_key_fingerprint
    return do.SshKey("ssh-key", name=name, public_key=settings.ssh_public_key).fingerprint


def vpc_uuid(settings: DigitalOceanSettings) -> str | None:
    """The VPC the droplets join: `vpcId`'s (checked to be in the region), else None, the
    region's default VPC. Neither is the stack's: nothing creates or destroys a VPC (the
    first VPC of a region becomes its default, and a default VPC cannot be deleted)."""
    import pulumi_digitalocean as do

    if settings.vpc_id is None:
        return None
    vpc = do.get_vpc(id=settings.vpc_id)
    if vpc.region != settings.region:
        raise StackError(f"config {config.NAMESPACE}:{VPC_ID.name} {settings.vpc_id} is a VPC of "
                         f"{vpc.region}, not of {settings.region}: name a VPC of {settings.region} "
                         f"(`doctl vpcs list`), or remove it with `pulumi config rm {VPC_ID.name}`")
    return vpc.id


def declare(common: config.Common, settings: DigitalOceanSettings) -> pulumi.Output[dict]:
    import pulumi
    import pulumi_digitalocean as do
    from pulumi_command import remote

    prefix = settings.name_prefix
    vpc = vpc_uuid(settings)
    key = ssh_key(settings)
    tag = do.Tag("cluster", name=prefix)

    def droplet(name: str, user_data: pulumi.Input[str]) -> do.Droplet:
        return do.Droplet(name, name=f"{prefix}-{name}", image=settings.image, region=settings.region,
                          size=settings.size, vpc_uuid=vpc, ssh_keys=[key],
                          tags=[tag.name], user_data=user_data, ipv6=False)

    keystore = droplet("keystore", keystore_user_data()) if common.mode == "classic" else None
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

    ssh = _connection(settings)

    keystore_ready = []
    if keystore:
        keystore_ready.append(remote.Command("keystore-ready", connection=ssh(keystore),
                                             create=keystore_ready_command()))
    # After boot, the same commands as on machines people already have (the ssh stack):
    # each first waits for its droplet (cloud-init, the engine and, in classic mode, the
    # store), and starts once the key-value droplet's etcd answers.
    cluster = remote_cluster.declare(
        [remote_cluster.Machine(
            f"node{i}", n.ipv4_address, ssh(n), n.ipv4_address_private,
            boot_check=(kv_ip.apply(lambda ip: engine_ready_command(classic.store_url(ip)))
                        if kv_ip is not None else engine_ready_command(None)))
         for i, n in enumerate(nodes, start=1)],
        common.mode, common.overlay_network, common.stack, after=keystore_ready)

    def document(resolved: dict) -> dict:
        kv = resolved["keystore"]
        return outputs.document(
            stack=common.stack, provider=common.provider, mode=common.mode,
            nodes=[outputs.node(f"{prefix}-node{i}", private, f"ssh://root@{public}",
                                ssh_key_path=settings.ssh_private_key_path)
                   for i, (public, private) in enumerate(resolved["nodes"], start=1)],
            keystore=(outputs.keystore(f"{prefix}-keystore", kv, classic.store_url(kv))
                      if kv else None),
            overlay_network=common.overlay_network, link_rate=None, mtu_bytes=VPC_MTU_BYTES,
            unsupported_networks=UNSUPPORTED_NETWORKS)

    return pulumi.Output.all(
        nodes=pulumi.Output.all(*[pulumi.Output.all(n.ipv4_address, n.ipv4_address_private)
                                  for n in nodes]),
        keystore=kv_ip,
        # Resolved (not a secret) once the network exists: a finished `pulumi up` means a
        # usable cluster.
        network=cluster.done,
    ).apply(document)


def _connection(settings: DigitalOceanSettings):
    """The remote commands' SSH connection to a droplet, by how the key logs in."""
    import pulumi
    from pulumi_command import remote

    private_key = password = None
    if settings.ssh_login in ("key", "key+password"):
        # Read here, sent only as a secret: Pulumi encrypts it in state and never prints it.
        private_key = pulumi.Output.secret(Path(settings.ssh_private_key_path).read_text())
    if settings.ssh_login == "key+password":
        password = pulumi.Output.secret(settings.ssh_private_key_password)

    def ssh(machine) -> remote.ConnectionArgs:
        # New droplets take a minute to start sshd: allow for it before failing.
        return remote.ConnectionArgs(host=machine.ipv4_address, user="root",
                                     private_key=private_key, private_key_password=password,
                                     agent_socket_path=settings.agent_socket_path,
                                     dial_error_limit=40)
    return ssh
