"""The droplets' readiness commands, run for real against Debian's dockerd and etcd, as root.

A droplet runs `digitalocean.engine_ready_command(...)` (the key-value droplet
`keystore_ready_command()`) over SSH once cloud-init is done. It is run here with `sh -c`
beside the real daemon: Debian's dockerd (the droplets' engine) or etcd, in a network
namespace of the test's own, configured with stacks/classic.py's settings as cloud-init
configures a droplet, and the Debian docker CLI the droplets have. Only systemd and
journald are stand-ins: `systemctl is-failed UNIT` says "failed" once that daemon has
exited (what systemd says after Restart= gave up), `journalctl -u UNIT` prints the daemon's
log (its stderr, which is what journald keeps), `cloud-init status --wait` returns at once.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stacks import classic, digitalocean
from tests.conftest import require_root

pytestmark = pytest.mark.root

STAND_INS = {
    "cloud-init": "#!/bin/sh\nexit 0\n",
    # is-failed --quiet UNIT: 0 when the unit's process is gone.
    "systemctl": '#!/bin/sh\n[ "$1" = is-failed ] || exit 3\n'
                 'kill -0 "$(cat "$FAKE_UNIT_PID")" 2>/dev/null && exit 1 || exit 0\n',
    "journalctl": '#!/bin/sh\ncat "$FAKE_UNIT_LOG"\n',
}


@dataclass
class Daemon:
    proc: subprocess.Popen
    netns: Path
    socket: Path
    log: Path
    pid_file: Path

    def exited(self, timeout_s: float) -> bool:
        try:
            self.proc.wait(timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False


@contextlib.contextmanager
def own_netns() -> Iterator[tuple[Path, Path]]:
    """A directory and a network namespace (bound there) of the test's own, loopback up with
    192.0.2.1 on it (TEST-NET-1: an address that is not 127.x, which cluster-advertise needs).
    The directory is short: containerd's socket path under it must fit in 108 bytes. All of
    it is gone afterwards: mounts, namespace, files."""
    require_root()
    root = Path(tempfile.mkdtemp(prefix="ob-ready-", dir="/tmp"))
    netns = root / "netns"
    netns.touch()
    try:
        subprocess.run(["unshare", f"--net={netns}", "true"], check=True)
        subprocess.run(["nsenter", f"--net={netns}", "ip", "link", "set", "lo", "up"], check=True)
        subprocess.run(["nsenter", f"--net={netns}", "ip", "addr", "add", "192.0.2.1/32", "dev", "lo"],
                       check=True)
        yield root, netns
    finally:
        for mount in reversed(_mounts_under(root)):
            subprocess.run(["umount", "-l", mount], check=False)
        subprocess.run(["rm", "-rf", str(root)], check=False)


@contextlib.contextmanager
def debian_engine(settings: dict[str, str]) -> Iterator[Daemon]:
    """Debian's dockerd in a network namespace of its own, with `settings` in its
    daemon.json; no bridge, no iptables: it touches nothing outside its directory."""
    with own_netns() as (root, netns), _stopped_at_the_end() as started:
        config = root / "daemon.json"
        config.write_text(json.dumps({**settings, "bridge": "none", "iptables": False,
                                      "ip-masq": False}))
        sock = root / "docker.sock"
        yield started(root, "dockerd", [
            "nsenter", f"--net={netns}", "--", "dockerd", "--config-file", str(config),
            "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
            "--pidfile", str(root / "dockerd.pid"), "--host", f"unix://{sock}"], netns, sock)


@contextlib.contextmanager
def _stopped_at_the_end():
    """start(root, name, argv, netns, socket) -> Daemon; each process group it started is
    stopped (SIGTERM, then SIGKILL) when the block ends."""
    procs: list[subprocess.Popen] = []

    def start(root: Path, name: str, argv: list[str], netns: Path, sock: Path | None = None) -> Daemon:
        log = root / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        procs.append(proc)
        pid_file = root / f"{name}.process"
        pid_file.write_text(str(proc.pid))
        return Daemon(proc, netns, sock or root / "none", log, pid_file)

    try:
        yield start
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)  # dockerd and the containerd it started
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            _wait_group_gone(proc.pid)


def _wait_group_gone(pgid: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _mounts_under(root: Path) -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(str(root))]


@contextlib.contextmanager
def etcd(root: Path, netns: Path) -> Iterator[None]:
    """Debian's etcd with classic mode's arguments (the key-value droplet's), on 127.0.0.1."""
    proc = subprocess.Popen(["nsenter", f"--net={netns}", "--", "etcd",
                             *classic.etcd_args("127.0.0.1", str(root / "etcd"))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(200):
            if subprocess.run(["nsenter", f"--net={netns}", "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/2379"],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        proc.wait(10)


def ready(engine: Daemon, tmp_path: Path, command: str) -> tuple[subprocess.CompletedProcess, float]:
    """`command` as the droplet runs it, in the engine's network, with the stand-ins."""
    bin_dir = tmp_path / "stand-ins"
    bin_dir.mkdir(exist_ok=True)
    for tool, script in STAND_INS.items():
        (bin_dir / tool).write_text(script)
        (bin_dir / tool).chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin",  # /usr/bin/docker: Debian's CLI
           "DOCKER_HOST": f"unix://{engine.socket}", "FAKE_UNIT_PID": str(engine.pid_file),
           "FAKE_UNIT_LOG": str(engine.log)}
    started = time.monotonic()
    proc = subprocess.run(["nsenter", f"--net={engine.netns}", "sh", "-c", command], env=env,
                          capture_output=True, text=True, timeout=300)
    return proc, time.monotonic() - started


def test_an_engine_that_exits_is_reported_at_once_with_its_error(tmp_path):
    """Pointed at Consul, Debian's dockerd exits; the command says why within seconds,
    not at its 600 s timeout."""
    settings = {**classic.engine_settings("127.0.0.1", "lo"), "cluster-store": "consul://127.0.0.1:8500"}
    with debian_engine(settings) as engine:
        assert engine.exited(30), "Debian's dockerd no longer exits on a consul:// store"
        proc, took = ready(engine, tmp_path, digitalocean.engine_ready_command(
            classic.store_url("127.0.0.1")))
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("dockerd did not start: failed to start daemon: discovery "
                                   "initialization failed (discovery service not supported)"), proc.stderr
    assert took < 15, f"took {took:.0f} s"


def test_a_classic_engine_is_ready_once_it_reaches_its_store_and_says_why_not(tmp_path):
    store = classic.store_url("127.0.0.1")
    with debian_engine(classic.engine_settings("127.0.0.1", "lo")) as engine:
        command = digitalocean.engine_ready_command(store, store_wait_s=6)
        # No store yet: the engine runs, and the command repeats what it logs.
        proc, took = ready(engine, tmp_path, command)
        assert proc.returncode == 1, proc
        assert proc.stderr.strip().startswith(
            f"this engine cannot reach its key-value store {store}: discovery error: client: etcd "
            "cluster is unavailable or misconfigured; error #0: dial tcp 127.0.0.1:2379: connect: "
            "connection refused"), proc.stderr
        assert took < 30, f"took {took:.0f} s"
        # The store, as the key-value droplet runs it: ready.
        with etcd(tmp_path / "kv", engine.netns):
            proc, _ = ready(engine, tmp_path, command)
            assert proc.returncode == 0, proc.stderr
            assert proc.stderr == ""


def test_an_engine_with_another_store_than_expected_is_refused(tmp_path):
    with debian_engine(classic.engine_settings("127.0.0.1", "lo")) as engine:
        proc, _ = ready(engine, tmp_path, digitalocean.engine_ready_command("etcd://10.110.0.2:2379"))
    assert proc.returncode == 1
    assert "ignores cluster-store (it reports 'etcd://127.0.0.1:2379', not etcd://10.110.0.2:2379)" \
        in proc.stderr


def test_a_swarm_mode_engine_is_ready_when_it_answers(tmp_path):
    with debian_engine({}) as engine:
        proc, _ = ready(engine, tmp_path, digitalocean.engine_ready_command(None))
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("address, ready_after", [("127.0.0.1", True), ("192.0.2.77", False)])
def test_the_keystore_is_ready_once_etcd_answers_its_v2_api(tmp_path, address, ready_after):
    """etcd with the key-value droplet's arguments: ready once its v2 API answers on the
    address; on an address the machine does not have, etcd exits and its words are printed."""
    with own_netns() as (root, netns), _stopped_at_the_end() as started:
        env_file = root / "keystore.env"
        env_file.write_text(f"KEYSTORE_ADDRESS={address}\n")
        kv = started(root, "etcd", ["nsenter", f"--net={netns}", "--", "etcd",
                                    *classic.etcd_args(address, str(root / "etcd"))], netns)
        if not ready_after:
            assert kv.exited(30), "etcd serves an address it does not have"
        proc, took = ready(kv, tmp_path, digitalocean.keystore_ready_command(wait_s=60, env_file=str(env_file)))
    if ready_after:
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode == 1
        assert proc.stderr.startswith("etcd did not start: ") and "192.0.2.77:2379" in proc.stderr, proc.stderr
        assert took < 15


def test_a_keystore_without_its_address_says_so(tmp_path):
    with own_netns() as (root, netns):
        engine = Daemon(None, netns, root / "none", root / "none.log", root / "none.pid")
        proc, _ = ready(engine, tmp_path, digitalocean.keystore_ready_command(env_file=str(root / "missing.env")))
    assert proc.returncode == 1
    assert "found no VPC address on eth1 at boot" in proc.stderr, proc.stderr
