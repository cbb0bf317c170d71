"""bench/cpu.py: the counters read from captured /proc/stat samples, the arithmetic of a run's
CPU fields, and when a window's samples count."""
from __future__ import annotations

import concurrent.futures
import threading
import time
from pathlib import Path

import pytest

from bench import cpu
from bench.results_format import CPU_FIELDS, CPU_PART_FIELDS

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "cpu"
BOOT_ID = "86141126-a0d2-466b-a4c4-075c92e94390"


def sample(n: int) -> tuple[str, cpu.Counters]:
    return cpu.parse_sample((FIXTURES / f"sample-{n}.txt").read_text())


def test_a_sample_is_the_boot_id_and_the_aggregate_counters():
    boot_id, counters = sample(1)
    assert boot_id == BOOT_ID
    assert counters.cpus == 2
    assert counters.ticks == {"user": 392186, "nice": 0, "system": 266275, "idle": 509180, "iowait": 5287,
                              "irq": 0, "softirq": 116051, "steal": 1401}


def test_usage_between_two_samples_in_cores():
    used = cpu.usage(sample(1)[1], sample(2)[1])
    # 203 ticks over 2 CPUs: 101.5 ticks per CPU; user 92, system 87, softirq 21 ticks.
    assert used == {"user_cores": round(92 / 101.5, 4), "system_cores": round(87 / 101.5, 4),
                    "softirq_cores": round(21 / 101.5, 4), "irq_cores": 0.0, "steal_cores": 0.0,
                    "total_cores": round(round(92 / 101.5, 4) + round(87 / 101.5, 4) + round(21 / 101.5, 4), 4),
                    "window_s": 1.015}


def test_counters_that_did_not_advance_are_refused():
    with pytest.raises(cpu.CpuError, match="did not advance"):
        cpu.usage(sample(2)[1], sample(1)[1])
    with pytest.raises(cpu.CpuError, match="no cpu lines"):
        cpu.parse_stat("intr 1 2 3\n")
    with pytest.raises(cpu.CpuError, match="not a CPU sample"):
        cpu.parse_sample("")


def test_old_kernels_without_steal_read_as_zero():
    counters = cpu.parse_stat("cpu  10 0 5 100 1 0 2\ncpu0 10 0 5 100 1 0 2\n")
    assert counters.ticks["steal"] == 0 and counters.cpus == 1


def used(total_parts=(0.5, 0.3, 0.2, 0.0), steal=0.01, window=4.9):
    parts = dict(zip(("user_cores", "system_cores", "softirq_cores", "irq_cores"), total_parts))
    return {**parts, "steal_cores": steal, "total_cores": round(sum(total_parts), 4), "window_s": window}


def test_one_kernel_is_the_machine_counted_once():
    fields = cpu.run_fields({"k": used()}, "k", "k", throughput_mbps=2000.0)
    assert list(fields) == list(CPU_FIELDS)
    assert fields["cpu_scope"] == "machine"
    assert fields["cpu_total_cores"] == 1.0 == round(sum(fields[f] for f in CPU_PART_FIELDS), 4)
    assert fields["cpu_steal_cores"] == 0.01  # beside the total, not in it
    assert fields["cpu_server_total_cores"] is None and fields["cpu_client_total_cores"] is None
    assert fields["cpu_cores_per_gbps"] == 0.5  # 1 core for 2 Gbit/s: 50 % of a core per Gbit/s
    assert fields["cpu_window_s"] == 4.9


def test_two_kernels_are_each_node_and_their_sum():
    fields = cpu.run_fields({"a": used((0.4, 0.2, 0.1, 0.0)), "b": used((0.1, 0.3, 0.3, 0.1), window=4.8)},
                            "a", "b", throughput_mbps=1000.0)
    assert fields["cpu_scope"] == "nodes"
    assert fields["cpu_server_total_cores"] == 0.7 and fields["cpu_client_total_cores"] == 0.8
    assert fields["cpu_user_cores"] == 0.5 and fields["cpu_softirq_cores"] == 0.4
    assert fields["cpu_total_cores"] == 1.5 == round(sum(fields[f] for f in CPU_PART_FIELDS), 4)
    assert fields["cpu_cores_per_gbps"] == 1.5 and fields["cpu_window_s"] == 4.85


def test_no_throughput_no_figure_per_gbit():
    assert cpu.run_fields({"k": used()}, "k", "k", throughput_mbps=None)["cpu_cores_per_gbps"] is None


def later(counters: cpu.Counters, ticks: int) -> cpu.Counters:
    """`counters` a little later: `ticks` more of each column."""
    return cpu.Counters({k: v + ticks for k, v in counters.ticks.items()}, counters.cpus)


class FakeSamplers:
    """Reads the captured samples in turn, each after its delay (the timing rules of a
    window, without a machine)."""
    _timers = concurrent.futures.ThreadPoolExecutor(max_workers=3)

    def __init__(self, *delays_s: float):
        self.samples = [sample(1)[1], sample(2)[1], later(sample(2)[1], 50)]
        self.delays_s = list(delays_s) or [0.0] * 3
        self.lock = threading.Lock()

    def read(self, kernels):
        with self.lock:  # in the order asked: start, the fallback end, the last end
            counters, delay = self.samples.pop(0), self.delays_s.pop(0)
        time.sleep(delay)
        return {kernels[0]: counters}


def test_a_window_reads_its_samples_on_time_and_ends_at_the_last():
    now = time.monotonic()
    window = cpu.Window(FakeSamplers(), ["k"], now, now + 0.2)
    time.sleep(0.3)
    assert window.used(tool_ended_at=time.monotonic()) == {"k": cpu.usage(sample(1)[1], later(sample(2)[1], 50))}


def test_a_last_sample_in_hand_after_the_tool_ended_gives_way_to_the_earlier_end():
    now = time.monotonic()
    # start at once, the fallback end at 0.3 s in hand at once, the last end (0.4 s) 0.5 s late
    window = cpu.Window(FakeSamplers(0.0, 0.0, 0.5), ["k"], now, now + 0.4)
    assert window.used(tool_ended_at=now + 0.6) == {"k": cpu.usage(sample(1)[1], sample(2)[1])}


def test_no_end_sample_in_hand_before_the_tool_ended_no_figure():
    now = time.monotonic()
    window = cpu.Window(FakeSamplers(0.2, 0.2, 0.2), ["k"], now, now + 0.05)
    assert window.used(tool_ended_at=now + 0.1) is None


def test_a_cancelled_window_takes_no_sample():
    class Never(FakeSamplers):
        def read(self, kernels):
            raise AssertionError("a cancelled window must not read")

    now = time.monotonic()
    window = cpu.Window(Never(), ["k"], now + 30, now + 60)
    started = time.monotonic()
    window.cancel()
    assert window.used(time.monotonic()) is None
    assert time.monotonic() - started < 1  # the timers do not wait for their deadlines


def test_nodes_on_one_kernel_are_one_machine_and_on_two_are_each_read():
    samplers = cpu.Samplers({}, "image", "session")
    try:
        samplers.kernel_of = {"lab-node1": "k1", "lab-node2": "k1"}
        samplers.cpus = {"k1": 2}
        assert samplers.kernels("lab-node1", "lab-node2") == ["k1"]
        assert samplers.metadata()["scope"] == "machine"
        assert samplers.metadata()["kernels"] == [{"boot_id": "k1", "nodes": ["lab-node1", "lab-node2"],
                                                    "cpus": 2, "idle": None}]
        samplers.kernel_of = {"do-node1": "k1", "do-node2": "k2"}
        samplers.cpus = {"k1": 1, "k2": 1}
        assert samplers.kernels("do-node1", "do-node2") == ["k1", "k2"]
        assert samplers.metadata()["scope"] == "nodes"
        # A node whose counters cannot be read: its runs have no CPU figure, and it is named.
        samplers.unavailable = {"do-node3": "the CPU sampler cannot start on do-node3: refused"}
        assert samplers.kernels("do-node1", "do-node3") is None
        assert samplers.metadata()["unavailable"] == samplers.unavailable
    finally:
        samplers.close()
