"""Jumbo frames and the underlay networks on the real lab (root): the overlay follows the link
MTU in both modes, a forced-low overlay MTU is warned of, macvlan measures in both modes, and
ipvlan measures or is skipped with the engine's words, whichever this kernel allows.

Each lab is brought up with `python -m stacks.local up` as a user does, torn down, and
checked clean. Throughput targets (99.44% on a 1 Gbit/s link) are checked by
benchmarks/mtu_study.py, not here.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import docker
import pytest

from stacks import outputs
from tests import names
from tests.test_bench_lab import check_metrics, run_bench, runs_of, sessions

ROOT = Path(__file__).resolve().parents[1]


def _up(tmp_path_factory, prefix: str, mode: str, *extra: str):
    if os.geteuid() != 0:
        pytest.fail("needs root (network namespaces, dockerd): run `make test` as root")
    from common.status import Status
    from stacks.local import lab

    name = names.lab_name(prefix)
    cmd = [sys.executable, "-m", "stacks.local", "up", "--name", name, "--mode", mode, "--mtu", "9000",
           "--subnet", names.subnet(), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    try:
        assert proc.returncode == 0, proc.stderr
        doc = outputs.loads(proc.stdout)
        path = tmp_path_factory.mktemp(prefix) / "outputs.json"
        path.write_text(proc.stdout)
        yield doc, path
    finally:
        lab.down(name, status=Status(quiet=True))
        assert lab.residue(name) == {}, f"lab {name} left {lab.residue(name)}"


@pytest.fixture(scope="module")
def swarm(tmp_path_factory):
    yield from _up(tmp_path_factory, "jms", "swarm")


@pytest.fixture(scope="module")
def classic(tmp_path_factory):
    yield from _up(tmp_path_factory, "jmc", "classic")


@pytest.fixture(scope="module")
def forced_low(tmp_path_factory):
    """A jumbo link under Docker's default overlay MTU: the trap of moby/moby#37855."""
    yield from _up(tmp_path_factory, "jml", "swarm", "--overlay-mtu", "1450")


def kernel_has_ipvlan(doc: dict) -> tuple[bool, str]:
    """Ask this kernel directly: a throwaway ipvlan link on the first node's eth0, in the
    lab's own namespace (removed at once). Returns (supported, what ip said)."""
    from stacks.local import lab

    netns = lab.namespace(doc["stack"], doc["nodes"][0]["name"])
    proc = subprocess.run(["ip", "netns", "exec", netns, "ip", "link", "add", "link", "eth0",
                           "name", "obprobe0", "type", "ipvlan", "mode", "l2"],
                          capture_output=True, text=True, timeout=10)
    if proc.returncode == 0:
        subprocess.run(["ip", "netns", "exec", netns, "ip", "link", "del", "obprobe0"], check=True, timeout=10)
    return proc.returncode == 0, proc.stderr.strip()


def network_mtu_option(doc: dict) -> str | None:
    with contextlib.closing(docker.DockerClient(base_url=doc["nodes"][0]["docker_host"], timeout=10)) as c:
        return c.networks.get(doc["overlay_network"]).attrs["Options"].get(outputs.OVERLAY_MTU_OPTION)


def measure(path: Path, tmp_path: Path, networks: str) -> tuple[subprocess.CompletedProcess, dict, list[dict]]:
    results = tmp_path / "results"
    res = run_bench("--outputs", str(path), "--results", str(results), "--networks", networks,
                    "--tools", "iperf3", "--runs", "2", "--duration", "2", "--warmup", "1")
    session = sessions(results)[0]
    return res, json.loads((session / "metadata.json").read_text()), runs_of(session)


def check_underlay_runs(doc: dict, runs: list[dict]) -> None:
    by_network: dict[str, list[dict]] = {}
    for rec in runs:
        by_network.setdefault(rec["network"], []).append(rec)
    assert set(by_network) == {"host", "overlay", "macvlan", "ipvlan"}
    for network in ("host", "overlay", "macvlan"):
        for rec in by_network[network]:
            check_metrics(rec)
    supported, said = kernel_has_ipvlan(doc)
    for rec in by_network["ipvlan"]:
        if supported:
            check_metrics(rec)
        else:
            # Skipped with the engine's own words, never measured as zero.
            assert rec["status"] == "skipped" and rec["throughput_mbps"] is None, rec
            assert rec["reason"].startswith(f"ipvlan carries no container on {doc['nodes'][0]['name']}: "), rec
            assert "operation not supported" in rec["reason"] and "CONFIG_IPVLAN" in rec["reason"], (rec, said)


@pytest.mark.parametrize("mode", ["swarm", "classic"])
def test_overlay_mtu_follows_the_jumbo_link_and_macvlan_measures(mode, swarm, classic, tmp_path):
    doc, path = {"swarm": swarm, "classic": classic}[mode]
    assert doc["mtu_bytes"] == 9000 and doc["mode"] == mode
    # The driver's option is the link's MTU; containers get 50 bytes less.
    assert network_mtu_option(doc) == "9000"
    assert doc["underlay_network"]["parent_interface"] == "eth0"
    res, meta, runs = measure(path, tmp_path, "host,overlay,macvlan,ipvlan")
    assert res.returncode == 0, res.stderr
    for node, node_facts in meta["nodes"].items():
        assert (node_facts["host_mtu_bytes"], node_facts["overlay_mtu_bytes"]) == (9000, 8950), node
    assert meta["warnings"] == [] and "warning:" not in res.stdout + res.stderr
    check_underlay_runs(doc, runs)
    # Nothing of the session is left on the engines (networks included).
    for node in doc["nodes"]:
        with contextlib.closing(docker.DockerClient(base_url=node["docker_host"], timeout=10)) as c:
            left = [n.name for n in c.networks.list() if n.name.startswith(("ob-macvlan-", "ob-ipvlan-"))]
            assert left == [] and c.containers.list(all=True) == [], node["name"]


def test_a_forced_low_overlay_mtu_is_warned_of_in_the_session_and_its_metadata(forced_low, tmp_path):
    doc, path = forced_low
    assert network_mtu_option(doc) == "1500"
    res, meta, runs = measure(path, tmp_path, "host,overlay")
    assert res.returncode == 0, res.stderr
    for node_facts in meta["nodes"].values():
        assert (node_facts["host_mtu_bytes"], node_facts["overlay_mtu_bytes"]) == (9000, 1450)
    expected = [f"node {n['name']}: overlay MTU 1450 is 7500 bytes below the 8950 its 9000-byte link "
                f"carries: overlay results understate what the overlay can do (create the overlay "
                f"network with -o com.docker.network.driver.mtu=9000)" for n in doc["nodes"]]
    assert meta["warnings"] == expected
    printed = [line for line in res.stdout.splitlines() if line.startswith("warning: ")]
    assert printed == [f"warning: {w}" for w in expected], res.stdout
    assert all(rec["status"] == "ok" for rec in runs), runs
    # analysis says it too, and puts it in the sessions table.
    out = tmp_path / "analysis"
    proc = subprocess.run([sys.executable, "-m", "analysis", str(tmp_path / "results"), "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"warning: session {meta['session']}: {expected[0]}" in proc.stderr.splitlines()
    assert expected[0] in (out / "report.md").read_text()
