"""iperf 2 (the 2015 post's tool): throughput, and UDP loss and jitter from the server's rows.

`-y C -i 1` prints one CSV row per stream and second, and NO sum row with -P: the streams are
summed here. iperf 2 has no --omit: a run lasts warm-up + duration and the rows of the
warm-up are left out. Columns: timestamp, local_ip, local_port, remote_ip, remote_port, id,
interval, bytes, bits_per_second (UDP server rows add jitter, lost, total, ...).
"""
from __future__ import annotations

import csv
import re
from typing import TYPE_CHECKING

from bench.tools.base import Measurement, Tool, ToolFailure, first_lines, per_stream_bps, seconds

if TYPE_CHECKING:
    from bench.plan import Case, Plan


class Iperf2(Tool):
    name = "iperf2"
    package = "iperf"
    binaries = ("/usr/bin/iperf",)
    version_command = "iperf --version 2>&1"  # it prints the version on stderr (and exits 1)
    version_pattern = r"iperf version (2[\d.]+)"
    metrics = ("throughput_mbps", "udp_loss_percent", "udp_jitter_ms")
    # A UDP server prints its last interval rows shortly after the client ends.
    server_output_wait_s = 5.0

    def skip_reason(self, case: Case) -> str | None:
        if case.protocol == "udp" and case.direction == "reverse":
            return "iperf 2.1.8 UDP --reverse crashes its server (seen); use iperf3 for reverse UDP"
        return None

    def server_argv(self, case: Case, bind: str, port: int) -> list[str]:
        argv = ["iperf", "-s", "-B", bind, "-p", str(port), "-y", "C"]
        # UDP loss and jitter exist only in the server's rows: per second, to drop the warm-up.
        return argv + (["-u", "-i", "1"] if case.protocol == "udp" else [])

    def client_argv(self, case: Case, plan: Plan, target: str, port: int) -> list[str]:
        # No --omit in iperf 2: run warm-up + duration with per-second rows, drop the first ones.
        argv = ["iperf", "-c", target, "-p", str(port), "-P", str(case.streams),
                "-t", seconds(plan.warmup_s + plan.duration_s), "-i", "1", "-y", "C"]
        if case.protocol == "udp":
            argv += ["-u", "-b", per_stream_bps(case, plan)]
        return argv + (["-R"] if case.direction == "reverse" else [])

    def reads_server_output(self, case: Case) -> bool:
        return case.protocol == "udp"

    def parse(self, case: Case, plan: Plan, out: str, err: str, server_out: str = "") -> Measurement:
        return parse(out, err, streams=case.streams, warmup_s=plan.warmup_s, duration_s=plan.duration_s,
                     protocol=case.protocol, server_stdout=server_out)


_TS = re.compile(r"^\d{14}(\.\d+)?$")


def _rows(text: str) -> list[list[str]]:
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
        why = first_lines(stderr) or "no error printed"
        raise ToolFailure(
            f"iperf 2 reported {len(covered)} of {streams} streams over the measured "
            f"{duration_s:g} s ({why})")


def parse(stdout: str, stderr: str, *, streams: int, warmup_s: float, duration_s: float,
          protocol: str = "tcp", server_stdout: str = "") -> Measurement:
    """`-y C -i 1` output of a run of warmup + duration seconds.

    The warm-up is left out by keeping only the per-second interval rows after it, and the
    streams are summed. For UDP, loss and jitter exist only in the server's rows
    (`server_stdout`, server run with -i 1). A stream that reports fewer seconds than asked
    fails the run.
    """
    rows = _rows(server_stdout if protocol == "udp" else stdout)
    if not rows and protocol == "udp":
        raise ToolFailure("iperf 2 UDP server reported nothing: the datagrams did not arrive"
                          + (f" ({first_lines(stderr)})" if stderr.strip() else ""))
    if not rows:
        raise ToolFailure(f"iperf 2 measured nothing: {first_lines(stderr) or first_lines(stdout) or '(no output)'}")
    window = _window(rows, warmup_s, duration_s)
    _check_coverage(window, streams, duration_s, stderr)
    bits = sum(int(r[7]) for r in window) * 8
    metrics: dict[str, float | None] = {"throughput_mbps": bits / duration_s / 1e6}
    if protocol == "udp":
        lost = sum(int(r[10]) for r in window)
        total = sum(int(r[11]) for r in window)
        metrics["udp_loss_percent"] = 100.0 * lost / total if total else None
        jitters = [float(r[9]) for r in window]
        metrics["udp_jitter_ms"] = sum(jitters) / len(jitters)
    return Measurement(metrics)


TOOL = Iperf2()
