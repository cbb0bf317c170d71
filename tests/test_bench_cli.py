"""python -m bench as a user runs it: dry runs, and one clear line for every mistake."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import engines

ROOT = Path(__file__).resolve().parents[1]


def outputs_doc(**changes) -> dict:
    doc = {
        "schema_version": 1, "stack": "lab", "provider": "local", "mode": "classic",
        "nodes": [
            {"name": f"lab-node{i}", "role": "manager" if i == 1 else "worker",
             "address": f"10.213.0.{10 + i}",
             "docker_host": f"unix:///run/overlay-bench/nonexistent/n{i}/docker.sock",
             "tls_cert_path": None, "ssh_key_path": None}
            for i in (1, 2, 3)
        ],
        "keystore": {"name": "lab-keystore", "address": "10.213.0.2", "url": "etcd://10.213.0.2:2379"},
        "overlay_network": "overlay-bench", "link_rate": None, "mtu_bytes": 1500,
    }
    doc.update(changes)
    return doc


def bench(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


@pytest.fixture
def outputs_file(tmp_path):
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs_doc()))
    return path


def test_dry_run_lists_the_2015_cases(outputs_file):
    res = bench("--outputs", str(outputs_file), "--dry-run")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "2 cases x 5 runs, 10 s each after 1 s warm-up (profile 2015, stack lab, classic mode)",
        "  iperf2-tcp-P10-forward-host-lab-node1-lab-node2",
        "  iperf2-tcp-P10-forward-overlay-lab-node1-lab-node2",
        "10 runs to do (10 measured), interleaved by round; estimated 1.9 min (0.2 s overhead per run, 1 s per server)",
        "server ports 5201-5202: one per network, tool, protocol and node pair",
    ]


def test_dry_run_of_the_issue_example(outputs_file):
    res = bench("--outputs", str(outputs_file), "--dry-run", "--networks", "host,overlay,overlay-encrypted",
                "--tools", "iperf3", "--streams", "1,10", "--runs", "3", "--duration", "2", "--pairs", "ring")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "18 cases x 3 runs, 2 s each after 1 s warm-up (profile 2015, stack lab, classic mode)"
    enc = [ln for ln in lines if "overlay-encrypted" in ln]
    assert len(enc) == 6 and all("skipped: encrypted overlay is unsupported in classic mode" in ln for ln in enc)
    assert lines[-2].startswith("54 runs to do (36 measured), interleaved by round; estimated 2.0 min")
    # 3 pairs x 3 networks: the encrypted overlay's too (skipped here, its port kept in order)
    assert lines[-1] == "server ports 5201-5209: one per network, tool, protocol and node pair"


def test_dry_run_with_precision(outputs_file):
    res = bench("--outputs", str(outputs_file), "--dry-run", "--precision", "0.5", "--max-runs", "12")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == ("2 cases x 3 to 12 runs (until every interval against host is within +-0.5 points), "
                        "10 s each after 1 s warm-up (profile 2015, stack lab, classic mode)")
    assert lines[-2].startswith("6 runs to do in the first rounds (6 measured)")


def test_dry_run_skips_what_the_stack_says_it_cannot_carry(tmp_path):
    """A version 2 document's unsupported_networks: those cases are skipped up front with
    the stack's reason (not probed), whatever the provider; the others run."""
    reason = ("DigitalOcean cloud firewalls pass only TCP, UDP and ICMP, and the encrypted "
              "overlay's data travels as IPsec ESP (IP protocol 50)")
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs_doc(
        schema_version=2, stack="do", provider="digitalocean", mode="swarm", keystore=None,
        unsupported_networks={"overlay-encrypted": reason})))
    res = bench("--outputs", str(path), "--dry-run", "--networks", "host,overlay,overlay-encrypted",
                "--tools", "iperf3", "--runs", "2", "--duration", "2")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    enc = [ln for ln in lines if "overlay-encrypted" in ln]
    assert enc and all(ln.endswith(f"skipped: unsupported on stack do (digitalocean): {reason}")
                       for ln in enc), enc
    others = [ln for ln in lines[1:-2] if "overlay-encrypted" not in ln]
    assert others and not any("skipped" in ln for ln in others)
    assert lines[-2].startswith(f"{2 * (len(enc) + len(others))} runs to do ({2 * len(others)} measured)")
    assert lines[-1].startswith("server ports 5201-")


def test_dry_run_with_shuffle_records_a_seed(outputs_file):
    res = bench("--outputs", str(outputs_file), "--dry-run", "--shuffle", "--seed", "42")
    assert "shuffled within rounds, seed 42" in res.stdout


@pytest.mark.parametrize("args, code, message", [
    (["--tools", "iperf4"], 2, "bench: --tools: unknown iperf4; choose from iperf2, iperf3, sockperf"),
    (["--duration", "0"], 2, "bench: --duration must be a whole number of seconds, at least 1"),
    (["--seed", "3"], 2, "bench: --seed only makes sense with --shuffle"),
    (["--max-runs", "9"], 2, "bench: --max-runs only makes sense with --precision"),
    (["--precision", "0"], 2, "bench: --precision must be a positive number of percentage points, e.g. 1"),
    (["--precision", "-2"], 2, "bench: --precision must be a positive number of percentage points, e.g. 1"),
    (["--precision", "inf"], 2, "bench: --precision must be a positive number of percentage points, e.g. 1"),
    (["--precision", "nan"], 2, "bench: --precision must be a positive number of percentage points, e.g. 1"),
    (["--precision", "one"], 2,
     "bench: argument --precision: invalid float value: 'one' (see python -m bench --help)"),
    (["--runs", "many"], 2, "bench: argument --runs: invalid int value: 'many' (see python -m bench --help)"),
    (["--precision", "1", "--max-runs", "2"], 2, "bench: --max-runs must be at least --runs (3)"),
    (["--precision", "1", "--runs", "6", "--max-runs", "5"], 2, "bench: --max-runs must be at least --runs (6)"),
    (["--precision", "1", "--networks", "overlay,bridge"], 2,
     "bench: --precision bounds each network's interval against host: give host and at least one other network"),
    ([], 1, "bench: node lab-node1: engine at unix:///run/overlay-bench/nonexistent/n1/docker.sock does not answer"),
])
def test_user_errors_are_one_line(outputs_file, tmp_path, args, code, message):
    results = tmp_path / "results"
    res = bench("--outputs", str(outputs_file), "--results", str(results), *args)
    assert res.returncode == code
    assert "Traceback" not in res.stderr
    error_lines = [ln for ln in res.stderr.splitlines() if ln.startswith("bench:")]
    assert len(error_lines) == 1 and error_lines[0].startswith(message), res.stderr
    if code == 2:  # a mistake on the command line: that one line and nothing else
        assert res.stderr.splitlines() == error_lines, res.stderr
    # Nothing was run, so no session was started.
    assert not results.exists() or not any(results.iterdir())


def test_all_unreachable_nodes_are_named(outputs_file):
    res = bench("--outputs", str(outputs_file))
    assert res.returncode == 1
    for i in (1, 2, 3):
        assert f"node lab-node{i}: engine at" in res.stderr
    assert "nothing was run" in res.stderr


def test_missing_input(tmp_path):
    res = bench("--dry-run")
    assert res.returncode == 2
    assert res.stderr.strip() == ("bench: say which cluster to measure: --stack NAME (a Pulumi stack) or "
                                  "--outputs FILE (its `pulumi stack output --json`)")
    res = bench("--outputs", str(tmp_path / "nope.json"), "--dry-run")
    assert res.returncode == 2 and "cannot read --outputs" in res.stderr


@pytest.mark.parametrize("change, message", [
    ({"schema_version": 4}, "stack outputs have schema_version 4; this overlay-bench reads versions 1, 2, 3"),
    ({"overlay_network": ""}, "stack outputs invalid at overlay_network"),
    ({"nodes": []}, "stack outputs invalid at nodes"),
])
def test_invalid_outputs(tmp_path, change, message):
    path = tmp_path / "outputs.json"
    doc = outputs_doc(**change)
    path.write_text(json.dumps(doc))
    res = bench("--outputs", str(path), "--dry-run")
    assert res.returncode == 2
    assert res.stderr.startswith(f"bench: {message}"), res.stderr
    missing = outputs_doc()
    del missing["mtu_bytes"]
    path.write_text(json.dumps(missing))
    res = bench("--outputs", str(path), "--dry-run")
    assert res.returncode == 2 and "'mtu_bytes' is a required property" in res.stderr


def test_resume_of_a_directory_that_is_no_session(tmp_path, outputs_file):
    res = bench("--outputs", str(outputs_file), "--resume", str(tmp_path))
    assert res.returncode == 2
    assert res.stderr.strip() == f"bench: {tmp_path} is not a results session (no metadata.json)"


def test_resume_of_a_version_1_session_is_refused(tmp_path, outputs_file):
    session = tmp_path / "20261126-130501-lab"
    session.mkdir()
    fixture = ROOT / "tests/fixtures/results/20261126-130501-lab/metadata.json"
    (session / "metadata.json").write_text(fixture.read_text())
    res = bench("--resume", str(session), "--outputs", str(outputs_file))
    assert res.returncode == 1
    assert res.stderr.strip() == (
        f"bench: {session} was written in results format 1 (no CPU figures, no idle baseline); this bench "
        "writes version 2 and does not add runs to it: start a new session (python -m analysis still reads it)")
    assert sorted(p.name for p in session.iterdir()) == ["metadata.json"]


def test_ssh_key_from_outputs_reaches_paramiko():
    adapter = engines._KeyedSSHAdapter.__new__(engines._KeyedSSHAdapter)
    adapter.key_filename = "/keys/id_ed25519"
    adapter._create_paramiko_client("ssh://root@10.0.0.5:22")
    assert adapter.ssh_params["key_filename"] == "/keys/id_ed25519"
    assert adapter.ssh_params["hostname"] == "10.0.0.5" and adapter.ssh_params["username"] == "root"


def test_ssh_engine_that_does_not_answer(tmp_path):
    node = {"name": "n1", "docker_host": "ssh://root@127.0.0.1:1", "ssh_key_path": str(tmp_path / "key")}
    with pytest.raises(engines.EngineError, match=r"node n1: cannot reach ssh://root@127.0.0.1:1"):
        engines.connect(node, timeout_s=5)
    import docker.api.client
    assert docker.api.client.SSHHTTPAdapter is not engines._KeyedSSHAdapter  # restored


def test_tcp_engine_needs_its_certificates(tmp_path):
    node = {"name": "n1", "docker_host": "tcp://127.0.0.1:2376", "tls_cert_path": str(tmp_path)}
    with pytest.raises(engines.EngineError, match="missing TLS files"):
        engines.connect(node)


def test_mtu_of_the_interface_carrying_an_address():
    """The same script bench runs in a host-network container, run on this machine."""
    text = subprocess.run(["sh", "-c", engines._MTU_SCRIPT], capture_output=True, text=True, check=True).stdout
    routes, mtus = engines._parse_mtus(text)
    iface, dest, mask = next((r for r in routes if r[2] and r[2] != 0xFFFFFFFF), routes[0])
    import ipaddress
    inside = str(ipaddress.IPv4Address(dest + 1))
    expected = int(Path(f"/sys/class/net/{iface}/mtu").read_text())
    assert engines.mtu_for(text, inside) == expected
