"""bench/tools/iperf3.py: its exact command lines, and its parser on real captured output
(tests/fixtures/tool-output/README.md says how each was made). No machine needed."""
from __future__ import annotations

import json

import pytest

from bench.plan import Case, make_plan
from bench.tools import ToolFailure, iperf3
from tests.tool_output import case_of, read

TOOL = iperf3.TOOL


def case(protocol="tcp", streams=10, direction="forward") -> Case:
    return case_of("iperf3", protocol, streams, direction)


def test_server_serves_one_test_on_its_address():
    assert TOOL.server_argv(case(), "10.0.0.5", 5201) == ["iperf3", "-s", "-B", "10.0.0.5", "-p", "5201"]
    assert TOOL.server_argv(case("udp"), "0.0.0.0", 5202) == ["iperf3", "-s", "-B", "0.0.0.0", "-p", "5202"]
    # UDP tests start on a TCP control socket: readiness is read from the TCP table.
    assert TOOL.listen_protocol(case("udp")) == "tcp"


def test_client_leaves_out_the_warmup_itself():
    plan = make_plan(tools=("iperf3",), duration_s=10, warmup_s=1)
    assert TOOL.client_argv(case(), plan, "10.0.0.5", 5201) == [
        "iperf3", "-c", "10.0.0.5", "-p", "5201", "-P", "10", "-t", "10", "-O", "1", "-J",
        "--connect-timeout", "5000"]


def test_client_udp_reverse_splits_the_rate_over_the_streams():
    plan = make_plan(tools=("iperf3",), duration_s=5, warmup_s=0, udp_target_mbps=500)
    assert TOOL.client_argv(case("udp", 4, "reverse"), plan, "10.0.0.5", 5201) == [
        "iperf3", "-c", "10.0.0.5", "-p", "5201", "-P", "4", "-t", "5", "-O", "0", "-J",
        "--connect-timeout", "5000", "-u", "-b", "125000000", "-R"]


def test_rules_of_the_plan():
    plan = make_plan(tools=("iperf3",), warmup_s=2)
    assert TOOL.warmup_s(plan) == 2 and TOOL.extra_run_s == 0
    assert TOOL.varies_streams and TOOL.varies_direction and TOOL.takes_udp_rate
    assert all(TOOL.skip_reason(case(p, 1, d)) is None for p in ("tcp", "udp") for d in ("forward", "reverse"))
    assert not TOOL.reads_server_output(case("udp"))


def test_version():
    assert TOOL.parse_version("iperf 3.12 (cJSON 1.7.15)\nLinux x 6.18 #1 SMP\n") == "3.12"
    assert TOOL.parse_version("iperf version 2.1.8 (12 August 2022) pthreads") is None


def test_tcp_parallel():
    m = TOOL.parse(case(streams=3), make_plan(), read("iperf3-tcp-P3.json"), "").metrics
    end = json.loads(read("iperf3-tcp-P3.json"))["end"]
    assert m["throughput_mbps"] == pytest.approx(end["sum_received"]["bits_per_second"] / 1e6)
    assert m["throughput_mbps"] == pytest.approx(32323.2, abs=0.1)
    assert m["retransmits"] == 4
    assert m["cpu_client_percent"] == pytest.approx(71.63, abs=0.01)
    assert m["cpu_server_percent"] == pytest.approx(69.41, abs=0.01)
    assert set(m) <= set(TOOL.metrics) and "udp_loss_percent" not in m


def test_tcp_reverse():
    m = iperf3.parse(read("iperf3-tcp-P3-reverse.json")).metrics
    assert m["throughput_mbps"] == pytest.approx(37080.1, abs=0.1)
    assert m["retransmits"] == 1


def test_udp():
    m = iperf3.parse(read("iperf3-udp-P2.json"), protocol="udp").metrics
    assert m["throughput_mbps"] == pytest.approx(400.02, abs=0.01)
    assert m["udp_jitter_ms"] == pytest.approx(0.0207, abs=1e-4)
    assert m["udp_loss_percent"] == 0
    assert "retransmits" not in m
    rev = iperf3.parse(read("iperf3-udp-reverse.json"), protocol="udp").metrics
    assert rev["udp_jitter_ms"] == pytest.approx(0.0827, abs=1e-4)


@pytest.mark.parametrize("name, reason", [
    ("iperf3-refused.json", "iperf3: unable to connect to server: Connection refused"),
    ("iperf3-server-killed.json", "iperf3: unable to write to stream socket: Connection reset by peer"),
])
def test_failures_exit_zero_but_are_failures(name, reason):
    with pytest.raises(ToolFailure) as exc:
        iperf3.parse(read(name))
    assert exc.value.reason == reason


def test_not_json():
    with pytest.raises(ToolFailure, match="printed no JSON: iperf3: error - unable to start listener"):
        iperf3.parse(read("iperf3-server-port-in-use.txt"))


def test_port_in_use():
    assert TOOL.port_in_use(read("iperf3-server-port-in-use.txt"))
    assert not TOOL.port_in_use(read("iperf3-tcp-P3.json"))


def test_connect_probe():
    assert iperf3.connect_probe_argv("10.0.9.3", 9) == [
        "iperf3", "-c", "10.0.9.3", "-p", "9", "--connect-timeout", "500", "-t", "1"]
