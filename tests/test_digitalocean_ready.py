"""The droplets' readiness commands, run for real against Debian's dockerd and etcd, as root.

A droplet runs `digitalocean.engine_ready_command(...)` over SSH once cloud-init is done. It
is run here with `sh -c` beside a real engine: Debian's dockerd (the droplets' engine) in a
network namespace of the test's own, configured with classic.engine_settings as cloud-init
configures a droplet, and the Debian docker CLI the droplets have. Only systemd and journald
are stand-ins: `systemctl is-failed docker` says "failed" once that dockerd has exited (what
systemd says after Restart= gave up), `journalctl -u docker` prints that dockerd's log (its
stderr, which is what journald keeps), `cloud-init status --wait` returns at once.
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
                 'kill -0 "$(cat "$FAKE_DOCKERD_PID")" 2>/dev/null && exit 1 || exit 0\n',
    "journalctl": '#!/bin/sh\ncat "$FAKE_DOCKERD_LOG"\n',
}


@dataclass
class Engine:
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
def debian_engine(settings: dict[str, str]) -> Iterator[Engine]:
    """Debian's dockerd in a network namespace of its own (loopback only), with `settings`
    in its daemon.json; no bridge, no iptables: it touches nothing outside its directory,
    a short one (containerd's socket path under the exec root must fit in 108 bytes)."""
    require_root()
    root = Path(tempfile.mkdtemp(prefix="ob-ready-", dir="/tmp"))
    netns = root / "netns"
    netns.touch()
    subprocess.run(["unshare", f"--net={netns}", "true"], check=True)
    proc = None
    try:
        subprocess.run(["nsenter", f"--net={netns}", "ip", "link", "set", "lo", "up"], check=True)
        # cluster-advertise needs an address that is not 127.x: one from TEST-NET-1.
        subprocess.run(["nsenter", f"--net={netns}", "ip", "addr", "add", "192.0.2.1/32", "dev", "lo"],
                       check=True)
        config = root / "daemon.json"
        config.write_text(json.dumps({**settings, "bridge": "none", "iptables": False,
                                      "ip-masq": False}))
        log, pid_file, sock = root / "dockerd.log", root / "dockerd.pid", root / "docker.sock"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                ["nsenter", f"--net={netns}", "--", "dockerd", "--config-file", str(config),
                 "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
                 "--pidfile", str(pid_file), "--host", f"unix://{sock}"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        (root / "process.pid").write_text(str(proc.pid))
        yield Engine(proc, netns, sock, log, root / "process.pid")
    finally:
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)  # dockerd and the containerd it started
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            _wait_group_gone(proc.pid)
        for mount in reversed(_mounts_under(root)):
            subprocess.run(["umount", "-l", mount], check=False)
        subprocess.run(["rm", "-rf", str(root)], check=False)


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


def ready(engine: Engine, tmp_path: Path, command: str) -> tuple[subprocess.CompletedProcess, float]:
    """`command` as the droplet runs it, in the engine's network, with the stand-ins."""
    bin_dir = tmp_path / "stand-ins"
    bin_dir.mkdir(exist_ok=True)
    for tool, script in STAND_INS.items():
        (bin_dir / tool).write_text(script)
        (bin_dir / tool).chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin",  # /usr/bin/docker: Debian's CLI
           "DOCKER_HOST": f"unix://{engine.socket}", "FAKE_DOCKERD_PID": str(engine.pid_file),
           "FAKE_DOCKERD_LOG": str(engine.log)}
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
