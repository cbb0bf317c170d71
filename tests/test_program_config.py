"""Configuration errors: each one stops the program before any resource exists, with one
line naming the key and the `pulumi config set` that fixes it."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stacks import config, providers
from tests.test_program_support import PROJECT, program_error, run_program, ssh_key_pair

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_digitalocean.*"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_command.*")]


@pytest.fixture
def ssh_keys(tmp_path: Path) -> tuple[Path, Path]:
    return ssh_key_pair(tmp_path)


@pytest.fixture
def do_config(ssh_keys, monkeypatch) -> dict:
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", "dop_v1_test")
    return {"provider": "digitalocean", "sshPublicKeyPath": str(ssh_keys[0]),
            "sshAllowedCidrs": '["198.51.100.7/32"]'}


def assert_clean_error(cfg: dict, *expected: str, stack: str = "test") -> str:
    message, mocks = program_error(cfg, stack)
    assert not mocks.resources, f"resources declared before the error: {[r.urn for r in mocks.resources]}"
    assert "\n" not in message, f"not one line: {message!r}"
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"
    return message


def test_unknown_provider_names_key_and_fix():
    assert_clean_error({"provider": "aws"}, "overlay-bench:provider", "'aws'",
                       "local, digitalocean, virtualbox", "`pulumi config set provider local`")


def test_unknown_mode_names_key_and_fix():
    assert_clean_error({"mode": "mesh"}, "overlay-bench:mode", "classic, swarm",
                       "`pulumi config set mode classic`")


@pytest.mark.parametrize("nodes", ["1", "0", "-3"])
def test_fewer_than_two_nodes(nodes):
    assert_clean_error({"nodes": nodes}, "overlay-bench:nodes", "at least 2 nodes",
                       "`pulumi config set nodes 2`")


def test_nodes_not_a_number():
    assert_clean_error({"nodes": "two"}, "overlay-bench:nodes", "not a whole number",
                       "`pulumi config set nodes 2`")


@pytest.mark.parametrize("cidr", ["198.51.100.300/32", "10.0.0.0/33", "my-laptop", "0.0.0.0/-1"])
def test_bad_cidr(do_config, cidr):
    do_config["sshAllowedCidrs"] = f'["198.51.100.7/32", "{cidr}"]'
    assert_clean_error(do_config, "overlay-bench:sshAllowedCidrs", repr(cidr),
                       "pulumi config set --path 'sshAllowedCidrs[0]'")


@pytest.mark.parametrize("cidr, became, one", [
    ("203.0.113.7/0", "0.0.0.0/0", "203.0.113.7/32"),
    ("198.51.100.77/24", "198.51.100.0/24", "198.51.100.77/32"),
])
def test_cidr_with_host_bits_names_the_network_it_would_become(do_config, cidr, became, one):
    do_config["sshAllowedCidrs"] = f'["{cidr}"]'
    assert_clean_error(do_config, "overlay-bench:sshAllowedCidrs", repr(cidr), "host bits set",
                       f"it would open SSH to all of {became}", f"write {one}",
                       f"pulumi config set --path 'sshAllowedCidrs[0]' {one}")


def test_ssh_from_anywhere_needs_saying_so(do_config):
    do_config["sshAllowedCidrs"] = '["0.0.0.0/0"]'
    assert_clean_error(do_config, "overlay-bench:sshAllowedCidrs", "'0.0.0.0/0'", "whole internet",
                       "curl -4", "`pulumi config set allowSshFromAnywhere true`")
    do_config["allowSshFromAnywhere"] = "maybe"
    assert_clean_error(do_config, "overlay-bench:allowSshFromAnywhere", "not true or false")
    do_config["allowSshFromAnywhere"] = "true"
    cfg = config.parse(dict(do_config), "do").settings
    assert cfg.ssh_allowed_cidrs == ("0.0.0.0/0",)


def test_ipv6_cidr_is_refused_since_droplets_have_no_ipv6(do_config):
    do_config["sshAllowedCidrs"] = '["2001:db8::/48"]'
    assert_clean_error(do_config, "overlay-bench:sshAllowedCidrs", "IPv6", "no IPv6 address",
                       "curl -4")


def test_ssh_cidrs_required(do_config):
    del do_config["sshAllowedCidrs"]
    assert_clean_error(do_config, "overlay-bench:sshAllowedCidrs is not set",
                       "pulumi config set --path 'sshAllowedCidrs[0]'")


def test_missing_public_key_file(do_config, tmp_path):
    do_config["sshPublicKeyPath"] = str(tmp_path / "nope.pub")
    assert_clean_error(do_config, "overlay-bench:sshPublicKeyPath", "nope.pub", "does not exist",
                       "ssh-keygen", "pulumi config set sshPublicKeyPath")


def test_missing_private_key_file(do_config, ssh_keys):
    ssh_keys[1].unlink()
    assert_clean_error(do_config, "overlay-bench:sshPrivateKeyPath", str(ssh_keys[1]),
                       "does not exist", "pulumi config set sshPrivateKeyPath")


def test_public_key_path_pointing_at_private_key(do_config, ssh_keys):
    do_config["sshPublicKeyPath"] = str(ssh_keys[1])
    do_config["sshPrivateKeyPath"] = str(ssh_keys[1])
    assert_clean_error(do_config, "overlay-bench:sshPublicKeyPath", "not an OpenSSH public key")


def test_missing_token(do_config, monkeypatch):
    monkeypatch.delenv("DIGITALOCEAN_TOKEN")
    assert_clean_error(do_config, "digitalocean:token",
                       "`pulumi config set --secret digitalocean:token", "DIGITALOCEAN_TOKEN")


def test_token_from_secret_config_is_accepted(do_config, monkeypatch):
    monkeypatch.delenv("DIGITALOCEAN_TOKEN")
    run = run_program(do_config, "digitalocean", secret_config={"digitalocean:token": "dop_v1_secret"})
    assert "dop_v1_secret" not in repr(run.exports)
    # The token is the provider's business: no resource of ours carries it.
    for res in run.mocks.resources:
        assert "dop_v1_secret" not in repr(res.inputs), res.urn


def test_typo_in_key_is_refused():
    assert_clean_error({"node": "3"}, "unknown config key overlay-bench:node",
                       "`pulumi config rm node`")


def test_key_of_another_provider_is_refused():
    assert_clean_error({"provider": "local", "region": "nyc3"}, "overlay-bench:region",
                       "does not apply to provider local", "`pulumi config rm region`")


@pytest.mark.parametrize("cfg,key", [
    ({"labName": "My-Lab"}, "labName"),
    ({"labName": "toolongname"}, "labName"),
    ({"linkRate": "fast"}, "linkRate"),
    ({"linkRate": "0gbit"}, "linkRate"),
    ({"mtu": "9001"}, "mtu"),
    ({"mtu": "1279"}, "mtu"),
    ({"subnet": "10.213.0.0/28"}, "subnet"),
])
def test_bad_local_values(cfg, key):
    assert_clean_error(cfg, f"overlay-bench:{key}", f"`pulumi config set {key} ")


@pytest.mark.parametrize("cfg,key", [
    ({"virtualboxHostonlyCidr": "192.168.56.0"}, "virtualboxHostonlyCidr"),
    ({"virtualboxMemoryMb": "256"}, "virtualboxMemoryMb"),
    ({"machinePrefix": "Mhs_"}, "machinePrefix"),
    ({"boot2dockerUrl": "/isos/b2d.iso"}, "boot2dockerUrl"),
])
def test_bad_virtualbox_values(cfg, key):
    # Refused by the configuration, before the tools are even looked for.
    assert_clean_error({"provider": "virtualbox", **cfg}, f"overlay-bench:{key}",
                       f"`pulumi config set {key} ")


# The accepted forms ---------------------------------------------------------------------

def test_defaults_and_derived_lab_name():
    cfg = config.parse({}, "Dev-Stack_42")
    assert (cfg.common.provider, cfg.common.mode, cfg.common.nodes) == ("local", "classic", 2)
    assert (cfg.settings.mtu_bytes, cfg.settings.link_rate, cfg.settings.subnet) == (1500, None, None)
    assert cfg.settings.lab_name == "devstack"  # [a-z0-9]{1,8} from the stack name
    assert config.parse({}, "---").settings.lab_name == "lab"


def test_virtualbox_takes_the_consul_image_and_digitalocean_does_not(do_config):
    cfg = config.parse({"provider": "virtualbox"}, "vb").settings
    assert cfg.consul_image.startswith("hashicorp/consul:1.") and "latest" not in cfg.consul_image
    do_config["consulImage"] = "hashicorp/consul:1.22.7"
    assert_clean_error(do_config, "overlay-bench:consulImage", "does not apply to provider digitalocean",
                       "it is for virtualbox", "`pulumi config rm consulImage`")


def test_digitalocean_defaults(do_config, ssh_keys):
    cfg = config.parse({k: v for k, v in do_config.items()}, "do").settings
    assert (cfg.region, cfg.size, cfg.image) == ("ams3", "s-1vcpu-1gb", "debian-12-x64")
    assert cfg.ssh_private_key_path == str(ssh_keys[1])  # the .pub path without .pub
    assert cfg.vpc_id is None  # the region's default VPC
    assert cfg.ssh_login == "key" and cfg.agent_socket_path is None


@pytest.mark.parametrize("value,expected", [
    ('["198.51.100.7/32"]', ("198.51.100.7/32",)),
    ("198.51.100.7, 203.0.113.0/24", ("198.51.100.7/32", "203.0.113.0/24")),
    (["192.0.2.0/24"], ("192.0.2.0/24",)),
    ("203.0.113.7", ("203.0.113.7/32",)),
])
def test_cidr_forms(do_config, value, expected):
    do_config["sshAllowedCidrs"] = value
    cfg = config.parse({k: v for k, v in do_config.items()}, "do").settings
    assert cfg.ssh_allowed_cidrs == expected


# The checked-in project and stack files --------------------------------------------------

def test_project_file_runs_python_in_the_venv():
    project = yaml.safe_load((PROJECT / "Pulumi.yaml").read_text())
    assert project["name"] == "overlay-bench"
    assert project["runtime"] == {"name": "python", "options": {"virtualenv": ".venv"}}


@pytest.mark.parametrize("stack", providers.NAMES)
def test_example_stack_files_are_valid(stack, ssh_keys, monkeypatch):
    settings = yaml.safe_load((PROJECT / f"Pulumi.{stack}.yaml").read_text())["config"]
    raw = {k.split(":", 1)[1]: v if isinstance(v, (list, str)) else str(v)
           for k, v in settings.items()}
    assert all(k.startswith("overlay-bench:") for k in settings), settings
    assert raw["provider"] == stack
    if stack == "digitalocean":
        # The user's own: key files, the networks SSH is open to, the token.
        monkeypatch.setenv("DIGITALOCEAN_TOKEN", "dop_v1_test")
        raw.update(sshPublicKeyPath=str(ssh_keys[0]), sshPrivateKeyPath=str(ssh_keys[1]))
        with pytest.raises(config.ConfigError, match="sshAllowedCidrs is not set"):
            config.parse(raw, stack)
        raw["sshAllowedCidrs"] = "198.51.100.7/32"
    if stack == "ssh":
        raw["sshPrivateKeyPath"] = str(ssh_keys[1])  # the user's own
    parsed = config.parse(raw, stack)
    cfg = parsed.common
    # Machines one has today run engines without cluster-store (Docker 23 and later).
    assert (cfg.provider, cfg.mode, cfg.nodes) == (stack, "swarm" if stack == "ssh" else "classic", 2)
    if stack == "ssh":
        assert [(m.address, m.private_address) for m in parsed.settings.machines] == [
            ("203.0.113.10", "10.0.0.10"), ("203.0.113.11", "10.0.0.11")]

