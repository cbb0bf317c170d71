"""The lab's limits (stacks/local/spec.py), checked in one place: the Pulumi program's
configuration and `python -m stacks.local up` give the same reason, each worded for where
the value was set. No root needed: the checks run before anything touches the machine."""
from __future__ import annotations

import pytest

from stacks import config
from stacks.local import __main__ as lab_cli
from stacks.local import spec

# (config key, its value, the lab's option, its value, the reason's telling words)
BAD = [
    ("labName", "My-Lab", "--name", "My-Lab", "1-8 lowercase letters or digits"),
    ("labName", "toolongname", "--name", "toolongname", "1-8 lowercase letters or digits"),
    ("linkRate", "fast", "--link-rate", "fast", "tc units such as 1gbit"),
    ("linkRate", "0gbit", "--link-rate", "0gbit", "not a rate above zero"),
    ("mtu", "9001", "--mtu", 9001, "choose an MTU between 1280 and 9000 bytes"),
    ("mtu", "1279", "--mtu", 1279, "choose an MTU between 1280 and 9000 bytes"),
    ("subnet", "10.213.0.0/28", "--subnet", "10.213.0.0/28", "use a /26 or larger"),
    ("subnet", "10.213.0.1/24", "--subnet", "10.213.0.1/24", "not an IPv4 network"),
]


@pytest.mark.parametrize("key,value,flag,flag_value,words", BAD)
def test_configuration_and_command_line_give_the_same_reason(capsys, monkeypatch, key, value,
                                                             flag, flag_value, words):
    def preflight(_spec):
        raise AssertionError("the spec check let a bad value through to the machine")

    monkeypatch.setattr(lab_cli.lab, "preflight", preflight)
    with pytest.raises(config.ConfigError) as from_config:
        config.parse({key: value}, "local")
    args = ["up", "--name", "ok"] + ([] if flag == "--name" else [flag, str(flag_value)])
    if flag == "--name":
        args[2] = flag_value
    assert lab_cli.main(args) == 1
    from_cli = capsys.readouterr().err.strip()
    cli_prefix = f"error: {flag} {flag_value!r}: "
    assert from_cli.startswith(cli_prefix) and words in from_cli, from_cli
    reason = from_cli[len(cli_prefix):]
    assert str(from_config.value).startswith(f"config overlay-bench:{key} is ")
    assert f": {reason}: set it with `pulumi config set {key} " in str(from_config.value)


def test_the_nodes_and_mode_limits_are_the_labs():
    with pytest.raises(spec.SpecError, match=r"--nodes 1: a multi-host network needs at least 2"):
        spec.LabSpec("lab", nodes=1).check()
    with pytest.raises(spec.SpecError, match=r"--nodes 51: at most 50 nodes fit"):
        spec.LabSpec("lab", nodes=51).check()
    with pytest.raises(spec.SpecError, match=r"--mode 'mesh': use classic or swarm"):
        spec.LabSpec("lab", mode="mesh").check()
    spec.LabSpec("lab", nodes=50, mode="swarm", link_rate="1gbit", mtu_bytes=9000,
                 subnet="10.99.0.0/26").check()


@pytest.mark.parametrize("rate,bits_per_s", [("1gbit", 10**9), ("500mbit", 5 * 10**8),
                                             ("1.5Gbit", 15 * 10**8), (" 64kbit ", 64000)])
def test_rates_in_tc_units(rate, bits_per_s):
    assert spec.rate_bits_per_s(rate) == bits_per_s

