"""`command:remote:Command` under the real Pulumi engine, against a real OpenSSH server.

The sshd is our own: its own configuration, host key and authorized keys in a temporary
directory, listening on 127.0.0.1 only, on a free high port, stopped at teardown. The
"remote" side is this machine, so what the commands write can be read back. Each test runs
`pulumi up`/`destroy` of a small program in a temporary project with its own file backend
and its own PULUMI_HOME, where the command provider under test is installed:
$OVERLAY_BENCH_COMMAND_PLUGIN when set (a binary to try), else the plugin
scripts/setup-pulumi.sh installed (the official one, or ours built from toolchain/).
Everything asserted here is pulumi-command 1.2.1's behaviour, so both pass.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, require_root
from tests.test_pulumi_local import COMMAND_TIMEOUT_S, pulumi_env, versions


def real_pulumi(test):
    """Needs root (its own sshd) and runs the real engine."""
    return pytest.mark.root(pytest.mark.slow(test))


SSHD = "/usr/sbin/sshd"
# Every error case uses a small dial limit: with 1.2.1's default of 10, a failure takes 11
# attempts over ~11 s.
FAST_FAIL_DIAL_LIMIT = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path, passphrase: str = "") -> str:
    """An ed25519 key pair at `path`; returns the public key's SHA256 fingerprint."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", path.name, "-f", str(path)],
                   check=True)
    return subprocess.run(["ssh-keygen", "-l", "-f", f"{path}.pub"], check=True, capture_output=True,
                          text=True).stdout.split()[1]


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """Running and not a zombie (PID 1 here does not reap orphans)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Sshd:
    """An OpenSSH server of the test's own on 127.0.0.1:port; keys and log in `root`."""

    def __init__(self, root: Path):
        if not Path(SSHD).exists():
            pytest.fail(f"no {SSHD}: install Debian's openssh-server (scripts/setup.sh does)")
        self.dir = root
        self.host_key = root / "host_ed25519"
        keygen(self.host_key)
        self.keys = {}          # name -> private key path
        self.fingerprints = {}  # name -> SHA256 fingerprint
        for name, passphrase in (("plain", ""), ("passphrase", "open sesame"), ("agent", ""), ("wrong", "")):
            self.keys[name] = root / f"id_{name}"
            self.fingerprints[name] = keygen(self.keys[name], passphrase)
        authorized = root / "authorized_keys"
        authorized.write_text("".join(Path(f"{self.keys[n]}.pub").read_text()
                                      for n in ("plain", "passphrase", "agent")))
        self.log = root / "sshd.log"
        self.port = free_port()
        self.config = root / "sshd_config"
        self.config.write_text(f"""\
ListenAddress 127.0.0.1:{self.port}
HostKey {self.host_key}
PidFile {root}/sshd.pid
AuthorizedKeysFile {authorized}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
# The test's own directories: skip the ownership checks meant for home directories.
StrictModes no
# What the programs send with session.Setenv (GREETING) and what pulumi-command adds.
AcceptEnv GREETING PULUMI_COMMAND_STDOUT PULUMI_COMMAND_STDERR
# VERBOSE logs each key offered, with its fingerprint: the tests count dial attempts so.
LogLevel VERBOSE
""")
        # sshd's privilege separation directory (made by systemd-tmpfiles at boot where
        # Debian's ssh service is enabled; that service is never started here).
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        subprocess.run([SSHD, "-t", "-f", str(self.config)], check=True)
        # -D: stay in the foreground, a child of the test; -E: log to our file.
        self.proc = subprocess.Popen([SSHD, "-D", "-f", str(self.config), "-E", str(self.log)])
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"sshd did not start on 127.0.0.1:{self.port}:\n{self.log_text()}")
                time.sleep(0.05)

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def attempts_with(self, key: str) -> int:
        """Connections that offered key `key` and were refused."""
        return sum(1 for line in self.log_text().splitlines()
                   if "Failed publickey" in line and self.fingerprints[key] in line)

    def stop(self) -> list[int]:
        """Stops the listener and any connection it still serves; returns their pids."""
        # Per-connection servers are children of the listener (each in a session of its own).
        pids = children(self.proc.pid)
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return [self.proc.pid, *pids]


class Agent:
    """An ssh-agent of the test's own, holding `key`."""

    def __init__(self, root: Path, key: Path):
        self.socket = root / "agent.sock"
        self.proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(self.socket)], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail("ssh-agent did not start")
            time.sleep(0.05)
        subprocess.run(["ssh-add", "-q", str(key)], env=dict(os.environ, SSH_AUTH_SOCK=str(self.socket)),
                       check=True, capture_output=True)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


class CountingListener:
    """Accepts TCP connections on 127.0.0.1 and closes each at once: an SSH dial that
    always fails, counted."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def stop(self) -> None:
        self.sock.close()
        self.thread.join(timeout=5)


def provider_binary() -> Path:
    """The command provider to test: $OVERLAY_BENCH_COMMAND_PLUGIN, else the installed plugin."""
    if os.environ.get("OVERLAY_BENCH_COMMAND_PLUGIN"):
        path = Path(os.environ["OVERLAY_BENCH_COMMAND_PLUGIN"])
    else:
        home = Path(os.environ.get("PULUMI_HOME") or Path.home() / ".pulumi")
        path = home / f"plugins/resource-command-v{versions()['PULUMI_COMMAND_VERSION']}/pulumi-resource-command"
    if not os.access(path, os.X_OK):
        pytest.fail(f"no command provider at {path}: run `make setup` (scripts/setup-pulumi.sh)")
    return path


@pytest.fixture(scope="module")
def pulumi_home(tmp_path_factory):
    """A PULUMI_HOME of the module's own, with only the provider under test installed."""
    require_root()
    home = tmp_path_factory.mktemp("pulumi-home")
    env = dict(pulumi_env(home / "state"), PULUMI_HOME=str(home))
    version = versions()["PULUMI_COMMAND_VERSION"]
    subprocess.run(["pulumi", "plugin", "install", "resource", "command", f"v{version}",
                    "--file", str(provider_binary())], env=env, check=True, capture_output=True)
    return home


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    require_root()
    server = Sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    stopped = server.stop()
    shutil.rmtree(server.dir)  # its keys
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in stopped) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in stopped if alive(pid)]
    assert not left, f"sshd processes left: {left}"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()


PREAMBLE = '''\
import pulumi
from pulumi_command import remote

cfg = pulumi.Config()
d = cfg.get("dir")


def connection(key=None, **extra):
    private_key = open(cfg.require(key + "Key")).read() if key else None
    return remote.ConnectionArgs(host="127.0.0.1", port=cfg.require_int("port"), private_key=private_key,
                                 **extra)
'''


class RemoteProject:
    """A Pulumi project in `root` running `program`, with one stack and its own backend."""

    def __init__(self, root: Path, name: str, program: str, home: Path, sshd: Sshd, **config: str):
        self.dir = root / name
        self.dir.mkdir()
        (self.dir / "Pulumi.yaml").write_text(
            f"name: {name}\nruntime:\n  name: python\n  options:\n    virtualenv: {REPO / '.venv'}\n")
        (self.dir / "__main__.py").write_text(PREAMBLE + program)
        self.state = root / f"{name}-state"
        self.state.mkdir()
        env = dict(pulumi_env(self.state), PULUMI_HOME=str(home), PULUMI_CONFIG_PASSPHRASE="test passphrase")
        env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
        env.pop("SSH_AUTH_SOCK", None)  # no agent of the user's: each test says which it uses
        self.env = env
        self.outputs_seen: list[str] = []
        self.run("stack", "init", "test")
        settings = {"port": str(sshd.port), **{f"{k}Key": str(p) for k, p in sshd.keys.items()}, **config}
        for key, value in settings.items():
            self.run("config", "set", "--plaintext", key, value)

    def run(self, *args: str, check: bool = True, shows_secrets: bool = False) -> subprocess.CompletedProcess:
        proc = subprocess.run(["pulumi", *args], cwd=self.dir, env=self.env, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT_S)
        if not shows_secrets:  # what a user sees without asking for secrets
            self.outputs_seen += [proc.stdout, proc.stderr]
        if check:
            assert proc.returncode == 0, (
                f"`pulumi {' '.join(args)}` exited {proc.returncode}\n"
                f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}")
        return proc

    def up(self, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("up", "--yes", "--skip-preview", *extra, check=check)

    def output(self, name: str) -> str:
        return json.loads(self.run("stack", "output", "--json", "--show-secrets", shows_secrets=True).stdout)[name]

    def resources(self) -> dict[str, dict]:
        state = json.loads(self.run("stack", "export").stdout)
        return {r["urn"].rsplit("::", 1)[1]: r for r in state["deployment"].get("resources") or []
                if r["type"] == "command:remote:Command"}

    def files_text(self) -> str:
        """Every file of the backend (checkpoints, history, backups) as text."""
        return "\n".join(p.read_bytes().decode(errors="replace") for p in self.state.rglob("*") if p.is_file())

    def assert_never_shown(self, *secrets: str) -> None:
        """No secret in any `pulumi` output so far nor in any file of the backend."""
        shown = "\n".join(self.outputs_seen)
        stored = self.files_text()
        for secret in secrets:
            assert secret not in shown, f"a secret ({secret[:6]}...) is in the output of pulumi"
            assert secret not in stored, f"a secret ({secret[:6]}...) is in clear in the state files"


def is_secret(value) -> bool:
    return isinstance(value, dict) and value.get("4dabf18193072939515e22adb298388d") == \
        "1b47061264138c4ac30d75fd1eb44270" and "ciphertext" in value


LIFECYCLE = '''
version, trigger = cfg.require("version"), cfg.require("trigger")
conn = connection("plain")
hello = remote.Command("hello", connection=conn, environment={"GREETING": "world"},
                       create=f"echo hello-$GREETING-{version}",
                       update=f"echo updated-$GREETING-{version} after $PULUMI_COMMAND_STDOUT")
# No update command: a change runs create again.
again = remote.Command("again", connection=conn, create=f"echo run-{version} >> {d}/again.log")
token = remote.Command("token", connection=conn, stdin=cfg.require_secret("token"),
                       create=f"cat > {d}/token", delete=f"rm {d}/token")
# An output made from a secret: 1.2.1 leaves stdout as it is; the program declares it secret
# and keeps it out of the log.
shout = remote.Command("shout", connection=conn, stdin=cfg.require_secret("token"), create="tr a-z A-Z",
                       logging="none", opts=pulumi.ResourceOptions(additional_secret_outputs=["stdout"]))
replaced = remote.Command("replaced", connection=conn, triggers=[trigger],
                          create=f"echo create-{trigger} >> {d}/replaced.log; touch {d}/replaced-{trigger}",
                          delete=f"echo delete-{trigger} >> {d}/replaced.log; rm {d}/replaced-{trigger}")
pulumi.export("hello", hello.stdout)
pulumi.export("shout", shout.stdout)
'''


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory, pulumi_home, sshd):
    root = tmp_path_factory.mktemp("remote")
    remote_dir = root / "remote-side"
    remote_dir.mkdir()
    token = "tok" + os.urandom(12).hex()
    proj = RemoteProject(root, "lifecycle", LIFECYCLE, pulumi_home, sshd, dir=str(remote_dir),
                         version="v1", trigger="a")
    proj.run("config", "set", "--secret", "token", token)
    proj.remote_dir, proj.token = remote_dir, token
    yield proj
    proj.run("destroy", "--yes", check=False)


@real_pulumi
def test_create_runs_with_environment_and_stdin_and_keeps_secrets(lifecycle, sshd):
    proj, remote_dir = lifecycle, lifecycle.remote_dir
    up = proj.up()
    assert "6 created" in up.stdout, up.stdout  # and the stack
    assert proj.output("hello") == "hello-world-v1", "create's stdout with environment GREETING"
    assert (remote_dir / "token").read_text() == proj.token, "stdin did not reach the command"
    assert proj.output("shout") == proj.token.upper()
    assert (remote_dir / "replaced.log").read_text() == "create-a\n"

    state = proj.resources()
    for name, resource in state.items():
        assert is_secret(resource["outputs"]["connection"]), f"{name}: the connection is not a secret in the state"
    assert is_secret(state["token"]["outputs"]["stdin"]) and is_secret(state["token"]["inputs"]["stdin"])
    assert is_secret(state["shout"]["outputs"]["stdout"]), "a declared secret stdout is in clear in the state"
    assert state["hello"]["outputs"]["stdout"] == "hello-world-v1"
    shown = json.loads(proj.run("stack", "output", "--json").stdout)
    assert shown["shout"] == "[secret]", shown
    private_key = sshd.keys["plain"].read_text().splitlines()[2]  # a line of the key's body
    proj.assert_never_shown(proj.token, proj.token.upper(), private_key)


@real_pulumi
def test_a_change_runs_update_or_else_create_and_changes_nothing_else(lifecycle):
    proj, remote_dir = lifecycle, lifecycle.remote_dir
    proj.run("config", "set", "version", "v2")
    up = proj.up()
    assert "2 updated" in up.stdout, up.stdout
    # update ran (not create), with the previous stdout in PULUMI_COMMAND_STDOUT.
    assert proj.output("hello") == "updated-world-v2 after hello-world-v1"
    assert (remote_dir / "again.log").read_text() == "run-v1\nrun-v2\n", "create did not run again"
    assert (remote_dir / "replaced.log").read_text() == "create-a\n", "an unchanged resource ran"
    assert proj.run("up", "--yes", "--expect-no-changes").returncode == 0


@real_pulumi
def test_a_trigger_change_creates_the_new_then_deletes_the_old(lifecycle):
    proj, remote_dir = lifecycle, lifecycle.remote_dir
    proj.run("config", "set", "trigger", "b")
    up = proj.up()
    assert "1 replaced" in up.stdout, up.stdout
    assert (remote_dir / "replaced.log").read_text() == "create-a\ncreate-b\ndelete-a\n"
    assert (remote_dir / "replaced-b").exists() and not (remote_dir / "replaced-a").exists()
    assert (remote_dir / "again.log").read_text() == "run-v1\nrun-v2\n", "a replacement ran another resource"


@real_pulumi
def test_destroy_runs_the_delete_commands_in_the_state(lifecycle, sshd):
    proj, remote_dir = lifecycle, lifecycle.remote_dir
    proj.run("destroy", "--yes")
    assert (remote_dir / "replaced.log").read_text() == "create-a\ncreate-b\ndelete-a\ndelete-b\n"
    assert not (remote_dir / "token").exists(), "the delete of `token` did not run"
    assert proj.resources() == {}
    proj.assert_never_shown(proj.token, proj.token.upper(), sshd.keys["plain"].read_text().splitlines()[2])


AUTH = '''
host_key = open(cfg.require("hostKeyPath")).read()
passphrase = remote.Command("passphrase", create="echo passphrase-ok", connection=connection(
    "passphrase", private_key_password=cfg.require_secret("passphrase")))
agent = remote.Command("agent", create="echo agent-ok",
                       connection=connection(agent_socket_path=cfg.require("agentSocket")))
checked = remote.Command("checked", create="echo host-key-ok", connection=connection("plain", host_key=host_key))
pulumi.export("passphrase", passphrase.stdout)
pulumi.export("agent", agent.stdout)
pulumi.export("checked", checked.stdout)
'''


@real_pulumi
def test_a_passphrase_key_an_agent_and_a_checked_host_key_connect(tmp_path, pulumi_home, sshd):
    agent = Agent(tmp_path, sshd.keys["agent"])
    try:
        proj = RemoteProject(tmp_path, "auth", AUTH, pulumi_home, sshd, agentSocket=str(agent.socket),
                             hostKeyPath=f"{sshd.host_key}.pub")
        proj.run("config", "set", "--secret", "passphrase", "open sesame")
        try:
            proj.up()
            assert (proj.output("passphrase"), proj.output("agent"), proj.output("checked")) == \
                ("passphrase-ok", "agent-ok", "host-key-ok")
            state = proj.resources()
            assert is_secret(state["passphrase"]["outputs"]["connection"])
            proj.assert_never_shown("open sesame")
        finally:
            proj.run("destroy", "--yes")
    finally:
        agent.stop()
    assert not alive(agent.proc.pid)


FAILING = f'''
wrong_host_key = open(cfg.require("wrongHostKeyPath")).read()
limit = {FAST_FAIL_DIAL_LIMIT}
remote.Command("wrongkey", create="true", connection=connection("wrong", dial_error_limit=limit))
remote.Command("refused", create="true", connection=remote.ConnectionArgs(
    host="127.0.0.1", port=cfg.require_int("closedPort"), private_key=open(cfg.require("plainKey")).read(),
    dial_error_limit=limit))
remote.Command("counted", create="true", connection=remote.ConnectionArgs(
    host="127.0.0.1", port=cfg.require_int("countingPort"), private_key=open(cfg.require("plainKey")).read(),
    dial_error_limit=limit))
remote.Command("nopassphrase", create="true", connection=connection("passphrase"))
remote.Command("wronghostkey", create="true",
               connection=connection("plain", host_key=wrong_host_key, dial_error_limit=0))
remote.Command("envrefused", create="true", environment={{"NOT_ACCEPTED": "x"}}, connection=connection("plain"))
remote.Command("fails", create="echo oops-on-stderr >&2; exit 3", connection=connection("plain"))
'''


@real_pulumi
def test_every_failure_is_one_clear_error_within_the_dial_limit(tmp_path, pulumi_home, sshd):
    listener = CountingListener()
    try:
        proj = RemoteProject(tmp_path, "failing", FAILING, pulumi_home, sshd, closedPort=str(free_port()),
                             countingPort=str(listener.port), wrongHostKeyPath=f"{sshd.keys['wrong']}.pub")
        start = time.monotonic()
        failed = proj.up("--continue-on-error", check=False)
        elapsed_s = time.monotonic() - start
    finally:
        listener.stop()
    text = failed.stdout + failed.stderr
    assert failed.returncode != 0, text
    attempts = FAST_FAIL_DIAL_LIMIT + 1  # the limit counts failures allowed before giving up
    assert listener.accepted == attempts, f"{listener.accepted} dials to a server that hangs up"
    assert sshd.attempts_with("wrong") == attempts, sshd.log_text()[-3000:]
    for phrase in ("unable to authenticate", "connection refused", "passphrase protected",
                   "host key mismatch", 'could not set environment variable "NOT_ACCEPTED"',
                   "oops-on-stderr", "exited with status 3"):
        assert phrase in text, f"no {phrase!r} in the output of pulumi up:\n{text[-5000:]}"
    # 1.2.1 returns a plain error from a failed create: the engine does not record it.
    assert proj.resources() == {}
    # Waiting between attempts is 0.1 s then 0.15 s: the whole `pulumi up` takes seconds;
    # the default limit alone would wait 11 s per resource.
    assert elapsed_s < 60, f"pulumi up took {elapsed_s:.0f} s"
    proj.run("destroy", "--yes")


GONE = f'''
remote.Command("gone", create="true", delete="true",
               connection=connection("plain", dial_error_limit={FAST_FAIL_DIAL_LIMIT}))
'''


@real_pulumi
def test_delete_on_a_host_that_is_gone_fails_after_the_dial_limit(tmp_path, pulumi_home):
    """Delete runs on the connection in the state; when that host no longer answers,
    destroy fails (the resource stays in the state) until it is deleted from the state."""
    (tmp_path / "sshd").mkdir()
    server = Sshd(tmp_path / "sshd")
    try:
        proj = RemoteProject(tmp_path, "gone", GONE, pulumi_home, server)
        proj.up()
    finally:
        server.stop()
    failed = proj.run("destroy", "--yes", check=False)
    assert failed.returncode != 0 and "connection refused" in failed.stdout + failed.stderr, failed.stdout
    assert list(proj.resources()) == ["gone"]
    urn = proj.resources()["gone"]["urn"]
    proj.run("state", "delete", urn, "--yes")
    assert proj.resources() == {}

@pytest.mark.slow
def test_go_unit_tests_and_vet_of_the_provider():
    """The provider's pure parts (connection settings, dial accounting): `go vet`, `go test`."""
    go = shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")
    if not go:
        pytest.fail("no Go toolchain: install Go 1.26+ (https://go.dev/dl)")
    # The flags of scripts/setup-pulumi.sh, so that its build cache serves these builds too.
    env = dict(os.environ, GOFLAGS="-mod=readonly -trimpath -buildvcs=false")
    for args in (["vet"], ["test", "-count=1"]):
        proc = subprocess.run([go, *args, "./cmd/pulumi-resource-command/"], cwd=REPO / "toolchain", env=env,
                              capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
        assert proc.returncode == 0, f"go {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
