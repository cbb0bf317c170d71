"""bench/tools/: the registry every part of bench loops over, held to the results format, the
image and scripts/setup.sh; each tool's server readiness, tried on this machine's loopback."""
from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from bench import image, results_format, tools
from bench.plan import Case
from bench.runner import PORT_TAKEN_MARK, READY_MARK, server_command
from bench.tools.base import Tool

REPO = Path(__file__).resolve().parent.parent


def test_the_registry_follows_the_results_format():
    assert list(tools.REGISTRY) == list(results_format.TOOLS)
    for name, tool in tools.REGISTRY.items():
        assert tool.name == name
        assert set(tool.metrics) <= set(results_format.METRIC_FIELDS), name
        # The metric analysis compares the tool's cases by is one the tool measures.
        assert results_format.TOOL_METRICS[name][0] in tool.metrics, name


@pytest.mark.parametrize("name", list(tools.REGISTRY))
def test_each_tool_implements_the_interface(name):
    tool = tools.get(name)
    for method in ("server_argv", "client_argv", "parse"):
        assert getattr(type(tool), method) is not getattr(Tool, method), f"{name} lacks {method}"
    for attribute in ("package", "binaries", "version_command", "version_pattern", "metrics"):
        assert getattr(tool, attribute), f"{name} lacks {attribute}"
    assert all(b.startswith("/") for b in tool.binaries)


def test_the_image_holds_every_tool():
    assert set(tools.binaries()) <= set(image.BINARIES)


def test_setup_installs_the_packages_the_registry_names():
    """scripts/setup.sh asks the system python3, without site-packages, before .venv exists."""
    out = subprocess.run(["/usr/bin/python3", "-S", "-m", "bench.tools", "apt-packages"], cwd=REPO,
                         capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [f"{p}:{c}" for p, c in tools.apt_packages().items()]
    assert '"$PY" -m bench.tools apt-packages' in (REPO / "scripts" / "setup.sh").read_text()


def test_versions_of_the_installed_tools():
    """The same command bench runs in the image, run on this machine (scripts/setup.sh installed the tools)."""
    text = subprocess.run(["sh", "-c", tools.versions_command()], capture_output=True, text=True).stdout
    found = tools.versions(text)
    assert set(found) == set(tools.REGISTRY), text
    assert all(re.fullmatch(r"\d+(\.\d+)+", v) for v in found.values()), found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("name, protocol", [(n, p) for n in tools.REGISTRY for p in results_format.PROTOCOLS])
def test_the_server_says_when_it_listens(name, protocol):
    """The readiness loop around each tool's server, for real on loopback: READY_MARK appears
    on stderr once the socket the tool's listen_protocol names is bound."""
    port = free_port()
    case = Case(name, protocol, 1, "forward", "host", "a", "b")
    proc = subprocess.Popen(server_command(case, "127.0.0.1", port), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        seen = b""
        deadline = time.monotonic() + 10
        while READY_MARK.encode() not in seen and time.monotonic() < deadline and proc.poll() is None:
            if select.select([proc.stderr], [], [], 0.1)[0]:
                seen += os.read(proc.stderr.fileno(), 4096)
        assert READY_MARK.encode() in seen, seen
        state = "0A" if tools.get(name).listen_protocol(case) == "tcp" else "07"
        table = Path(f"/proc/net/{tools.get(name).listen_protocol(case)}").read_text()
        assert re.search(rf":{port:04X} [0-9A-F:]+ {state} ", table), f"port {port} not {state}"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize("name, protocol", [(n, p) for n in tools.REGISTRY for p in results_format.PROTOCOLS])
def test_a_port_bound_before_the_server_is_said_to_be_in_use(name, protocol):
    """On the host network the port may be someone else's: the server must not take that
    socket for its own, but end saying the address is in use."""
    case = Case(name, protocol, 1, "forward", "host", "a", "b")
    kind = socket.SOCK_STREAM if tools.get(name).listen_protocol(case) == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as squatter:
        squatter.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            squatter.listen()
        port = squatter.getsockname()[1]
        done = subprocess.run(server_command(case, "127.0.0.1", port), capture_output=True, text=True, timeout=10)
    assert done.returncode == 98 and READY_MARK not in done.stderr, done.stderr
    assert PORT_TAKEN_MARK in done.stderr and tools.get(name).port_in_use(done.stderr + done.stdout)
