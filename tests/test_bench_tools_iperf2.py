"""bench/tools/iperf2.py: its exact command lines, and its parser on real captured output
(tests/fixtures/tool-output/README.md says how each was made). No machine needed."""
from __future__ import annotations

import pytest

from bench.plan import Case, make_plan
from bench.tools import ToolFailure, iperf2
from tests.tool_output import case_of, read

TOOL = iperf2.TOOL


def case(protocol="tcp", streams=10, direction="forward") -> Case:
    return case_of("iperf2", protocol, streams, direction, "host")


def test_server_prints_csv_and_per_second_udp_rows():
    assert TOOL.server_argv(case(), "10.0.0.5", 5201) == ["iperf", "-s", "-B", "10.0.0.5", "-p", "5201", "-y", "C"]
    assert TOOL.server_argv(case("udp"), "0.0.0.0", 5202) == [
        "iperf", "-s", "-B", "0.0.0.0", "-p", "5202", "-y", "C", "-u", "-i", "1"]
    assert TOOL.listen_protocol(case()) == "tcp" and TOOL.listen_protocol(case("udp")) == "udp"


def test_client_runs_warmup_plus_duration_the_2015_way():
    plan = make_plan(duration_s=10, warmup_s=1)
    assert TOOL.client_argv(case(), plan, "10.0.0.5", 5201) == [
        "iperf", "-c", "10.0.0.5", "-p", "5201", "-P", "10", "-t", "11", "-i", "1", "-y", "C"]
    assert TOOL.client_argv(case(streams=2, direction="reverse"), plan, "10.0.0.5", 5201)[-1] == "-R"


def test_client_udp_splits_the_rate_over_the_streams():
    plan = make_plan(duration_s=3, warmup_s=0, udp_target_mbps=200)
    assert TOOL.client_argv(case("udp", 2), plan, "10.0.0.5", 5201) == [
        "iperf", "-c", "10.0.0.5", "-p", "5201", "-P", "2", "-t", "3", "-i", "1", "-y", "C",
        "-u", "-b", "100000000"]


def test_rules_of_the_plan():
    assert TOOL.skip_reason(case("udp", direction="reverse")) == (
        "iperf 2.1.8 UDP --reverse crashes its server (seen); use iperf3 for reverse UDP")
    assert TOOL.skip_reason(case("udp")) is None and TOOL.skip_reason(case(direction="reverse")) is None
    assert TOOL.warmup_s(make_plan(warmup_s=3)) == 3
    assert TOOL.reads_server_output(case("udp")) and not TOOL.reads_server_output(case())
    assert TOOL.server_output_wait_s > 0


def test_version():
    text = "iperf 3.12 (cJSON 1.7.15)\niperf version 2.1.8 (12 August 2022) pthreads\n"
    assert TOOL.parse_version(text) == "2.1.8"


def test_sums_streams_and_drops_warmup():
    text = read("iperf2-tcp-P3-i1.csv")
    m = TOOL.parse(case(streams=3), make_plan(warmup_s=1, duration_s=2), text, "").metrics
    # Rows of intervals 1.0-2.0 and 2.0-3.0 of the three streams, by hand from the capture.
    by_hand = (3236823040 + 2670067712 + 2523660288 + 2730491904 + 3603169280 + 2836529152) * 8 / 2 / 1e6
    assert m == {"throughput_mbps": pytest.approx(by_hand)}
    # No warm-up: the three per-second rows of each stream (not the 0.0-3.0 totals, which
    # also count the bytes sent after the last full second).
    whole = iperf2.parse(text, "", streams=3, warmup_s=0, duration_s=3).metrics
    first = 2750414908 + 2735996988 + 2403860540
    assert whole["throughput_mbps"] == pytest.approx((first + by_hand * 1e6 * 2 / 8) * 8 / 3 / 1e6)


def test_reverse():
    m = iperf2.parse(read("iperf2-tcp-P3-i1-reverse.csv"), "", streams=3, warmup_s=0, duration_s=2).metrics
    assert m["throughput_mbps"] == pytest.approx((2870997802 + 2600006389 + 3172658367
                                                  + 2762214614 + 2561671168 + 2963870529) * 8 / 2 / 1e6)


def test_missing_streams_fail():
    with pytest.raises(ToolFailure, match="2 of 4 streams"):
        iperf2.parse(read("iperf2-tcp-P3-i1-reverse.csv").replace(",3,", ",2,"), "",
                     streams=4, warmup_s=0, duration_s=2)


def test_refused_prints_nothing_and_exits_zero():
    with pytest.raises(ToolFailure) as exc:
        iperf2.parse(read("iperf2-tcp-refused.csv"), read("iperf2-tcp-refused.err"),
                     streams=2, warmup_s=0, duration_s=2)
    assert exc.value.reason == ("iperf 2 measured nothing: tcp connect failed: Connection refused; "
                                "tcp connect failed: Connection refused")


def test_server_killed_mid_run():
    with pytest.raises(ToolFailure) as exc:
        iperf2.parse(read("iperf2-server-killed.csv"), read("iperf2-server-killed.err"),
                     streams=2, warmup_s=0, duration_s=3)
    assert "tcp write failed: Connection reset by peer" in exc.value.reason


def test_udp_from_server_rows():
    server = read("iperf2-udp-server-i1.csv")
    m = TOOL.parse(case("udp", 2), make_plan(warmup_s=1, duration_s=2), "", "", server).metrics
    assert m["throughput_mbps"] == pytest.approx((26213040 + 26215980 + 26104260 + 26193930) * 8 / 2 / 1e6)
    assert m["udp_loss_percent"] == pytest.approx(100 * 74 / (17832 + 17834 + 17832 + 17819))
    assert m["udp_jitter_ms"] == pytest.approx((0.001 + 0.001 + 0.001 + 0.000) / 4)
    with pytest.raises(ToolFailure, match="UDP server reported nothing"):
        TOOL.parse(case("udp", 2), make_plan(warmup_s=1, duration_s=2), "", "", "")


def test_port_in_use():
    assert TOOL.port_in_use(read("iperf2-server-port-in-use.txt"))
    assert not TOOL.port_in_use(read("iperf2-tcp-P3-i1.csv"))
