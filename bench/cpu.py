"""CPU used during a run's measured window, read from each node's kernel counters (/proc/stat).

Each node gets one helper container for the whole session, with the host's /proc mounted
read-only at /host/proc (a container's own /proc/stat may be virtualised, by lxcfs say),
running bench/shell.py's loop, attached once through the node's own engine (unix, ssh or tcp
alike). A sample is a `cat` of the kernel's boot_id and /proc/stat run by that shell: about
3 ms and 2 ms of CPU, where a `docker exec` costs 50 ms and as much CPU, which would land in
the window it measures.

Nodes that report the same boot_id run on one kernel (the lab's nodes are namespaces of one
machine): that kernel is read once, through one of its nodes, and its figure is the whole
machine's, both ends together (scope "machine"). Nodes on separate kernels are each read
(scope "nodes"), and the run's figure is their sum.

From two samples: each part's CPU-seconds over the window's seconds ("cores"), where the
window's length is the counters' own (all ticks of all CPUs over the number of CPUs): no
clock of ours enters the figure. total = user (with nice) + system + softirq + irq; steal is
reported beside it (time a hypervisor gave to another guest is not CPU this run used).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import threading
import time
from typing import Any

import docker

from bench import engines
from bench.results_format import CPU_FIELDS, CPU_PART_FIELDS
from bench.shell import Shell, ShellError

# Where the host's /proc is mounted in the helper container.
HOST_PROC = "/host/proc"
# A sample: the kernel's boot_id, then /proc/stat.
SAMPLE_ARGV = ["cat", f"{HOST_PROC}/sys/kernel/random/boot_id", f"{HOST_PROC}/stat"]
# A sample that takes longer than this fails (the run keeps null CPU fields).
SAMPLE_TIMEOUT_S = 5.0
# Seconds of the idle baseline, measured once per session before the runs. With 100 ticks a
# second per CPU, one second resolves 0.01 cores.
IDLE_BASELINE_S = 1.0
# The last sample is read this long before the tool's window ends, so that it always falls
# while the traffic still flows (an exec takes 20-60 ms to read; the figure is a rate).
END_MARGIN_S = 0.1
# A second end sample, this far into the window, is used when the last one is not in hand
# before the tool ends (a machine busy with other jobs delays a read by 100 ms and more): the
# run keeps a figure over most of its window instead of none. It costs one read (about 5 ms
# of CPU) inside the window.
FALLBACK_END_FRACTION = 0.75
# Ticks per second of /proc/stat (USER_HZ, 100 on Linux), for the window's length only.
USER_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

# /proc/stat's aggregate `cpu` line: user nice system idle iowait irq softirq steal guest
# guest_nice. guest and guest_nice are already counted in user and nice.
_COLUMNS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
# Each reported part and the columns it sums.
PARTS = {"user": ("user", "nice"), "system": ("system",), "softirq": ("softirq",), "irq": ("irq",),
         "steal": ("steal",)}
TOTAL_PARTS = ("user", "system", "softirq", "irq")  # in CPU_PART_FIELDS order


class CpuError(Exception):
    """A node's counters could not be read; the message says why."""


@dataclasses.dataclass(frozen=True)
class Counters:
    """The aggregate CPU ticks of one kernel at one moment, and its number of CPUs."""
    ticks: dict[str, int]
    cpus: int


def parse_stat(text: str) -> Counters:
    """/proc/stat's text (what follows a boot_id line is ignored by name)."""
    ticks: dict[str, int] | None = None
    cpus = 0
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "cpu":
            values = [int(v) for v in fields[1:1 + len(_COLUMNS)]]
            values += [0] * (len(_COLUMNS) - len(values))  # old kernels lack steal
            ticks = dict(zip(_COLUMNS, values))
        elif fields[0].startswith("cpu") and fields[0][3:].isdigit():
            cpus += 1
    if ticks is None or not cpus:
        raise CpuError(f"no cpu lines in /proc/stat ({text.strip()[:80]!r})")
    return Counters(ticks, cpus)


def usage(before: Counters, after: Counters) -> dict[str, float]:
    """Cores used per part between two samples of one kernel, the total, and the window's seconds."""
    delta = {k: after.ticks[k] - before.ticks[k] for k in _COLUMNS}
    elapsed = sum(delta.values())  # every tick of every CPU, busy or idle
    if elapsed <= 0 or any(v < 0 for v in delta.values()):
        raise CpuError("the counters did not advance between the two samples")
    per_cpu = elapsed / after.cpus
    out = {f"{part}_cores": round(sum(delta[c] for c in cols) / per_cpu, 4) for part, cols in PARTS.items()}
    out["total_cores"] = round(sum(out[f"{p}_cores"] for p in TOTAL_PARTS), 4)
    out["window_s"] = round(per_cpu / USER_HZ, 3)
    return out


def run_fields(used: dict[str, dict[str, float]], server_kernel: str, client_kernel: str,
               throughput_mbps: float | None) -> dict[str, Any]:
    """The run's CPU fields (results_format.CPU_FIELDS) from each kernel's usage."""
    kernels = list(dict.fromkeys((server_kernel, client_kernel)))
    machine = len(kernels) == 1
    fields: dict[str, Any] = {"cpu_scope": "machine" if machine else "nodes"}
    fields["cpu_window_s"] = round(sum(used[k]["window_s"] for k in kernels) / len(kernels), 3)
    for part in (*TOTAL_PARTS, "steal"):
        fields[f"cpu_{part}_cores"] = round(sum(used[k][f"{part}_cores"] for k in kernels), 4)
    fields["cpu_total_cores"] = round(sum(fields[f] for f in CPU_PART_FIELDS), 4)
    fields["cpu_server_total_cores"] = None if machine else used[server_kernel]["total_cores"]
    fields["cpu_client_total_cores"] = None if machine else used[client_kernel]["total_cores"]
    fields["cpu_cores_per_gbps"] = (round(fields["cpu_total_cores"] / (throughput_mbps / 1000), 5)
                                    if throughput_mbps else None)
    assert list(fields) == list(CPU_FIELDS)  # noqa: S101 (the format's order; a bug otherwise)
    return fields


class Window:
    """The samples of one run: at the start and near the end of the tool's measured window,
    and one at FALLBACK_END_FRACTION of it in case the last comes too late."""

    def __init__(self, samplers: Samplers, kernels: list[str], start_at: float, end_at: float):
        self._samplers = samplers
        self._kernels = kernels
        self._cancel = threading.Event()
        self._start = samplers._timers.submit(self._sample_at, start_at)
        fallback_at = start_at + FALLBACK_END_FRACTION * (end_at - start_at)
        # The last end sample first: used whenever it is in time.
        self._ends = [samplers._timers.submit(self._sample_at, end_at),
                      samplers._timers.submit(self._sample_at, fallback_at)]

    def _sample_at(self, when: float) -> tuple[dict[str, Counters], float] | None:
        """The sample, and when it was in hand (monotonic clock)."""
        if self._cancel.wait(max(0.0, when - time.monotonic())):
            return None
        try:
            return self._samplers.read(self._kernels), time.monotonic()
        except (CpuError, engines.EngineError):
            return None

    def used(self, tool_ended_at: float) -> dict[str, dict[str, float]] | None:
        """Each kernel's usage from the start sample to the last end sample in hand before
        the tool ended (a later one may have been read after the traffic stopped: its window
        would hold idle time); None when no such pair could be read."""
        before = self._start.result()
        if not before:
            return None
        for end in self._ends:
            after = end.result()
            if not after or after[1] > tool_ended_at:
                continue
            try:
                return {k: usage(before[0][k], after[0][k]) for k in self._kernels}
            except CpuError:
                return None
        return None

    def cancel(self) -> None:
        """The run ended early (failed): the samples still due are not taken."""
        self._cancel.set()


def parse_sample(text: str) -> tuple[str, Counters]:
    """A sampler's output: the kernel's boot_id (first line), then /proc/stat."""
    boot_id, _, stat = text.strip().partition("\n")
    if not boot_id.strip() or not stat:
        raise CpuError(f"not a CPU sample: {text.strip()[:80]!r}")
    return boot_id.strip(), parse_stat(stat)


class Samplers:
    """One helper container per node for the session, and the kernels they read."""

    def __init__(self, clients: dict[str, docker.DockerClient], image: str, session: str):
        self.clients = clients
        self.image = image
        self.session = session
        self._shells: dict[str, Shell] = {}
        self.kernel_of: dict[str, str] = {}  # node -> boot_id
        self.cpus: dict[str, int] = {}  # boot_id -> CPUs
        self.unavailable: dict[str, str] = {}  # node -> why its counters cannot be read
        self.idle: dict[str, dict[str, float]] = {}  # boot_id -> usage with nothing running
        self._broken: set[str] = set()  # nodes whose sampler stopped answering
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=8)  # reads
        self._timers = concurrent.futures.ThreadPoolExecutor(max_workers=3)  # a window's three samples

    # ------------------------------------------------------------------ set-up
    def start(self) -> None:
        """Start each node's sampler and read its kernel's boot_id, in parallel."""
        def one(node: str) -> None:
            try:
                self._shells[node] = self._start(node)
                boot_id, counters = parse_sample(self._sample(node))
                self.kernel_of[node] = boot_id
                self.cpus[boot_id] = counters.cpus
            except (CpuError, engines.EngineError) as exc:
                self.unavailable[node] = str(exc)

        list(self._pool.map(one, self.clients))

    def _start(self, node: str) -> Shell:
        client = self.clients[node]

        def start_container(command: list[str], **kwargs: Any):
            return client.containers.run(
                self.image, command, detach=True, network_mode="none",
                # The host's /proc, read-only: its /proc/stat counts every CPU of the kernel.
                volumes={"/proc": {"bind": HOST_PROC, "mode": "ro"}},
                labels=engines.labels(self.session, **{"overlay-bench.role": "cpu-sampler"}), **kwargs)

        try:
            with engines.answering(node):
                return Shell.start(client, node, start_container)
        except engines.EngineError as exc:
            raise CpuError(f"the CPU sampler cannot start on {node}: {exc}") from None

    def _sample(self, node: str) -> str:
        try:
            return self._shells[node].run(SAMPLE_ARGV, SAMPLE_TIMEOUT_S).out
        except ShellError as exc:
            raise CpuError(f"the CPU sampler on {node}: {exc}") from None

    # ------------------------------------------------------------------ reading
    def kernels(self, *nodes: str) -> list[str] | None:
        """The kernels to read for a run between `nodes`; None when one cannot be read."""
        if any(n not in self.kernel_of for n in nodes):
            return None
        return list(dict.fromkeys(self.kernel_of[n] for n in nodes))

    def _read(self, kernel: str) -> Counters:
        """A sample of `kernel`, through the first of its nodes whose sampler answers."""
        error = CpuError(f"no node reads kernel {kernel}")
        for node in [n for n, k in self.kernel_of.items() if k == kernel and n not in self._broken]:
            try:
                boot_id, counters = parse_sample(self._sample(node))
            except CpuError as exc:
                # Its engine may be gone (each try waits SAMPLE_TIMEOUT_S): not asked again;
                # another node of the same kernel may answer.
                self._broken.add(node)
                error = exc
                continue
            if boot_id != kernel:
                raise CpuError(f"node {node} now runs another kernel (boot_id {boot_id}, was {kernel})")
            return counters
        raise error

    def read(self, kernels: list[str]) -> dict[str, Counters]:
        """One sample of each kernel, read at the same time through one node of each."""
        futures = {k: self._pool.submit(self._read, k) for k in kernels[1:]}
        out = {kernels[0]: self._read(kernels[0])} if kernels else {}
        out.update({k: f.result() for k, f in futures.items()})
        return out

    def window(self, kernels: list[str], start_at: float, end_at: float) -> Window:
        return Window(self, kernels, start_at, end_at)

    def measure_idle(self, seconds: float = IDLE_BASELINE_S) -> None:
        """Every kernel's CPU over `seconds` with nothing of ours running: the baseline."""
        kernels = list(dict.fromkeys(self.kernel_of.values()))
        if not kernels:
            return
        try:
            before = self.read(kernels)
            time.sleep(seconds)
            after = self.read(kernels)
            self.idle = {k: usage(before[k], after[k]) for k in kernels}
        except CpuError as exc:
            for node in self.kernel_of:
                self.unavailable.setdefault(node, f"idle baseline: {exc}")
            self.kernel_of.clear()

    def metadata(self) -> dict[str, Any]:
        """What metadata.json records under `cpu`."""
        kernels = []
        for boot_id in dict.fromkeys(self.kernel_of.values()):
            nodes = sorted(n for n, k in self.kernel_of.items() if k == boot_id)
            kernels.append({"boot_id": boot_id, "nodes": nodes, "cpus": self.cpus[boot_id],
                            "idle": self.idle.get(boot_id)})
        scope = None
        if kernels:
            scope = "machine" if len(kernels) == 1 and not self.unavailable else "nodes"
        return {"source": "/proc/stat", "scope": scope, "idle_baseline_s": IDLE_BASELINE_S,
                "kernels": kernels, "unavailable": dict(sorted(self.unavailable.items()))}

    def close(self) -> None:
        """Stop reading; the containers go with the session's cleanup by label."""
        self._timers.shutdown(wait=True, cancel_futures=True)
        self._pool.shutdown(wait=True, cancel_futures=True)
        for shell in self._shells.values():
            shell.close()
