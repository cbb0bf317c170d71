"""sockperf's output, the one tool not yet behind bench/tools/ (iperf 2 and iperf3 are there).

sockperf exits 0 after printing "ERROR": its output is read, not its exit code.
"""
from __future__ import annotations

import re

from bench.tools.base import Measurement, ToolFailure, first_lines, strip_ansi

_PCT = re.compile(r"percentile\s+([\d.]+)\s*=\s*([\d.]+)")
_WARMUP = re.compile(r"Warm up time=(\d+)\s*msec")


def parse_sockperf(stdout: str, stderr: str = "") -> Measurement:
    """sockperf ping-pong output. Latencies are what sockperf reports: half the round trip, in us."""
    text = strip_ansi(stdout + "\n" + stderr)
    errors = [ln.split("ERROR:", 1)[1].strip() for ln in text.splitlines() if "ERROR:" in ln]
    pct = {float(p): float(v) for p, v in _PCT.findall(text)}
    if errors or not {50.0, 99.0, 99.9} <= set(pct):
        raise ToolFailure("sockperf: " + (errors[0] if errors else
                                          f"no percentiles in its output ({first_lines(text)})"))
    warm = _WARMUP.search(text)
    return Measurement({"latency_p50_us": pct[50.0], "latency_p99_us": pct[99.0], "latency_p999_us": pct[99.9]},
                       warmup_s=int(warm.group(1)) / 1000 if warm else None)


_PORT_IN_USE = re.compile(r"address already in use", re.I)


def port_in_use(text: str) -> bool:
    """True when a server's output says it could not bind its port."""
    return bool(_PORT_IN_USE.search(strip_ansi(text)))


def tool_versions(text: str) -> dict[str, str]:
    """sockperf's version from `sockperf --version` output."""
    m = re.search(r"sockperf, version ([\d.]+)", text)
    return {"sockperf": m.group(1)} if m else {}
