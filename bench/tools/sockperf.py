"""sockperf ping-pong: request/response latency percentiles (p50, p99, p99.9).

Latencies are what sockperf reports: half the round trip, in microseconds. Ping-pong is one
connection, the same both ways: streams and direction do not apply. sockperf exits 0 after
printing "ERROR", and colours its output with ANSI codes (stripped before reading).
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from bench.tools.base import Measurement, Tool, ToolFailure, first_lines, seconds, strip_ansi

if TYPE_CHECKING:
    from bench.plan import Case, Plan


class Sockperf(Tool):
    name = "sockperf"
    package = "sockperf"
    binaries = ("/usr/bin/sockperf",)
    version_command = "sockperf --version"
    version_pattern = r"sockperf, version ([\d.]+)"
    metrics = ("latency_p50_us", "latency_p99_us", "latency_p999_us")
    varies_streams = False
    varies_direction = False
    takes_udp_rate = False
    # The client waits about 2 s before it starts (seen, with or without --dontwarmup).
    extra_run_s = 2.0

    def warmup_s(self, plan: Plan) -> float:
        # sockperf leaves out its own first 400 ms and takes no warm-up option.
        return 0.4

    def server_argv(self, case: Case, bind: str, port: int) -> list[str]:
        return ["sockperf", "server", "-i", bind, "-p", str(port)] + _tcp(case)

    def client_argv(self, case: Case, plan: Plan, target: str, port: int) -> list[str]:
        return ["sockperf", "ping-pong", "-i", target, "-p", str(port), "-t", seconds(plan.duration_s)] + _tcp(case)

    def parse(self, case: Case, plan: Plan, out: str, err: str, server_out: str = "") -> Measurement:
        return parse(out, err)


def _tcp(case: Case) -> list[str]:
    return ["--tcp"] if case.protocol == "tcp" else []


_PERCENTILE = re.compile(r"percentile\s+([\d.]+)\s*=\s*([\d.]+)")
_WARMUP = re.compile(r"Warm up time=(\d+)\s*msec")


def parse(stdout: str, stderr: str = "") -> Measurement:
    """ping-pong output; the warm-up sockperf reports it left out is the run's warmup_s."""
    text = strip_ansi(stdout + "\n" + stderr)
    errors = [ln.split("ERROR:", 1)[1].strip() for ln in text.splitlines() if "ERROR:" in ln]
    pct = {float(p): float(v) for p, v in _PERCENTILE.findall(text)}
    if errors or not {50.0, 99.0, 99.9} <= set(pct):
        raise ToolFailure("sockperf: " + (errors[0] if errors else
                                          f"no percentiles in its output ({first_lines(text)})"))
    warm = _WARMUP.search(text)
    return Measurement({"latency_p50_us": pct[50.0], "latency_p99_us": pct[99.0], "latency_p999_us": pct[99.9]},
                       warmup_s=int(warm.group(1)) / 1000 if warm else None)


TOOL = Sockperf()
