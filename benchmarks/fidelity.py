"""Fidelity of `python -m bench` on a lab shaped to 1 Gbit/s.

1. Host network: bench's figure against iperf3 run directly in the nodes' namespaces
   (`nsenter --net`, no container at all). Target: within 2 %.
2. Overlay/host ratio against the VXLAN bound for the measured MTUs: TCP payload per
   packet is MTU - 52 (IP 20 + TCP 20 + timestamps 12), so the bound is
   (overlay_mtu - 52) / (host_mtu - 52) = 1398/1448 = 96.55 % at MTU 1500.
   Target: within 0.5 percentage points.
Direct and bench runs alternate (direct, bench host, bench overlay, direct, ...).
Run as root: `.venv/bin/python benchmarks/fidelity.py [--runs 5] [--duration 10]`.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests import names  # noqa: E402  (a lab name and subnet no other run on this machine uses)

TCP_IP_HEADERS_BYTES = 52  # IPv4 20 + TCP 20 + timestamp option 12


def direct_iperf3(server_ns: str, client_ns: str, address: str, port: int, streams: int,
                  duration: int, warmup: int) -> float:
    """iperf3 between the namespaces themselves; Mbit/s received."""
    server = subprocess.Popen(["nsenter", f"--net=/var/run/netns/{server_ns}", "iperf3", "-s", "-1",
                               "-B", address, "-p", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(250):  # wait until it listens, no fixed sleep
            ss = subprocess.run(["nsenter", f"--net=/var/run/netns/{server_ns}", "ss", "-Hltn",
                                 f"sport = :{port}"], capture_output=True, text=True).stdout
            if ss.strip():
                break
            time.sleep(0.02)
        out = subprocess.run(["nsenter", f"--net=/var/run/netns/{client_ns}", "iperf3", "-c", address,
                              "-p", str(port), "-P", str(streams), "-t", str(duration), "-O", str(warmup),
                              "-J"], capture_output=True, text=True, timeout=duration + warmup + 30).stdout
    finally:
        server.wait(timeout=10)
    doc = json.loads(out)
    if doc.get("error"):
        raise RuntimeError(f"direct iperf3 failed: {doc['error']}")
    return doc["end"]["sum_received"]["bits_per_second"] / 1e6


def bench_round(outputs: Path, results: Path, streams: int, duration: int, warmup: int,
                resume: Path | None) -> Path:
    cmd = [sys.executable, "-m", "bench", "--quiet"]
    if resume is None:
        cmd += ["--outputs", str(outputs), "--results", str(results), "--networks", "host,overlay",
                "--tools", "iperf3", "--streams", str(streams), "--runs", "1", "--duration", str(duration),
                "--warmup", str(warmup)]
    else:
        cmd += ["--resume", str(resume)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode not in (0, 1):  # 1: a run failed; it is reported, and left out
        raise RuntimeError(f"bench failed: {proc.stdout}\n{proc.stderr}")
    return next(results.iterdir())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--mode", default="classic", choices=("classic", "swarm"))
    parser.add_argument("--link-rate", default="1gbit")
    args = parser.parse_args()

    from common.status import Status
    from stacks.local import lab

    name = names.lab_name("bfid")
    direct: list[float] = []
    host: list[float] = []
    overlay: list[float] = []
    failures: list[str] = []
    with lab.running(name, mode=args.mode, subnet=names.subnet(), link_rate=args.link_rate,
                     status=Status(quiet=True)) as doc, tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        outputs = tmp_path / "outputs.json"
        outputs.write_text(json.dumps(doc))
        server, client = doc["nodes"][0], doc["nodes"][1]
        server_ns, client_ns = lab.namespace(name, server["name"]), lab.namespace(name, client["name"])
        # Each round: one direct run, then one bench session of host + overlay (a new
        # session per round, so every bench figure pays the full harness path).
        for k in range(args.runs):
            direct.append(direct_iperf3(server_ns, client_ns, server["address"], 5801, args.streams,
                                        args.duration, args.warmup))
            results = tmp_path / f"r{k}"
            session = bench_round(outputs, results, args.streams, args.duration, args.warmup, None)
            runs = [json.loads(line) for line in (session / "runs.jsonl").read_text().splitlines()]
            for r in runs:
                if r["status"] != "ok":
                    failures.append(f"{r['run_id']}: {r['reason']}")
                    print(f"round {k + 1}: {r['run_id']} {r['status']}: {r['reason']}", flush=True)
            got = {r["network"]: r["throughput_mbps"] for r in runs if r["status"] == "ok"}
            host += [got["host"]] if "host" in got else []
            overlay += [got["overlay"]] if "overlay" in got else []
            meta = json.loads((session / "metadata.json").read_text())
            print(f"round {k + 1}: direct {direct[-1]:.1f}, bench host {got.get('host', float('nan')):.1f}, "
                  f"bench overlay {got.get('overlay', float('nan')):.1f} Mbit/s", flush=True)
    facts = meta["nodes"][server["name"]]
    host_mtu, overlay_mtu = facts["host_mtu_bytes"], facts["overlay_mtu_bytes"]
    bound = (overlay_mtu - TCP_IP_HEADERS_BYTES) / (host_mtu - TCP_IP_HEADERS_BYTES)
    d, h, o = statistics.mean(direct), statistics.mean(host), statistics.mean(overlay)
    ratio = o / h
    print(f"lab: {args.mode} mode, 2 nodes, tbf {args.link_rate} on each node's link; iperf3 -P {args.streams}, "
          f"{args.duration} s after {args.warmup} s warm-up, {args.runs} rounds")
    print(f"direct iperf3 between namespaces: mean {d:.1f} Mbit/s (sd {statistics.stdev(direct):.1f})")
    print(f"bench, host network:              mean {h:.1f} Mbit/s (sd {statistics.stdev(host):.1f})")
    print(f"bench, overlay:                   mean {o:.1f} Mbit/s (sd {statistics.stdev(overlay):.1f})")
    print(f"failed bench runs (left out): {len(failures)}")
    print(f"host vs direct: {100 * (h - d) / d:+.2f} % (target within 2 %)")
    print(f"MTUs measured: host {host_mtu}, overlay {overlay_mtu}; VXLAN bound "
          f"{overlay_mtu - TCP_IP_HEADERS_BYTES}/{host_mtu - TCP_IP_HEADERS_BYTES} = {100 * bound:.2f} %")
    print(f"overlay/host: {100 * ratio:.2f} %, {100 * (ratio - bound):+.2f} percentage points from the bound "
          f"(target within 0.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
