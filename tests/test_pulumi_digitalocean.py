"""The digitalocean stack under the real Pulumi CLI, as far as it runs without the cloud.

A copy of the project in a temporary directory, its own file backend and PULUMI_HOME, the
environment of scripts/pulumi-env.sh (the user's). What happens before any DigitalOcean
call is real: the stack file Pulumi writes, the configuration the CLI hands the program,
the environment the program sees, and the one line the user gets.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from stacks import plugins
from tests.conftest import REPO
from tests.test_program_support import ssh_key_pair
from tests.test_pulumi_local import COMMAND_TIMEOUT_S, PROJECT_FILES, copy_project

pytestmark = pytest.mark.slow


class Stack:
    def __init__(self, root: Path, passphrase: str, key_passphrase: str = ""):
        self.dir, self.env = copy_project(root, (*PROJECT_FILES, "Pulumi.digitalocean.yaml"))
        # The plugins of this run only: none for DigitalOcean, as after scripts/setup.sh.
        home = root / "pulumi-home"
        (home / "plugins").mkdir(parents=True)
        for plugin in (Path(self.env.get("PULUMI_HOME", Path.home() / ".pulumi")) / "plugins").glob(
                "resource-command-*"):
            if plugin.is_dir():
                shutil.copytree(plugin, home / "plugins" / plugin.name, symlinks=True)
        self.env.update(PULUMI_HOME=str(home), PULUMI_CONFIG_PASSPHRASE=passphrase,
                        DIGITALOCEAN_TOKEN="dop_v1_not_a_real_token")
        self.env.pop("SSH_AUTH_SOCK", None)
        public, _private = ssh_key_pair(root, "id_ed25519", passphrase=key_passphrase)
        self.run("stack", "init", "digitalocean")
        self.run("config", "set", "--path", "overlay-bench:sshAllowedCidrs[0]", "198.51.100.7/32")
        self.run("config", "set", "overlay-bench:sshPublicKeyPath", str(public))
        self.run("config", "set", "overlay-bench:sshPrivateKeyPath", str(public)[:-4])

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(["pulumi", *args], cwd=self.dir, env=self.env, capture_output=True,
                              text=True, timeout=COMMAND_TIMEOUT_S)
        if check:
            assert proc.returncode == 0, f"pulumi {' '.join(args)}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        return proc


def errors(proc: subprocess.CompletedProcess) -> list[str]:
    text = proc.stdout + proc.stderr
    return [line.strip() for line in text.splitlines() if line.strip().startswith("error:")]


def test_an_empty_passphrase_is_refused_in_one_line(tmp_path):
    """scripts/pulumi-env.sh's empty default: the stack file gets an encryptionsalt, the
    program sees the empty passphrase and refuses before declaring anything."""
    stack = Stack(tmp_path, passphrase="")
    assert "encryptionsalt:" in (stack.dir / "Pulumi.digitalocean.yaml").read_text()
    proc = stack.run("preview", "--stack", "digitalocean", check=False)
    assert proc.returncode != 0
    found = [e for e in errors(proc) if "passphrase is empty" in e]
    assert len(found) == 1, proc.stdout + proc.stderr
    assert "export PULUMI_CONFIG_PASSPHRASE" in found[0]
    assert "Traceback" not in proc.stdout + proc.stderr


def test_with_a_passphrase_the_program_goes_on_to_the_cloud(tmp_path):
    """The same stack with a passphrase passes every check of the program; what stops it
    here is the DigitalOcean plugin, which `make cloud-setup` installs, at that version."""
    stack = Stack(tmp_path, passphrase="correct horse battery staple")
    proc = stack.run("preview", "--stack", "digitalocean", check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "passphrase is empty" not in text and "overlay-bench:" not in " ".join(errors(proc)), text
    # The plugin Pulumi looks for is the one `make cloud-setup` installs (stacks/plugins.py).
    version = plugins.plugin_version("digitalocean", (REPO / "requirements.txt").read_text())
    assert f"no resource plugin 'pulumi-resource-digitalocean' found in the workspace at version " \
           f"v{version}" in " ".join(errors(proc)), text


@pytest.mark.parametrize("secret", [True, False])
def test_a_key_passphrase_is_taken_only_as_a_secret(tmp_path, secret):
    """The CLI tells the program which keys are secrets: a key's passphrase set with
    --secret is taken (the program goes on to the cloud), set in the clear it is refused."""
    stack = Stack(tmp_path, passphrase="correct horse battery staple", key_passphrase="open sesame")
    stack.run("config", "set", *(["--secret"] if secret else []), "overlay-bench:sshPrivateKeyPassword",
              "open sesame")
    proc = stack.run("preview", "--stack", "digitalocean", check=False)
    found = " ".join(errors(proc))
    assert proc.returncode != 0
    if secret:
        assert "overlay-bench:" not in found and "pulumi-resource-digitalocean" in found, found
    else:
        assert "overlay-bench:sshPrivateKeyPassword is set in the clear" in found, found
    assert "open sesame" not in proc.stdout + proc.stderr
