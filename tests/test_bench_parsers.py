"""Parsers on real captured outputs (tests/fixtures/tool-output/README.md says how each was made)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import parsers
from bench.parsers import ToolFailure

FIX = Path(__file__).parent / "fixtures" / "tool-output"


def read(name: str) -> str:
    return (FIX / name).read_text()


def test_iperf3_tcp_parallel():
    m = parsers.parse_iperf3(read("iperf3-tcp-P3.json"))
    end = json.loads(read("iperf3-tcp-P3.json"))["end"]
    assert m.throughput_mbps == pytest.approx(end["sum_received"]["bits_per_second"] / 1e6)
    assert m.throughput_mbps == pytest.approx(32323.2, abs=0.1)
    assert m.retransmits == 4
    assert m.cpu_client_percent == pytest.approx(71.63, abs=0.01)
    assert m.cpu_server_percent == pytest.approx(69.41, abs=0.01)
    assert m.udp_loss_percent is None and m.latency_p50_us is None


def test_iperf3_tcp_reverse():
    m = parsers.parse_iperf3(read("iperf3-tcp-P3-reverse.json"))
    assert m.throughput_mbps == pytest.approx(37080.1, abs=0.1)
    assert m.retransmits == 1


def test_iperf3_udp():
    m = parsers.parse_iperf3(read("iperf3-udp-P2.json"), protocol="udp")
    assert m.throughput_mbps == pytest.approx(400.02, abs=0.01)
    assert m.udp_jitter_ms == pytest.approx(0.0207, abs=1e-4)
    assert m.udp_loss_percent == 0
    assert m.retransmits is None
    rev = parsers.parse_iperf3(read("iperf3-udp-reverse.json"), protocol="udp")
    assert rev.udp_jitter_ms == pytest.approx(0.0827, abs=1e-4)


@pytest.mark.parametrize("name, reason", [
    ("iperf3-refused.json", "iperf3: unable to connect to server: Connection refused"),
    ("iperf3-server-killed.json", "iperf3: unable to write to stream socket: Connection reset by peer"),
])
def test_iperf3_failures_exit_zero_but_are_failures(name, reason):
    with pytest.raises(ToolFailure) as exc:
        parsers.parse_iperf3(read(name))
    assert exc.value.reason == reason


def test_iperf3_not_json():
    with pytest.raises(ToolFailure, match="printed no JSON: iperf3: error - unable to start listener"):
        parsers.parse_iperf3(read("iperf3-server-port-in-use.txt"))


def test_iperf2_sums_streams_and_drops_warmup():
    text = read("iperf2-tcp-P3-i1.csv")
    m = parsers.parse_iperf2(text, "", streams=3, warmup_s=1, duration_s=2)
    # Rows of intervals 1.0-2.0 and 2.0-3.0 of the three streams, by hand from the capture.
    by_hand = (3236823040 + 2670067712 + 2523660288 + 2730491904 + 3603169280 + 2836529152) * 8 / 2 / 1e6
    assert m.throughput_mbps == pytest.approx(by_hand)
    assert m.retransmits is None and m.cpu_client_percent is None
    # No warm-up: the three per-second rows of each stream (not the 0.0-3.0 totals, which
    # also count the bytes sent after the last full second).
    whole = parsers.parse_iperf2(text, "", streams=3, warmup_s=0, duration_s=3)
    first = 2750414908 + 2735996988 + 2403860540
    assert whole.throughput_mbps == pytest.approx((first + by_hand * 1e6 * 2 / 8) * 8 / 3 / 1e6)


def test_iperf2_reverse():
    m = parsers.parse_iperf2(read("iperf2-tcp-P3-i1-reverse.csv"), "", streams=3, warmup_s=0, duration_s=2)
    assert m.throughput_mbps == pytest.approx((2870997802 + 2600006389 + 3172658367
                                                 + 2762214614 + 2561671168 + 2963870529) * 8 / 2 / 1e6)


def test_iperf2_missing_streams_fail():
    with pytest.raises(ToolFailure, match="2 of 4 streams"):
        parsers.parse_iperf2(read("iperf2-tcp-P3-i1-reverse.csv").replace(",3,", ",2,"), "",
                             streams=4, warmup_s=0, duration_s=2)


def test_iperf2_refused_prints_nothing_and_exits_zero():
    with pytest.raises(ToolFailure) as exc:
        parsers.parse_iperf2(read("iperf2-tcp-refused.csv"), read("iperf2-tcp-refused.err"),
                             streams=2, warmup_s=0, duration_s=2)
    assert exc.value.reason == "iperf 2 measured nothing: tcp connect failed: Connection refused; tcp connect failed: Connection refused"


def test_iperf2_server_killed_mid_run():
    with pytest.raises(ToolFailure) as exc:
        parsers.parse_iperf2(read("iperf2-server-killed.csv"), read("iperf2-server-killed.err"),
                             streams=2, warmup_s=0, duration_s=3)
    assert "tcp write failed: Connection reset by peer" in exc.value.reason


def test_iperf2_udp_from_server_rows():
    server = read("iperf2-udp-server-i1.csv")
    m = parsers.parse_iperf2("", "", streams=2, warmup_s=1, duration_s=2, protocol="udp",
                             server_stdout=server)
    assert m.throughput_mbps == pytest.approx((26213040 + 26215980 + 26104260 + 26193930) * 8 / 2 / 1e6)
    assert m.udp_loss_percent == pytest.approx(100 * 74 / (17832 + 17834 + 17832 + 17819))
    assert m.udp_jitter_ms == pytest.approx((0.001 + 0.001 + 0.001 + 0.000) / 4)


def test_sockperf_tcp_percentiles():
    m = parsers.parse_sockperf(read("sockperf-tcp.txt"))
    assert (m.latency_p50_us, m.latency_p99_us, m.latency_p999_us) == (5.415, 13.840, 26.101)
    assert m.warmup_s == 0.4
    assert m.throughput_mbps is None


def test_sockperf_udp_percentiles():
    m = parsers.parse_sockperf(read("sockperf-udp.txt"))
    assert (m.latency_p50_us, m.latency_p99_us, m.latency_p999_us) == (4.231, 13.227, 27.052)


def test_sockperf_refused():
    with pytest.raises(ToolFailure) as exc:
        parsers.parse_sockperf(read("sockperf-tcp-refused.txt"), read("sockperf-tcp-refused.err"))
    assert exc.value.reason == "sockperf: Can`t connect socket (errno=111 Connection refused)"


@pytest.mark.parametrize("name", ["iperf3-server-port-in-use.txt", "iperf2-server-port-in-use.txt",
                                  "sockperf-server-port-in-use.txt"])
def test_port_in_use_detected(name):
    assert parsers.port_in_use(read(name))
    assert not parsers.port_in_use(read("sockperf-tcp.txt"))


def test_tool_versions():
    text = "iperf 3.12 (cJSON 1.7.15)\nLinux x\niperf version 2.1.8 (12 August 2022) pthreads\nsockperf, version 3.7-no.git\n"
    assert parsers.tool_versions(text) == {"iperf3": "3.12", "iperf2": "2.1.8", "sockperf": "3.7"}
