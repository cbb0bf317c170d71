"""The Pulumi program's configuration: read once, validated before any resource exists.

Every key lives in the `overlay-bench` namespace (`pulumi config set KEY VALUE` inside the
project), except the DigitalOcean token, which is the provider's own `digitalocean:token`.
`parse()` is pure (raw strings in, a frozen StackConfig out) so that each error is unit
tested; `load()` feeds it from Pulumi. Every error is a ConfigError whose one-line
message names the key and the `pulumi config set` that fixes it.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from stacks.local import spec
from stacks.outputs import MODES, PROVIDERS

NAMESPACE = "overlay-bench"

# DigitalOcean droplet names are hostnames; the prefix gets "-keystore" / "-node9" appended.
PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")

# Pinned KV store image for classic mode: the 2015 post ran progrium/consul (retired); this
# is the current official image, in the 1.x line whose KV HTTP API libkv speaks.
DEFAULT_CONSUL_IMAGE = "hashicorp/consul:1.22.7"
# Ports the benchmark's host-network servers listen on: iperf 2 (5001), iperf3 (5201),
# sockperf (11111). Overlay traffic itself travels as VXLAN (udp 4789).
DEFAULT_BENCHMARK_PORTS = (5001, 5201, 11111)
# The same name the local lab gives its overlay network.
DEFAULT_OVERLAY_NETWORK = "overlay-bench"


class StackError(Exception):
    """Something the user can fix (configuration, missing tool); the message says how."""


class ConfigError(StackError):
    """A configuration value that is missing or wrong."""


@dataclass(frozen=True)
class StackConfig:
    stack: str
    provider: str = "local"
    mode: str = "classic"
    nodes: int = 2
    overlay_network: str = DEFAULT_OVERLAY_NETWORK
    # local
    lab_name: str = ""
    link_rate: Optional[str] = None
    mtu_bytes: int = 1500
    subnet: Optional[str] = None
    # digitalocean
    region: str = "ams3"
    size: str = "s-1vcpu-1gb"
    image: str = "debian-12-x64"
    consul_image: str = DEFAULT_CONSUL_IMAGE
    name_prefix: str = ""
    ssh_public_key_path: str = ""
    ssh_public_key: str = ""
    ssh_private_key_path: str = ""
    ssh_allowed_cidrs: tuple[str, ...] = ()
    benchmark_ports: tuple[int, ...] = DEFAULT_BENCHMARK_PORTS
    # virtualbox
    machine_prefix: str = ""
    virtualbox_memory_mb: int = 1024
    virtualbox_cpus: int = 1
    boot2docker_url: Optional[str] = None
    hostonly_cidr: Optional[str] = None


# key -> the providers it applies to. The table is the list of keys a user may set;
# anything else in the namespace is a typo and is refused. Defaults: README.md (The Pulumi program).
KEYS: dict[str, tuple[str, ...]] = {
    "provider": PROVIDERS,
    "mode": PROVIDERS,
    "nodes": PROVIDERS,
    "overlayNetwork": ("digitalocean", "virtualbox"),
    "labName": ("local",),
    "linkRate": ("local",),
    "mtu": ("local",),
    "subnet": ("local",),
    "region": ("digitalocean",),
    "size": ("digitalocean",),
    "image": ("digitalocean",),
    "consulImage": ("digitalocean", "virtualbox"),
    "namePrefix": ("digitalocean",),
    "sshPublicKeyPath": ("digitalocean",),
    "sshPrivateKeyPath": ("digitalocean",),
    "sshAllowedCidrs": ("digitalocean",),
    "benchmarkPorts": ("digitalocean",),
    "machinePrefix": ("virtualbox",),
    "virtualboxMemoryMb": ("virtualbox",),
    "virtualboxCpus": ("virtualbox",),
    "boot2dockerUrl": ("virtualbox",),
    "virtualboxHostonlyCidr": ("virtualbox",),
}


def _fix(key: str, example: str) -> str:
    return f"set it with `pulumi config set {key} {example}`"


def _int(raw: Mapping[str, str], key: str, default: int, lo: int, hi: int, example: str,
         too_small: str = "") -> int:
    value = raw.get(key)
    if value is None:
        return default
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"config {NAMESPACE}:{key} is {value!r}, not a whole number: "
                          f"{_fix(key, example)}") from None
    if number < lo and too_small:
        raise ConfigError(f"config {NAMESPACE}:{key} is {number}: {too_small}: {_fix(key, example)}")
    if not lo <= number <= hi:
        raise ConfigError(f"config {NAMESPACE}:{key} is {number}, outside {lo}..{hi}: "
                          f"{_fix(key, example)}")
    return number


def _choice(raw: Mapping[str, str], key: str, default: str, choices: tuple[str, ...]) -> str:
    value = raw.get(key, default)
    if value not in choices:
        raise ConfigError(f"config {NAMESPACE}:{key} is {value!r}; it must be one of "
                          f"{', '.join(choices)}: {_fix(key, choices[0])}")
    return value


def _list(raw: Mapping[str, str], key: str) -> Optional[list[str]]:
    """A list set with `--path 'key[0]' v` (JSON text) or as one comma-separated value."""
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, list):
        return [str(v).strip() for v in value]
    text = str(value).strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError:
            raise ConfigError(f"config {NAMESPACE}:{key} is not a valid list ({text!r}): set it "
                              f"with `pulumi config set --path '{key}[0]' VALUE`") from None
        return [str(v).strip() for v in items]
    return [part.strip() for part in text.split(",") if part.strip()]


def default_lab_name(stack: str) -> str:
    """Lab names are [a-z0-9]{1,8}; derive one from the stack name (`local` -> `local`)."""
    name = re.sub(r"[^a-z0-9]", "", stack.lower())[:8]
    return name or "lab"


def _default_prefix(stack: str) -> str:
    return "ob-" + (re.sub(r"[^a-z0-9-]", "-", stack.lower()).strip("-")[:20] or "stack")


def _key_file(path_text: str, key: str, what: str) -> Path:
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"config {NAMESPACE}:{key}: {what} {str(path)!r} does not exist: create one with "
            f"`ssh-keygen -t ed25519` or {_fix(key, '~/.ssh/YOUR_KEY' + ('.pub' if what.startswith('public') else ''))}")
    return path


def parse(raw: Mapping[str, Any], stack: str, env: Mapping[str, str] | None = None,
          provider_token: bool = False) -> StackConfig:
    """Validate the raw `overlay-bench:*` values (keys without namespace) of one stack.

    `provider_token` is whether `digitalocean:token` is set (its value is never read here);
    `env` stands for os.environ (DIGITALOCEAN_TOKEN).
    """
    env = os.environ if env is None else env
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise ConfigError(f"unknown config key {NAMESPACE}:{unknown[0]} (known: {', '.join(KEYS)}): "
                          f"remove it with `pulumi config rm {unknown[0]}`")
    provider = _choice(raw, "provider", "local", PROVIDERS)
    ignored = [k for k in raw if provider not in KEYS[k]]
    if ignored:
        raise ConfigError(f"config {NAMESPACE}:{ignored[0]} does not apply to provider {provider} "
                          f"(it is for {', '.join(KEYS[ignored[0]])}): remove it with "
                          f"`pulumi config rm {ignored[0]}`")
    mode = _choice(raw, "mode", "classic", MODES)
    nodes = _int(raw, "nodes", 2, 2, 50, "2", too_small="a multi-host network needs at least 2 nodes")
    values: dict[str, Any] = dict(stack=stack, provider=provider, mode=mode, nodes=nodes)

    network = raw.get("overlayNetwork", DEFAULT_OVERLAY_NETWORK)
    if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}", network):
        raise ConfigError(f"config {NAMESPACE}:overlayNetwork {network!r} is not a Docker network "
                          f"name: {_fix('overlayNetwork', DEFAULT_OVERLAY_NETWORK)}")
    values["overlay_network"] = network

    if provider == "local":
        lab_name = raw.get("labName") or default_lab_name(stack)
        if not spec.NAME_RE.fullmatch(lab_name):  # the lab's own rules, checked before any resource
            raise ConfigError(f"config {NAMESPACE}:labName {lab_name!r} must be 1-8 lower-case "
                              f"letters or digits: {_fix('labName', 'lab1')}")
        link_rate = raw.get("linkRate") or None
        if link_rate is not None:
            try:
                spec.rate_bits_per_s(link_rate)
            except spec.LabError:
                raise ConfigError(f"config {NAMESPACE}:linkRate {link_rate!r} is not a tc rate above "
                                  f"zero such as 1gbit or 100mbit: {_fix('linkRate', '1gbit')}") from None
        subnet = raw.get("subnet") or None
        if subnet is not None:
            try:
                network = ipaddress.IPv4Network(subnet)
            except ValueError:
                network = None
            if network is None or network.num_addresses < spec.MIN_SUBNET_ADDRESSES:
                raise ConfigError(f"config {NAMESPACE}:subnet {subnet!r} must be an IPv4 network "
                                  f"of /26 or larger: {_fix('subnet', '10.213.0.0/24')}")
        values.update(lab_name=lab_name, link_rate=link_rate.lower() if link_rate else None,
                      mtu_bytes=_int(raw, "mtu", 1500, spec.MTU_MIN_BYTES, spec.MTU_MAX_BYTES, "1500"), subnet=subnet)

    elif provider == "digitalocean":
        if not provider_token and not env.get("DIGITALOCEAN_TOKEN"):
            raise ConfigError("no DigitalOcean API token: set it with `pulumi config set --secret "
                              "digitalocean:token YOUR_TOKEN` or export DIGITALOCEAN_TOKEN")
        prefix = raw.get("namePrefix") or _default_prefix(stack)
        if not PREFIX_RE.fullmatch(prefix):
            raise ConfigError(f"config {NAMESPACE}:namePrefix {prefix!r} must be a lower-case "
                              f"hostname start (a-z, 0-9, -; at most 31): {_fix('namePrefix', 'ob-lab')}")
        public_path = _key_file(raw.get("sshPublicKeyPath", "~/.ssh/id_ed25519.pub"),
                                "sshPublicKeyPath", "public key file")
        public_key = public_path.read_text().strip()
        if not public_key.startswith(("ssh-", "ecdsa-")):
            raise ConfigError(f"config {NAMESPACE}:sshPublicKeyPath {str(public_path)!r} is not an "
                              f"OpenSSH public key: point it at the .pub file, "
                              f"{_fix('sshPublicKeyPath', '~/.ssh/id_ed25519.pub')}")
        default_private = str(public_path)[:-4] if str(public_path).endswith(".pub") else ""
        private_path = _key_file(raw.get("sshPrivateKeyPath", default_private) or "",
                                 "sshPrivateKeyPath", "private key file")
        cidrs = _list(raw, "sshAllowedCidrs")
        if not cidrs:
            raise ConfigError(f"config {NAMESPACE}:sshAllowedCidrs is not set; SSH is open only to "
                              f"these networks: set it with `pulumi config set --path "
                              f"'sshAllowedCidrs[0]' YOUR.PUBLIC.IP/32`")
        networks = []
        for cidr in cidrs:
            try:
                networks.append(str(ipaddress.ip_network(cidr, strict=False)))
            except ValueError:
                raise ConfigError(f"config {NAMESPACE}:sshAllowedCidrs has {cidr!r}, which is not a "
                                  f"CIDR such as 203.0.113.7/32: set it with `pulumi config set "
                                  f"--path 'sshAllowedCidrs[0]' 203.0.113.7/32`") from None
        ports = _list(raw, "benchmarkPorts")
        if ports is not None:
            try:
                port_numbers = tuple(int(p) for p in ports)
            except ValueError:
                port_numbers = ()
            if not port_numbers or any(not 1 <= p <= 65535 or p in (2375, 2376)
                                       for p in port_numbers):
                raise ConfigError(f"config {NAMESPACE}:benchmarkPorts {ports!r} must be ports "
                                  f"1-65535 other than the Docker API's 2375/2376: set it with "
                                  f"`pulumi config set --path 'benchmarkPorts[0]' 5201`")
            values["benchmark_ports"] = port_numbers
        values.update(region=raw.get("region", "ams3"), size=raw.get("size", "s-1vcpu-1gb"),
                      image=raw.get("image", "debian-12-x64"),
                      consul_image=raw.get("consulImage", DEFAULT_CONSUL_IMAGE),
                      name_prefix=prefix, ssh_public_key_path=str(public_path),
                      ssh_public_key=public_key, ssh_private_key_path=str(private_path),
                      ssh_allowed_cidrs=tuple(networks))

    else:  # virtualbox
        prefix = raw.get("machinePrefix") or _default_prefix(stack)
        if not PREFIX_RE.fullmatch(prefix):
            raise ConfigError(f"config {NAMESPACE}:machinePrefix {prefix!r} must be a lower-case "
                              f"name start (a-z, 0-9, -; at most 31): {_fix('machinePrefix', 'mhs')}")
        url = raw.get("boot2dockerUrl") or None
        if url is not None and not re.match(r"^(https?|file)://", url):
            raise ConfigError(f"config {NAMESPACE}:boot2dockerUrl {url!r} must be an http(s):// or "
                              f"file:// URL of a boot2docker ISO: "
                              f"{_fix('boot2dockerUrl', 'file:///path/boot2docker.iso')}")
        hostonly = raw.get("virtualboxHostonlyCidr") or None
        if hostonly is not None:
            try:
                ipaddress.IPv4Interface(hostonly)
            except ValueError:
                hostonly = ""
            if "/" not in (hostonly or ""):
                raise ConfigError(f"config {NAMESPACE}:virtualboxHostonlyCidr "
                                  f"{raw.get('virtualboxHostonlyCidr')!r} must be the host's address "
                                  f"and prefix on the host-only network: "
                                  f"{_fix('virtualboxHostonlyCidr', '192.168.56.1/24')}")
        values.update(machine_prefix=prefix, hostonly_cidr=hostonly,
                      consul_image=raw.get("consulImage", DEFAULT_CONSUL_IMAGE),
                      virtualbox_memory_mb=_int(raw, "virtualboxMemoryMb", 1024, 512, 65536, "1024"),
                      virtualbox_cpus=_int(raw, "virtualboxCpus", 1, 1, 64, "1"),
                      boot2docker_url=url)
    return StackConfig(**values)


def load() -> StackConfig:
    """Read this stack's configuration from Pulumi and validate it (parse())."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    everything = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    prefix = NAMESPACE + ":"
    raw = {k[len(prefix):]: v for k, v in everything.items() if k.startswith(prefix)}
    # Presence only: the token's value stays inside the DigitalOcean provider.
    token_set = bool(runtime_config.get_config("digitalocean:token"))
    return parse(raw, pulumi.get_stack(), provider_token=token_set)
