"""iperf3: throughput, retransmits and CPU (TCP), loss and jitter (UDP), from its JSON (-J).

iperf3 -J exits 0 when it fails: the JSON then has an `error` key and an empty `end`.
3.12 (Debian 12) is single-threaded: all -P streams share one core.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from bench.tools.base import Measurement, Tool, ToolFailure, first_lines, per_stream_bps, seconds

if TYPE_CHECKING:
    from bench.plan import Case, Plan


class Iperf3(Tool):
    name = "iperf3"
    package = "iperf3"
    binaries = ("/usr/bin/iperf3",)
    version_command = "iperf3 --version"
    version_pattern = r"iperf (3[\d.]+)"
    metrics = ("throughput_mbps", "retransmits", "cpu_client_percent", "cpu_server_percent",
               "udp_loss_percent", "udp_jitter_ms")

    def server_argv(self, case: Case, bind: str, port: int) -> list[str]:
        # No -1: the server serves every run of its case, one test after the other.
        return ["iperf3", "-s", "-B", bind, "-p", str(port)]

    def listen_protocol(self, case: Case) -> str:
        # UDP tests too start on a TCP control socket, which is what clients connect to first.
        return "tcp"

    def client_argv(self, case: Case, plan: Plan, target: str, port: int) -> list[str]:
        # -O: iperf3 leaves out the warm-up itself.
        argv = ["iperf3", "-c", target, "-p", str(port), "-P", str(case.streams),
                "-t", seconds(plan.duration_s), "-O", seconds(plan.warmup_s), "-J",
                "--connect-timeout", "5000"]
        if case.protocol == "udp":
            argv += ["-u", "-b", per_stream_bps(case, plan)]
        return argv + (["-R"] if case.direction == "reverse" else [])

    def parse(self, case: Case, plan: Plan, out: str, err: str, server_out: str = "") -> Measurement:
        return parse(out, case.protocol)


def connect_probe_argv(address: str, port: int) -> list[str]:
    """Try a TCP connection to `address`:`port` for at most half a second; its output says
    "Connection refused" when a closed port answered (see bench/runner.py)."""
    return ["iperf3", "-c", address, "-p", str(port), "--connect-timeout", "500", "-t", "1"]


def parse(stdout: str, protocol: str = "tcp") -> Measurement:
    """The client's -J output."""
    try:
        doc = json.loads(stdout)
    except json.JSONDecodeError:
        raise ToolFailure(f"iperf3 printed no JSON: {first_lines(stdout) or '(nothing)'}") from None
    if doc.get("error"):
        raise ToolFailure(f"iperf3: {doc['error']}")
    end = doc.get("end") or {}
    if "sum_received" not in end and "sum" not in end:
        raise ToolFailure("iperf3 JSON has no end summary (the test did not finish)")
    cpu = end.get("cpu_utilization_percent") or {}
    received = end.get("sum_received") or end.get("sum")
    metrics = {
        "throughput_mbps": received["bits_per_second"] / 1e6,
        # host_total is the process that ran `-c` (our client), remote_total the server,
        # whatever the direction of the data.
        "cpu_client_percent": cpu.get("host_total"),
        "cpu_server_percent": cpu.get("remote_total"),
    }
    if protocol == "tcp":
        metrics["retransmits"] = (end.get("sum_sent") or {}).get("retransmits")
    else:
        udp = end.get("sum") or received
        metrics["udp_jitter_ms"] = udp.get("jitter_ms")
        metrics["udp_loss_percent"] = udp.get("lost_percent")
    return Measurement(metrics)


TOOL = Iperf3()
