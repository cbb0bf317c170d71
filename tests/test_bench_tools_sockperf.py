"""bench/tools/sockperf.py: its exact command lines, and its parser on real captured output
(tests/fixtures/tool-output/README.md says how each was made). No machine needed."""
from __future__ import annotations

import pytest

from bench.plan import Case, make_plan
from bench.tools import ToolFailure, sockperf
from tests.tool_output import case_of, read

TOOL = sockperf.TOOL


def case(protocol="tcp") -> Case:
    return case_of("sockperf", protocol, 1)


def test_server_and_client_command_lines():
    plan = make_plan(tools=("sockperf",), duration_s=4, warmup_s=1)
    assert TOOL.server_argv(case(), "0.0.0.0", 5201) == ["sockperf", "server", "-i", "0.0.0.0", "-p", "5201", "--tcp"]
    assert TOOL.server_argv(case("udp"), "10.0.0.5", 5202) == ["sockperf", "server", "-i", "10.0.0.5", "-p", "5202"]
    assert TOOL.client_argv(case(), plan, "10.0.0.5", 5201) == [
        "sockperf", "ping-pong", "-i", "10.0.0.5", "-p", "5201", "-t", "4", "--tcp"]
    assert TOOL.client_argv(case("udp"), plan, "10.0.0.5", 5201) == [
        "sockperf", "ping-pong", "-i", "10.0.0.5", "-p", "5201", "-t", "4"]
    assert TOOL.listen_protocol(case("udp")) == "udp"


def test_rules_of_the_plan():
    # Its own warm-up, whatever the plan says; one connection, the same both ways; no rate.
    assert TOOL.warmup_s(make_plan(warmup_s=3)) == 0.4
    assert not (TOOL.varies_streams or TOOL.varies_direction or TOOL.takes_udp_rate)
    assert TOOL.extra_run_s == 2.0
    assert TOOL.skip_reason(case("udp")) is None and not TOOL.reads_server_output(case())


def test_version():
    text = "iperf 3.12 (cJSON 1.7.15)\niperf version 2.1.8 (12 August 2022) pthreads\nsockperf, version 3.7-no.git\n"
    assert TOOL.parse_version(text) == "3.7"


def test_tcp_percentiles():
    m = TOOL.parse(case(), make_plan(), read("sockperf-tcp.txt"), "")
    assert m.metrics == {"latency_p50_us": 5.415, "latency_p99_us": 13.840, "latency_p999_us": 26.101}
    assert m.warmup_s == 0.4


def test_udp_percentiles():
    m = sockperf.parse(read("sockperf-udp.txt")).metrics
    assert (m["latency_p50_us"], m["latency_p99_us"], m["latency_p999_us"]) == (4.231, 13.227, 27.052)


def test_refused():
    with pytest.raises(ToolFailure) as exc:
        sockperf.parse(read("sockperf-tcp-refused.txt"), read("sockperf-tcp-refused.err"))
    assert exc.value.reason == "sockperf: Can`t connect socket (errno=111 Connection refused)"


def test_port_in_use():
    assert TOOL.port_in_use(read("sockperf-server-port-in-use.txt"))
    assert not TOOL.port_in_use(read("sockperf-tcp.txt"))
