"""Turn what iperf 2, iperf3 and sockperf print into one set of metrics.

Every parser returns `Metrics` or raises `ToolFailure` with a reason a person can act on.
The tools are not trusted to report failure by exit code: iperf3 -J and iperf 2 exit 0
when they could not connect, and sockperf exits 0 after printing "ERROR".
"""
from __future__ import annotations

import csv
import dataclasses
import json
import re
from typing import Any


class ToolFailure(Exception):
    """The tool ran but did not measure; `reason` says why (from the tool's own words)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass
class Metrics:
    throughput_mbps: float | None = None
    retransmits: int | None = None
    cpu_client_percent: float | None = None
    cpu_server_percent: float | None = None
    udp_loss_percent: float | None = None
    udp_jitter_ms: float | None = None
    latency_p50_us: float | None = None
    latency_p99_us: float | None = None
    latency_p999_us: float | None = None
    # Seconds the tool itself left out at the start, when it decides (sockperf); else None.
    warmup_s: float | None = None

    def as_record(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("warmup_s")
        return out


def _first_lines(text: str, n: int = 2) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return "; ".join(lines[:n])


# ---------------------------------------------------------------- iperf3 -J

def parse_iperf3(stdout: str, protocol: str = "tcp") -> Metrics:
    """iperf3 -J output of the client. iperf3 exits 0 on failure: the JSON has `error`."""
    try:
        doc = json.loads(stdout)
    except json.JSONDecodeError:
        raise ToolFailure(f"iperf3 printed no JSON: {_first_lines(stdout) or '(nothing)'}") from None
    if doc.get("error"):
        raise ToolFailure(f"iperf3: {doc['error']}")
    end = doc.get("end") or {}
    if "sum_received" not in end and "sum" not in end:
        raise ToolFailure("iperf3 JSON has no end summary (the test did not finish)")
    cpu = end.get("cpu_utilization_percent") or {}
    # host_total is the process that ran `-c` (our client), remote_total the server,
    # whatever the direction of the data.
    m = Metrics(cpu_client_percent=cpu.get("host_total"), cpu_server_percent=cpu.get("remote_total"))
    received = end.get("sum_received") or end.get("sum")
    m.throughput_mbps = received["bits_per_second"] / 1e6
    if protocol == "tcp":
        m.retransmits = (end.get("sum_sent") or {}).get("retransmits")
    else:
        udp = end.get("sum") or received
        m.udp_jitter_ms = udp.get("jitter_ms")
        m.udp_loss_percent = udp.get("lost_percent")
    return m


# ---------------------------------------------------------------- iperf 2 -y C

_TS = re.compile(r"^\d{14}(\.\d+)?$")


def _iperf2_rows(text: str) -> list[list[str]]:
    rows = []
    seen = set()
    for row in csv.reader(text.splitlines()):
        if len(row) >= 9 and _TS.match(row[0]) and "-" in row[6]:
            key = tuple(row)
            if key in seen:  # iperf 2.1.8 repeats a row when a stream dies mid-test (seen)
                continue
            seen.add(key)
            rows.append(row)
    return rows


def _window(rows: list[list[str]], warmup_s: float, duration_s: float) -> list[list[str]]:
    """Per-second interval rows that fall inside [warmup, warmup + duration]."""
    out = []
    for row in rows:
        start, end = (float(x) for x in row[6].split("-"))
        if end - start > 1.5:  # a whole-test total row, not an interval
            continue
        if start >= warmup_s - 0.05 and end <= warmup_s + duration_s + 0.05:
            out.append(row)
    return out


def _check_coverage(rows: list[list[str]], streams: int, duration_s: float, stderr: str) -> None:
    covered: dict[str, float] = {}
    for row in rows:
        start, end = (float(x) for x in row[6].split("-"))
        covered[row[5]] = covered.get(row[5], 0.0) + (end - start)
    short = [sid for sid, secs in covered.items() if secs < duration_s - 0.5]
    if len(covered) < streams or short:
        why = _first_lines(stderr) or "no error printed"
        raise ToolFailure(
            f"iperf 2 reported {len(covered)} of {streams} streams over the measured "
            f"{duration_s:g} s ({why})")


def parse_iperf2(stdout: str, stderr: str, *, streams: int, warmup_s: float, duration_s: float,
                 protocol: str = "tcp", server_stdout: str = "") -> Metrics:
    """iperf 2 `-y C -i 1` output, run for warmup + duration seconds.

    iperf 2 has no --omit and prints no sum row with -P: the warm-up is left out by keeping
    only the per-second interval rows after it, and the streams are summed here. For UDP,
    loss and jitter exist only in the server's rows (`server_stdout`, server run with -i 1).
    """
    rows = _iperf2_rows(server_stdout if protocol == "udp" else stdout)
    if not rows and protocol == "udp":
        raise ToolFailure("iperf 2 UDP server reported nothing: the datagrams did not arrive"
                          + (f" ({_first_lines(stderr)})" if stderr.strip() else ""))
    if not rows:
        raise ToolFailure(f"iperf 2 measured nothing: {_first_lines(stderr) or _first_lines(stdout) or '(no output)'}")
    window = _window(rows, warmup_s, duration_s)
    _check_coverage(window, streams, duration_s, stderr)
    bits = sum(int(r[7]) for r in window) * 8
    m = Metrics(throughput_mbps=bits / duration_s / 1e6)
    if protocol == "udp":
        lost = sum(int(r[10]) for r in window)
        total = sum(int(r[11]) for r in window)
        m.udp_loss_percent = 100.0 * lost / total if total else None
        jitters = [float(r[9]) for r in window]
        m.udp_jitter_ms = sum(jitters) / len(jitters)
    return m


# ---------------------------------------------------------------- sockperf ping-pong

_ANSI = re.compile(r"\x1b\[[0-9;]*m|\[[0-9;]*m")
_PCT = re.compile(r"percentile\s+([\d.]+)\s*=\s*([\d.]+)")
_WARMUP = re.compile(r"Warm up time=(\d+)\s*msec")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def parse_sockperf(stdout: str, stderr: str = "") -> Metrics:
    """sockperf ping-pong output. Latencies are what sockperf reports: half the round trip, in us."""
    text = strip_ansi(stdout + "\n" + stderr)
    errors = [ln.split("ERROR:", 1)[1].strip() for ln in text.splitlines() if "ERROR:" in ln]
    pct = {float(p): float(v) for p, v in _PCT.findall(text)}
    if errors or not {50.0, 99.0, 99.9} <= set(pct):
        raise ToolFailure("sockperf: " + (errors[0] if errors else
                                          f"no percentiles in its output ({_first_lines(text)})"))
    warm = _WARMUP.search(text)
    return Metrics(latency_p50_us=pct[50.0], latency_p99_us=pct[99.0], latency_p999_us=pct[99.9],
                   warmup_s=int(warm.group(1)) / 1000 if warm else None)


# ---------------------------------------------------------------- server start-up failures

_PORT_IN_USE = re.compile(r"address already in use", re.I)


def port_in_use(text: str) -> bool:
    """True when a server's output says it could not bind its port."""
    return bool(_PORT_IN_USE.search(strip_ansi(text)))


def tool_versions(text: str) -> dict[str, str]:
    """Versions from `iperf3 --version; iperf --version; sockperf --version` output."""
    out = {}
    for key, pattern in (("iperf3", r"iperf (3[\d.]+)"), ("iperf2", r"iperf version (2[\d.]+)"),
                         ("sockperf", r"sockperf, version ([\d.]+)")):
        m = re.search(pattern, text)
        if m:
            out[key] = m.group(1)
    return out
