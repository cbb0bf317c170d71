"""sockperf's parser on real captured outputs (tests/fixtures/tool-output/README.md says how
each was made); iperf 2 and iperf3 are in tests/test_bench_tools_*.py."""
from __future__ import annotations

from pathlib import Path

from bench import parsers
from bench.tools import ToolFailure

import pytest

FIX = Path(__file__).parent / "fixtures" / "tool-output"


def read(name: str) -> str:
    return (FIX / name).read_text()


def test_sockperf_tcp_percentiles():
    m = parsers.parse_sockperf(read("sockperf-tcp.txt"))
    assert m.metrics == {"latency_p50_us": 5.415, "latency_p99_us": 13.840, "latency_p999_us": 26.101}
    assert m.warmup_s == 0.4


def test_sockperf_udp_percentiles():
    m = parsers.parse_sockperf(read("sockperf-udp.txt")).metrics
    assert (m["latency_p50_us"], m["latency_p99_us"], m["latency_p999_us"]) == (4.231, 13.227, 27.052)


def test_sockperf_refused():
    with pytest.raises(ToolFailure) as exc:
        parsers.parse_sockperf(read("sockperf-tcp-refused.txt"), read("sockperf-tcp-refused.err"))
    assert exc.value.reason == "sockperf: Can`t connect socket (errno=111 Connection refused)"


def test_port_in_use_detected():
    assert parsers.port_in_use(read("sockperf-server-port-in-use.txt"))
    assert not parsers.port_in_use(read("sockperf-tcp.txt"))


def test_tool_versions():
    text = "iperf 3.12 (cJSON 1.7.15)\nLinux x\niperf version 2.1.8 (12 August 2022) pthreads\nsockperf, version 3.7-no.git\n"
    assert parsers.tool_versions(text) == {"sockperf": "3.7"}
