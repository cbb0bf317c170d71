"""The provider registry (stacks/providers.py): it alone decides which providers exist,
which keys each takes, what the Pulumi program declares, and README.md's table."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pulumi
import pytest

from stacks import config, outputs, providers
from tests.test_program_support import PROJECT, program_error, run_program, ssh_key_pair

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_digitalocean.*"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_command.*")]


@pytest.fixture
def example_config(tmp_path: Path, monkeypatch):
    """A configuration each provider accepts (a new provider adds its own here)."""
    public, private = ssh_key_pair(tmp_path, "key")
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", "dop_v1_test")
    return {
        "local": {},
        "digitalocean": {"provider": "digitalocean", "sshPublicKeyPath": str(public),
                         "sshAllowedCidrs": "198.51.100.7/32"},
        "virtualbox": {"provider": "virtualbox"},
        "ssh": {"provider": "ssh", "sshPrivateKeyPath": str(private),
                "machines": '[{"address": "198.51.100.10", "privateAddress": "10.0.0.10"}, '
                            '{"address": "198.51.100.11", "privateAddress": "10.0.0.11"}]'},
    }


def test_readme_table_is_the_registrys():
    readme = (PROJECT / "README.md").read_text()
    assert providers.table_in(readme) == providers.markdown(), \
        "README.md's configuration table is stale: run `python -m stacks.providers --update README.md`"


def test_markdown_command_prints_the_table():
    proc = subprocess.run([sys.executable, "-m", "stacks.providers", "--markdown"], cwd=PROJECT,
                          capture_output=True, text=True, check=True)
    assert proc.stdout == providers.markdown()
    rows = [line.split(" | ")[0].strip("|` ") for line in proc.stdout.splitlines()[2:]]
    assert set(providers.key_table()) <= set(rows), "a key without a row"
    assert "digitalocean:token" in rows  # another namespace: shown, never in the key table
    assert "token" not in providers.key_table()


def test_update_rewrites_only_the_table(tmp_path: Path):
    page = tmp_path / "README.md"
    page.write_text(f"# title\n\n{providers.TABLE_START}\n| old |\n{providers.TABLE_END}\n\nafter\n")
    assert providers.update(page) is True
    text = page.read_text()
    assert text.startswith("# title\n\n") and text.endswith(f"{providers.TABLE_END}\n\nafter\n")
    assert providers.table_in(text) == providers.markdown()
    assert providers.update(page) is False


def test_reading_the_configuration_loads_no_pulumi_or_docker_sdk():
    """Parsing (every provider's module imported for the key table, the local one with the
    lab's spec) and the README table need neither the Pulumi SDKs nor docker; bench's
    import of stacks.outputs neither."""
    code = ("import sys; from stacks import config, providers, outputs; "
            "config.parse({}, 'x'); providers.markdown(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pulumi', 'pulumi_digitalocean', 'pulumi_command', 'docker')))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True,
                          text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_outputs_schema_takes_the_registrys_providers():
    assert outputs.PROVIDERS == providers.NAMES
    assert outputs.SCHEMA["properties"]["provider"]["enum"] == list(providers.NAMES)


def test_every_provider_module_has_the_interface():
    for name in providers.NAMES:
        module = providers.get(name)
        assert callable(module.parse) and callable(module.declare), name
        assert all(isinstance(key, config.Key) for key in module.KEYS), name
        assert not {k.name for k in module.KEYS} & {k.name for k in config.COMMON_KEYS}, \
            f"{name} redefines a key every provider takes"


# --- unknown providers and keys --------------------------------------------------------------

def test_unknown_provider_is_an_error_never_a_fallthrough():
    names = ", ".join(providers.NAMES)
    with pytest.raises(providers.UnknownProvider, match=f"'vbox'.*{names}"):
        providers.get("vbox")
    # With another provider's keys set, it is still the provider that is refused.
    message, mocks = program_error({"provider": "vbox", "machinePrefix": "mhs"})
    assert message == (f"config overlay-bench:provider is 'vbox'; it must be one of {names}: "
                       f"set it with `pulumi config set provider local`")
    assert not mocks.resources


def foreign_keys() -> list[tuple[str, str]]:
    """(provider, a key only other providers take), for every provider and such key."""
    table = providers.key_table()
    return [(name, key) for name in providers.NAMES for key, takers in table.items()
            if name not in takers]


@pytest.mark.parametrize("provider,key", foreign_keys())
def test_key_of_another_provider_is_refused(example_config, provider, key):
    cfg = {**example_config[provider], "provider": provider, key: "x"}
    message, mocks = program_error(cfg)
    takers = ", ".join(providers.key_table()[key])
    assert message == (f"config overlay-bench:{key} does not apply to provider {provider} "
                       f"(it is for {takers}): remove it with `pulumi config rm {key}`")
    assert not mocks.resources


def test_foreign_keys_cover_every_provider():
    assert {provider for provider, _ in foreign_keys()} == set(providers.NAMES)


# --- the registry feeds the Pulumi program ------------------------------------------------------

@pytest.mark.parametrize("name", providers.NAMES)
def test_program_declares_through_the_registry(example_config, monkeypatch, name):
    """__main__ reaches the configured provider's declare with its own settings, and
    exports the document it resolves to, key by key."""
    assert set(example_config) == set(providers.NAMES), "add an example for the new provider"
    module = providers.get(name)
    calls = []

    def declare(common, settings):
        calls.append((common, settings))
        return pulumi.Output.from_input(outputs.document(
            stack=common.stack, provider=common.provider, mode=common.mode,
            nodes=[outputs.node(f"n{i}", f"10.0.0.{i}", f"unix:///n{i}.sock") for i in (1, 2)],
            keystore=None, overlay_network=common.overlay_network, link_rate=None, mtu_bytes=1500))

    monkeypatch.setattr(module, "declare", declare)
    r = run_program(example_config[name], stack="st")
    assert len(calls) == 1
    common, settings = calls[0]
    assert (common.stack, common.provider) == ("st", name)
    assert type(settings).__module__ == module.__name__, "another provider's settings"
    assert tuple(r.exports) == outputs.KEYS and r.exports["provider"] == name
    assert not r.mocks.resources, "something besides the provider declared resources"
