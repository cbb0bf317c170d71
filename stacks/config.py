"""The Pulumi program's configuration: read once, validated before any resource exists.

Every key lives in the `overlay-bench` namespace (`pulumi config set KEY VALUE` inside the
project), except a provider's own settings such as `digitalocean:token`. This module
parses the keys every provider shares (provider, mode, nodes, overlayNetwork) into
`Common`, then hands the rest to the chosen provider's `parse` (stacks/providers.py), which
returns that provider's settings alone. `parse()` is pure (raw values in, a frozen
StackConfig out) so that each error is unit tested; `load()` feeds it from Pulumi. Every
error is a ConfigError whose one-line message names the key and the `pulumi config set`
that fixes it; the helpers below word them the same way for every provider.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common.errors import UserError
from stacks import providers
from stacks.outputs import MODES

NAMESPACE = "overlay-bench"

# Names that DigitalOcean droplets and docker-machine machines take: hostnames, to which
# "-keystore" / "-node9" is appended.
PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
DOCKER_NETWORK_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}")


class StackError(UserError):
    """Something the user can fix (configuration, missing tool); the message says how."""


class ConfigError(StackError):
    """A configuration value that is missing or wrong."""


@dataclasses.dataclass(frozen=True)
class Key:
    """A configuration key as the user sees it: what README.md's table shows of it."""

    name: str
    # The value used when the key is not set (None: unset, or derived; see `shown`).
    default: Any
    meaning: str
    # The default column in the README when the value alone does not say it.
    shown: str = ""
    namespace: str = NAMESPACE

    @property
    def qualified_name(self) -> str:
        return self.name if self.namespace == NAMESPACE else f"{self.namespace}:{self.name}"

    @property
    def default_text(self) -> str:
        return self.shown or f"`{self.default}`"

    def get(self, raw: Mapping[str, Any]) -> Any:
        return raw.get(self.name, self.default)


def _one_of(names: tuple[str, ...]) -> str:
    quoted = [f"`{name}`" for name in names]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


# Keys every provider takes.
PROVIDER = Key("provider", "local", _one_of(providers.NAMES))
MODE = Key("mode", "classic", "`classic`: engines with `--cluster-store` on a key-value node "
           "(2015); `swarm`: swarm mode")
NODES = Key("nodes", 2, "Docker nodes, 2 to 50; the first is the manager (swarm manager / "
            "classic Swarm master)")
COMMON_KEYS = (PROVIDER, MODE, NODES)

# Keys several providers take: a provider that takes one lists it in its KEYS.
OVERLAY_NETWORK = Key("overlayNetwork", "overlay-bench",
                      "name of the overlay network the stack creates (the lab always uses "
                      "`overlay-bench`)")


@dataclasses.dataclass(frozen=True)
class Common:
    """The settings every provider gets."""

    stack: str
    provider: str = "local"
    mode: str = "classic"
    nodes: int = 2
    # The lab's network name when the provider does not take overlayNetwork.
    overlay_network: str = OVERLAY_NETWORK.default


@dataclasses.dataclass(frozen=True)
class Context:
    """What a provider's parse may look at besides its keys."""

    # The environment (os.environ), e.g. DIGITALOCEAN_TOKEN.
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Every configuration key that is set, in any namespace (`digitalocean:token`): names
    # only, never a value.
    config_keys: frozenset[str] = frozenset()
    # The keys among them set with `--secret` (full names: `overlay-bench:KEY`).
    secret_keys: frozenset[str] = frozenset()
    # How the stack's secrets are encrypted: "passphrase" when its stack file has an
    # `encryptionsalt`, the file's `secretsprovider` when it names one, else None (Pulumi
    # Cloud's own, or unknown).
    secrets_provider: str | None = None


@dataclasses.dataclass(frozen=True)
class StackConfig:
    common: Common
    # The chosen provider's settings dataclass (its module's parse()).
    settings: Any


# --- helpers: one wording for every provider's errors -------------------------------------

def fix(key: str, example: str) -> str:
    return f"set it with `pulumi config set {key} {example}`"


def list_fix(key: str, example: str) -> str:
    return f"set it with `pulumi config set --path '{key}[0]' {example}`"


def integer(raw: Mapping[str, Any], key: Key, lo: int, hi: int, example: str = "",
            too_small: str = "") -> int:
    """A whole number from lo to hi; `too_small` says why below lo matters."""
    example = example or str(key.default)
    number = whole_number(raw, key, example)
    if number < lo and too_small:
        raise ConfigError(f"config {NAMESPACE}:{key.name} is {number}: {too_small}: "
                          f"{fix(key.name, example)}")
    if not lo <= number <= hi:
        raise ConfigError(f"config {NAMESPACE}:{key.name} is {number}, outside {lo}..{hi}: "
                          f"{fix(key.name, example)}")
    return number


def whole_number(raw: Mapping[str, Any], key: Key, example: str = "") -> int:
    """A whole number, any size (the provider checks its range); the default when unset."""
    value = raw.get(key.name)
    if value is None:
        return key.default
    try:
        return int(str(value).strip())
    except ValueError:
        raise ConfigError(f"config {NAMESPACE}:{key.name} is {value!r}, not a whole number: "
                          f"{fix(key.name, example or str(key.default))}") from None


def boolean(raw: Mapping[str, Any], key: Key) -> bool:
    """`true` or `false` (Pulumi config values are text); the default when unset."""
    value = raw.get(key.name)
    if value is None:
        return key.default
    text = str(value).strip().lower()
    if text not in ("true", "false"):
        raise ConfigError(f"config {NAMESPACE}:{key.name} is {value!r}, not true or false: "
                          f"{fix(key.name, 'true')}")
    return text == "true"


def secret(raw: Mapping[str, Any], key: Key, context: Context, example: str) -> str | None:
    """A value that must have been set with `--secret`; None when unset."""
    value = raw.get(key.name)
    if value is None:
        return None
    if f"{NAMESPACE}:{key.name}" not in context.secret_keys:
        raise ConfigError(f"config {NAMESPACE}:{key.name} is set in the clear: set it again as a "
                          f"secret with `pulumi config set --secret {key.name}` (it asks for "
                          f"{example}; never put it on the command line)")
    return str(value)


def require_passphrase(context: Context, stack_holds: str) -> None:
    """Refuse an empty passphrase on a stack whose secrets it would encrypt.

    scripts/pulumi-env.sh sets PULUMI_CONFIG_PASSPHRASE to "" so that the local stack,
    which holds no secret, needs no prompt; a stack that holds `stack_holds` needs a real one.
    """
    if context.secrets_provider != "passphrase":
        return
    env = context.env
    if "PULUMI_CONFIG_PASSPHRASE" in env:
        empty = not env["PULUMI_CONFIG_PASSPHRASE"]
    elif env.get("PULUMI_CONFIG_PASSPHRASE_FILE"):
        try:
            empty = not Path(env["PULUMI_CONFIG_PASSPHRASE_FILE"]).read_text().strip()
        except OSError:
            empty = False  # Pulumi itself read it, or failed before the program ran
    else:
        empty = False  # Pulumi asked for it
    if empty:
        raise ConfigError(f"this stack holds {stack_holds}, and its passphrase is empty "
                          "(scripts/pulumi-env.sh's default, for the local stack): choose one and "
                          "`export PULUMI_CONFIG_PASSPHRASE=...` (or PULUMI_CONFIG_PASSPHRASE_FILE) "
                          "before any `pulumi` command; secrets already set were encrypted with the "
                          "empty one: re-encrypt them with `pulumi stack change-secrets-provider "
                          "passphrase` (it asks for the new passphrase)")


def choice(raw: Mapping[str, Any], key: Key, choices: tuple[str, ...]) -> str:
    value = key.get(raw)
    if value not in choices:
        raise ConfigError(f"config {NAMESPACE}:{key.name} is {value!r}; it must be one of "
                          f"{', '.join(choices)}: {fix(key.name, choices[0])}")
    return value


def listing(raw: Mapping[str, Any], key: Key) -> list[str] | None:
    """A list set with `--path 'key[0]' v` (JSON text) or as one comma-separated value."""
    value = raw.get(key.name)
    if value is None:
        return None
    if isinstance(value, list):
        return [str(v).strip() for v in value]
    text = str(value).strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError:
            raise ConfigError(f"config {NAMESPACE}:{key.name} is not a valid list ({text!r}): "
                              f"{list_fix(key.name, 'VALUE')}") from None
        return [str(v).strip() for v in items]
    return [part.strip() for part in text.split(",") if part.strip()]


def name_prefix(raw: Mapping[str, Any], key: Key, stack: str, what: str, example: str) -> str:
    """A name prefix (`ob-STACK` by default) that fits hostnames once suffixed."""
    prefix = raw.get(key.name) or default_prefix(stack)
    if not PREFIX_RE.fullmatch(prefix):
        raise ConfigError(f"config {NAMESPACE}:{key.name} {prefix!r} must be a lower-case "
                          f"{what} start (a-z, 0-9, -; at most 31): {fix(key.name, example)}")
    return prefix


def default_prefix(stack: str) -> str:
    return "ob-" + (re.sub(r"[^a-z0-9-]", "-", stack.lower()).strip("-")[:20] or "stack")


def key_file(path_text: str, key: Key, what: str) -> Path:
    """An existing key file; the error says how to make one."""
    path = Path(path_text).expanduser()
    if not path.is_file():
        example = "~/.ssh/YOUR_KEY" + (".pub" if what.startswith("public") else "")
        raise ConfigError(f"config {NAMESPACE}:{key.name}: {what} {str(path)!r} does not exist: "
                          f"create one with `ssh-keygen -t ed25519` or {fix(key.name, example)}")
    return path


# --- parsing ---------------------------------------------------------------------------------

def parse(raw: Mapping[str, Any], stack: str, env: Mapping[str, str] | None = None,
          config_keys: frozenset[str] = frozenset(), secret_keys: frozenset[str] = frozenset(),
          secrets_provider: str | None = None) -> StackConfig:
    """Validate the raw `overlay-bench:*` values (keys without namespace) of one stack.

    `env` stands for os.environ; `config_keys` are the names of every configuration key set
    on the stack, in any namespace (values are never read here), `secret_keys` those set as
    secrets, `secrets_provider` how the stack encrypts them (see Context).
    """
    table = providers.key_table()
    unknown = sorted(set(raw) - set(table))
    if unknown:
        raise ConfigError(f"unknown config key {NAMESPACE}:{unknown[0]} (known: {', '.join(table)}): "
                          f"remove it with `pulumi config rm {unknown[0]}`")
    provider = choice(raw, PROVIDER, providers.NAMES)
    foreign = [k for k in raw if provider not in table[k]]
    if foreign:
        raise ConfigError(f"config {NAMESPACE}:{foreign[0]} does not apply to provider {provider} "
                          f"(it is for {', '.join(table[foreign[0]])}): remove it with "
                          f"`pulumi config rm {foreign[0]}`")
    mode = choice(raw, MODE, MODES)
    nodes = integer(raw, NODES, 2, 50, too_small="a multi-host network needs at least 2 nodes")
    network = OVERLAY_NETWORK.get(raw)
    if not DOCKER_NETWORK_RE.fullmatch(network):
        raise ConfigError(f"config {NAMESPACE}:{OVERLAY_NETWORK.name} {network!r} is not a Docker "
                          f"network name: {fix(OVERLAY_NETWORK.name, OVERLAY_NETWORK.default)}")
    common = Common(stack=stack, provider=provider, mode=mode, nodes=nodes, overlay_network=network)
    context = Context(env=os.environ if env is None else env, config_keys=config_keys,
                      secret_keys=secret_keys, secrets_provider=secrets_provider)
    return StackConfig(common, providers.get(provider).parse(raw, common, context))


def load() -> StackConfig:
    """Read this stack's configuration from Pulumi and validate it (parse())."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    everything = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    prefix = NAMESPACE + ":"
    raw = {k[len(prefix):]: v for k, v in everything.items() if k.startswith(prefix)}
    # Names only: a secret's value (digitalocean:token) stays inside its provider.
    config_keys = frozenset(k for k, v in everything.items() if v)
    secret_keys = frozenset(k for k in everything if runtime_config.is_config_secret(k)) | \
        frozenset(runtime_config.get_config_secret_keys_env())
    stack = pulumi.get_stack()
    return parse(raw, stack, config_keys=config_keys, secret_keys=secret_keys,
                 secrets_provider=secrets_provider(Path(f"Pulumi.{stack}.yaml")))


def secrets_provider(stack_file: Path) -> str | None:
    """How a stack encrypts its secrets, from its stack file (the program runs in the
    project directory): Pulumi writes `encryptionsalt` there for the passphrase provider,
    `secretsprovider` for the others it names."""
    import yaml

    try:
        settings = yaml.safe_load(stack_file.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    named = settings.get("secretsprovider")
    if named and named != "passphrase":
        return str(named)
    return "passphrase" if settings.get("encryptionsalt") or named == "passphrase" else None
