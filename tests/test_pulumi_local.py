"""The local stack under the real Pulumi engine: `pulumi up`, outputs, a no-op second up,
config changes, destroy, and a failed up that destroy still cleans.

Everything runs the real toolchain (scripts/setup-pulumi.sh) and the real lab, on a copy
of the project in a temporary directory with its own file backend: a user's `local`
stack and its state are never touched. The environment is scripts/pulumi-env.sh's, the
one users get.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import docker
import pytest

from stacks import outputs
from tests import names
from tests.conftest import REPO, require_root

pytestmark = [pytest.mark.root, pytest.mark.slow]

# A subnet of its own, so that a user's lab on the default one does not collide.
SUBNET = names.subnet()
COMMAND_TIMEOUT_S = 300
# The Pulumi program: its files, its stacks and what they import (common/, bench/ports.py).
PROJECT_FILES = ("Pulumi.yaml", "Pulumi.local.yaml", "__main__.py", "stacks", "common", "bench")


def versions() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (REPO / "toolchain/versions.env").read_text().splitlines()
             if "=" in line and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def pulumi_env(state_dir: Path) -> dict[str, str]:
    """The environment of `. scripts/pulumi-env.sh`, with the state in `state_dir`."""
    env = dict(os.environ, OVERLAY_BENCH_PULUMI_STATE=str(state_dir))
    out = subprocess.run(["bash", "-c", f". {REPO}/scripts/pulumi-env.sh && env -0"], env=env,
                         capture_output=True, check=True).stdout
    return dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)


def copy_project(root: Path, files: tuple[str, ...] = PROJECT_FILES) -> tuple[Path, dict[str, str]]:
    """The project's `files` copied to ROOT/project, with a file backend in ROOT/state:
    the project directory and the environment to run `pulumi` in."""
    project = root / "project"
    project.mkdir(parents=True)
    for name in files:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, project / name)
    # Pulumi.yaml names the virtualenv `.venv`, relative to the project.
    (project / ".venv").symlink_to(REPO / ".venv")
    (root / "state").mkdir()
    return project, pulumi_env(root / "state")


class Project:
    """A copy of the Pulumi project in `root`, with one stack on a file backend there."""

    def __init__(self, root: Path, stack: str, lab_name: str):
        self.stack, self.lab_name = stack, lab_name
        self.dir, self.env = copy_project(root)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(["pulumi", *args], cwd=self.dir, env=self.env, capture_output=True,
                              text=True, timeout=COMMAND_TIMEOUT_S)
        if check:
            assert proc.returncode == 0, (
                f"`pulumi {' '.join(args)}` exited {proc.returncode}\n"
                f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}")
        return proc

    def init(self, **config: str) -> None:
        """`pulumi stack init`; the `local` stack starts from the copy of Pulumi.local.yaml."""
        self.run("stack", "init", self.stack)
        settings = {"provider": "local", "labName": self.lab_name, "subnet": SUBNET, **config}
        for key, value in settings.items():
            self.run("config", "set", "--stack", self.stack, f"overlay-bench:{key}", value)

    def up(self, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("up", "--stack", self.stack, "--yes", *extra, check=check)

    def destroy(self) -> subprocess.CompletedProcess:
        return self.run("destroy", "--stack", self.stack, "--yes")

    def outputs(self) -> str:
        return self.run("stack", "output", "--json", "--stack", self.stack).stdout

    def resources(self) -> list[dict]:
        state = json.loads(self.run("stack", "export", "--stack", self.stack).stdout)
        return state["deployment"].get("resources") or []


def lab_processes(name: str) -> set[tuple[int, int]]:
    """(pid, start time) of lab `name`'s processes (engines, key-value store, as the lab
    knows them); the start time tells a surviving process from a reused pid."""
    from stacks.local import host, lab

    found = set()
    for pid in lab.residue(name).get("processes", []):
        started = host.start_time(pid)
        if started is not None:
            found.add((pid, started))
    return found


def check_outputs(text: str, nodes: int, mode: str, lab_name: str) -> dict:
    """`pulumi stack output --json` read the way `python -m bench` reads it (stacks.outputs):
    it follows the shared schema, describes this lab, and every engine answers."""
    try:
        doc = outputs.loads(text, source="`pulumi stack output --json`")
    except outputs.OutputsError as exc:
        pytest.fail(f"{exc}\n(keys present: {sorted(json.loads(text))}; Pulumi drops top-level "
                    "outputs whose value is None)")
    assert (doc["provider"], doc["mode"], doc["stack"], len(doc["nodes"])) == ("local", mode, lab_name, nodes)
    for node in doc["nodes"]:
        client = docker.DockerClient(base_url=node["docker_host"], timeout=10)
        try:
            assert client.ping(), f"engine of {node['name']} at {node['docker_host']} does not answer"
            assert client.info()["Name"] == node["name"], f"{node['docker_host']} is not {node['name']}"
        finally:
            client.close()
    return doc


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    require_root()
    assert shutil.which("pulumi", path=pulumi_env(Path("/tmp"))["PATH"]), \
        "no pulumi CLI: run `make setup` (scripts/setup-pulumi.sh)"
    from stacks.local import lab

    lab_name = names.lab_name("pt")
    # The user's `local` stack configuration (Pulumi.local.yaml: 2 nodes, classic, 1gbit),
    # under another lab name and subnet, in a backend of its own.
    proj = Project(tmp_path_factory.mktemp("pulumi-local"), stack="local", lab_name=lab_name)
    proj.init()
    yield proj
    # Whatever a failing test left: destroy through Pulumi, then make sure with the lab CLI.
    proj.run("destroy", "--stack", proj.stack, "--yes", check=False)
    lab.down(lab_name)


def test_up_brings_a_two_node_lab_up_and_a_second_up_changes_nothing(project):
    first = project.up()
    assert "2 created" in first.stdout, first.stdout
    doc = check_outputs(project.outputs(), nodes=2, mode="classic", lab_name=project.lab_name)
    processes = lab_processes(project.lab_name)
    assert processes, "the lab runs no engine process"

    # --expect-no-changes makes pulumi fail if the preview shows any change.
    second = project.up("--expect-no-changes")
    assert "2 unchanged" in second.stdout, second.stdout
    assert lab_processes(project.lab_name) == processes, "a no-change update restarted the lab"
    assert outputs.loads(project.outputs()) == doc


def test_changing_nodes_or_mode_gives_a_new_lab_without_the_old_nodes(project):
    # From the 2-node classic lab of the test above.
    for key, value, nodes, mode in (("nodes", "3", 3, "classic"), ("mode", "swarm", 3, "swarm")):
        old = lab_processes(project.lab_name)
        assert old, f"no lab is up before changing {key}"
        project.run("config", "set", "--stack", project.stack, f"overlay-bench:{key}", value)
        result = project.up()
        assert "1 replaced" in result.stdout, f"changing {key} did not replace the lab:\n{result.stdout}"
        survivors = old & lab_processes(project.lab_name)
        assert not survivors, f"processes of the old lab survive the {key} change: {survivors}"
        check_outputs(project.outputs(), nodes=nodes, mode=mode, lab_name=project.lab_name)
    from stacks.local import lab

    namespaces = lab.residue(project.lab_name)["namespaces"]
    assert len(namespaces) == 3, f"a 3-node swarm lab has 3 namespaces (no key-value node): {namespaces}"


def test_destroy_leaves_nothing_behind(project):
    from stacks.local import lab

    project.destroy()
    assert lab.residue(project.lab_name) == {}, f"pulumi destroy left: {lab.residue(project.lab_name)}"
    assert project.resources() == [], "the stack still holds resources after destroy"


def test_a_failed_up_leaves_nothing_that_destroy_misses(tmp_path):
    require_root()
    from stacks.local import host, lab

    lab_name = names.lab_name("pf")
    proj = Project(tmp_path, stack="failing", lab_name=lab_name)
    proj.init()
    # Someone else's link already has the lab bridge's name: the lab must refuse to start.
    squatter = lab.bridge_name(lab_name)
    subprocess.run(["ip", "link", "add", squatter, "type", "bridge"], check=True)
    try:
        failed = proj.up(check=False)
        assert failed.returncode != 0, f"pulumi up succeeded although {squatter} was taken:\n{failed.stdout}"
        assert "was not made by overlay-bench" in failed.stdout + failed.stderr, failed.stdout
        # Whether the failed create is in the state depends on the provider build (ours
        # records it so destroy runs its delete; pulumi-command 1.2.1 does not): either way
        # the lab removed its partial self, and destroy must leave nothing behind.
        assert lab.residue(lab_name) == {}, f"a failed up left: {lab.residue(lab_name)}"

        proj.destroy()
        assert proj.resources() == [], "the stack still holds resources after destroy"
        assert lab.residue(lab_name) == {}, f"destroy after a failed up left: {lab.residue(lab_name)}"
        assert host.link_exists(squatter), "destroy removed a link the lab did not make"
    finally:
        subprocess.run(["ip", "link", "del", squatter], check=False)
        proj.run("destroy", "--stack", proj.stack, "--yes", check=False)
        lab.down(lab_name)


OFFLINE_PROGRAM = '''\
import pulumi
from pulumi_command import local

marker = pulumi.Config().require("marker")
hello = local.Command("hello", create=f"echo made > {marker}; echo hello", delete=f"rm {marker}")
pulumi.export("stdout", hello.stdout)
'''


def test_toolchain_runs_a_command_resource_without_network(tmp_path):
    """CLI, Python language host and command provider need nothing but loopback: the same
    up/destroy in a network namespace that has only `lo`."""
    require_root()
    proj_dir, state, marker = tmp_path / "offline", tmp_path / "state", tmp_path / "marker"
    proj_dir.mkdir()
    state.mkdir()
    (proj_dir / "Pulumi.yaml").write_text(
        f"name: offline\nruntime:\n  name: python\n  options:\n    virtualenv: {REPO / '.venv'}\n")
    (proj_dir / "__main__.py").write_text(OFFLINE_PROGRAM)
    script = (f"set -e; ip link set lo up; cd {proj_dir}; pulumi stack init t; "
              f"pulumi config set marker {marker}; pulumi up --yes; pulumi stack output --json; "
              f"test -f {marker}; pulumi destroy --yes; test ! -e {marker}")
    proc = subprocess.run(["unshare", "--net", "bash", "-c", script], env=pulumi_env(state),
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    assert proc.returncode == 0, f"offline pulumi failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert '"stdout": "hello"' in proc.stdout


def test_toolchain_versions_agree_and_a_warm_set_up_takes_seconds():
    require_root()
    want = versions()
    env = pulumi_env(Path("/tmp"))
    cli = subprocess.run(["pulumi", "version"], env=env, capture_output=True, text=True, check=True)
    assert cli.stdout.strip() == f"v{want['PULUMI_VERSION']}"
    pins = (REPO / "requirements.txt").read_text().splitlines()
    assert f"pulumi=={want['PULUMI_VERSION']}" in pins, "CLI and Python SDK versions differ"
    assert f"pulumi-command=={want['PULUMI_COMMAND_VERSION']}" in pins
    plugins = subprocess.run(["pulumi", "plugin", "ls", "--json"], env=env, capture_output=True,
                             text=True, check=True)
    installed = {(p["kind"], p["name"], p["version"]) for p in json.loads(plugins.stdout)}
    assert ("resource", "command", want["PULUMI_COMMAND_VERSION"]) in installed, installed

    start = time.monotonic()
    setup = subprocess.run([str(REPO / "scripts/setup-pulumi.sh")], cwd=REPO, capture_output=True,
                           text=True, timeout=COMMAND_TIMEOUT_S)
    elapsed_s = time.monotonic() - start
    assert setup.returncode == 0, setup.stderr
    assert elapsed_s < 5, f"a warm set-up took {elapsed_s:.1f} s:\n{setup.stdout}"
