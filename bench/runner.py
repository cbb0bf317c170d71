"""The runs: a server container pinned on node A, a client on node B, on the network under test.

Pinning needs no scheduler: each container is created through its node's own engine. A
case's server starts before its first run and serves every run after it (one per network,
tool, protocol and node pair: streams and direction are the client's); each network's client
container on a node runs a shell (bench/shell.py) that starts every run's client. So a run
costs its measured time plus a millisecond, as the 2015 post's loop did with its server
started once.
Before each run the server is checked to be running; a dead one is started again and the
run tried again (the failed attempt stays on record). Every container carries the session
label and is removed at the end (close()); the session's finally removes anything left by
label (Ctrl-C, SIGTERM, a crash).
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import time
from typing import Any

import docker
import docker.errors

from bench import cpu, engines, tools
from bench import plan as bench_plan
from bench.engines import ENGINE_DOWN
from bench.plan import Case, Plan, Run, ServerKey, server_key
from bench.results_format import CPU_FIELDS, FORMAT_VERSION, METRIC_FIELDS, run_problem
from bench.shell import Output, Shell, ShellError
from bench.store import utc_now
from bench.tools import Measurement, ToolFailure, strip_ansi
from common.polling import poll

# A server must listen within this many seconds of its start.
READY_TIMEOUT_S = 15.0
# After a run failed, how long its server may take to show it had died.
SERVER_EXIT_WAIT_S = 1.0
# A run may take this much longer than its warm-up + duration before it is cut.
RUN_SLACK_S = 30.0
# Reachability probe on overlays: a closed TCP port on the server's address (the probe gives
# up after half a second by itself).
PROBE_PORT = 9
PROBE_TIMEOUT_S = 10.0
REACH_TIMEOUT_S = 30.0


@dataclasses.dataclass(frozen=True)
class Failure:
    """Why a run did not measure."""
    reason: str
    engine_down: str | None = None  # the node whose engine stopped answering
    port_in_use: bool = False
    # Failed while the containers were being set up, before anything was measured: a fresh
    # attempt is fair (the failed one stays recorded).
    setup: bool = False
    # The case's server had died (found before the run, or after it failed): it is started
    # again, and the run tried again.
    server_died: bool = False

    @property
    def try_again(self) -> bool:
        return self.setup or self.server_died

    @property
    def stops_session(self) -> bool:
        """A dead engine or a taken port fails every run after it too (unless --keep-going)."""
        return bool(self.engine_down or self.port_in_use)


class RunFailure(Exception):
    """Raised inside the runner when a run cannot measure; execute() returns its `failure`."""

    def __init__(self, reason: str, engine_down: str | None = None, port_in_use: bool = False,
                 setup: bool = False, server_died: bool = False):
        super().__init__(reason)
        self.failure = Failure(reason, engine_down, port_in_use, setup, server_died)


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What one attempt of a run gave: its runs.jsonl line, and why it failed if it did."""
    record: dict[str, Any]
    failure: Failure | None = None


@dataclasses.dataclass
class Target:
    """How the client reaches the server on one network, and the container options of each end."""
    server_kwargs: dict[str, Any]
    client_kwargs: dict[str, Any]
    bind: str  # address the server binds


# The server runs under a small sh loop that reads its own namespace's socket table and
# prints READY_MARK on stderr once the port is bound (TCP: LISTEN, 0A; UDP: bound, 07). The
# harness then polls logs, a cheap call, instead of exec'ing into the container (which
# costs about 0.07 s a run). `read` is a shell builtin: the loop forks nothing.
# A port bound before the server starts (someone else's, on the host network) ends it at
# once with "Address already in use": else the loop would take that socket for the server's
# and the client would measure against a stranger.
READY_MARK = "overlay-bench: server listening"
PORT_TAKEN_MARK = "overlay-bench: the port was bound before the server started: Address already in use"
_READY_SCRIPT = (
    'port=$1 state=$2 f1=$3 f2=$4; shift 4; '
    'bound() { for f in $f1 $f2; do [ -r $f ] || continue; while read -r sl local rem st rest; do '
    'case "$local $st" in *:$port\\ $state) return 0;; esac; done < $f; done; return 1; }; '
    f'if bound; then echo "{PORT_TAKEN_MARK}" >&2; exit 98; fi; '
    '"$@" & pid=$!; '
    f'while kill -0 $pid 2>/dev/null; do if bound; then echo "{READY_MARK}" >&2; wait $pid; exit $?; fi; done; '
    'wait $pid')
_SOCKET_STATE = {"tcp": "0A", "udp": "07"}  # /proc/net/{tcp,udp} st: listening, bound


def server_command(case: Case, bind: str, port: int) -> list[str]:
    """The tool's server under the readiness loop, which watches the tool's socket table."""
    tool = tools.get(case.tool)
    proto = tool.listen_protocol(case)
    return ["sh", "-c", _READY_SCRIPT, "sh", f"{port:04X}", _SOCKET_STATE[proto], f"/proc/net/{proto}",
            f"/proc/net/{proto}6", *tool.server_argv(case, bind, port)]


@dataclasses.dataclass
class Server:
    """A case's server container, kept for every run of the cases it serves."""
    container: Any
    port: int
    address: str  # the address clients reach it at
    # Idle client containers that have reached it (an overlay address is reachable from a new
    # container only once gossip has told its node).
    reached_from: set[str] = dataclasses.field(default_factory=set)


class Runner:
    """Runs the session's runs one by one; keeps each case's server and each (network, node)'s
    client container up for the runs that follow, and removes them in close()."""

    def __init__(self, outputs: dict[str, Any], clients: dict[str, docker.DockerClient], plan: Plan,
                 image: str, session: str, networks: dict[str, str], ports: dict[ServerKey, int],
                 samplers: cpu.Samplers | None = None, slack_s: float = RUN_SLACK_S,
                 reach_timeout_s: float = REACH_TIMEOUT_S):
        self.nodes = {n["name"]: n for n in outputs["nodes"]}
        self.clients = clients
        self.plan = plan
        self.image = image
        self.session = session
        self.networks = networks  # network kind -> docker network name (overlay, overlay-encrypted)
        self.ports = ports  # from bench.plan.server_ports: one port per server
        self.samplers = samplers
        self.slack_s = slack_s
        self.reach_timeout_s = reach_timeout_s
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=6)
        self._removals: list[concurrent.futures.Future] = []
        self._servers: dict[ServerKey, Server] = {}
        self._clients: dict[tuple[str, str], Shell] = {}  # (network, client node) -> its client container

    # ------------------------------------------------------------------ per network
    def _target(self, case: Case, port: int) -> Target:
        server_addr = self.nodes[case.server_node]["address"]
        if case.network == "host":
            return Target({"network_mode": "host"}, {"network_mode": "host"}, server_addr)
        if case.network == "bridge":
            # Published on the node's address: the client, on its own node's default bridge,
            # goes through NAT on both ends, as a service published with -p would.
            ports = {f"{port}/tcp": (server_addr, port), f"{port}/udp": (server_addr, port)}
            return Target({"ports": ports}, {}, "0.0.0.0")
        net = self.networks[case.network]
        return Target({"network": net}, {"network": net}, "0.0.0.0")

    def _labels(self, role: str, serves: str | None = None) -> dict[str, str]:
        more = {"overlay-bench.role": role}
        if serves:
            more["overlay-bench.serves"] = serves
        return engines.labels(self.session, **more)

    # ------------------------------------------------------------------ one run
    def execute(self, run: Run, skip_reason: str | None = None) -> RunResult:
        """Run it once; its record has status ok, failed or skipped. Never raises RunFailure."""
        case, tool = run.case, tools.get(run.case.tool)
        udp_rate = case.protocol == "udp" and tool.takes_udp_rate
        record = {
            "format_version": FORMAT_VERSION, "run_id": run.run_id, "case_id": case.case_id,
            "run_index": run.run_index, "network": case.network, "tool": case.tool,
            "protocol": case.protocol, "streams": case.streams, "direction": case.direction,
            "server_node": case.server_node, "client_node": case.client_node,
            "duration_s": self.plan.duration_s, "warmup_s": bench_plan.warmup_s(self.plan, case),
            "udp_target_mbps": self.plan.udp_target_mbps if udp_rate else None,
            "started_at": utc_now(), "wall_s": None, "status": "skipped", "reason": skip_reason,
            **dict.fromkeys(METRIC_FIELDS), **dict.fromkeys(CPU_FIELDS),
        }
        if skip_reason:
            return RunResult(record)
        t0 = time.monotonic()
        failure = None
        try:
            measured, cpu_fields = self._measure(run)
        except RunFailure as exc:
            failure = exc.failure
        except engines.EngineError as exc:
            failure = Failure(str(exc), engine_down=exc.node_down)
        else:
            record.update(status="ok", reason=None, **measured.metrics, **cpu_fields)
            if measured.warmup_s is not None:
                record["warmup_s"] = measured.warmup_s
            problem = run_problem(record)
            if problem:
                # A figure the results cannot hold (NaN, negative): no measurement, and the
                # line stays one that --resume and analysis read.
                record.update(dict.fromkeys(METRIC_FIELDS))
                failure = Failure(f"{case.tool} gave a value that is no measurement: {problem}")
        if failure is not None and not failure.engine_down:
            # Whatever the error said, a dead engine is the cause worth naming.
            dead = self.dead_engine(case)
            if dead:
                failure = Failure(f"engine on {dead} stopped answering ({failure.reason})", engine_down=dead)
        if failure is not None:
            record.update(status="failed", reason=failure.reason)
        record["wall_s"] = round(time.monotonic() - t0, 3)
        return RunResult(record, failure)

    def _measure(self, run: Run) -> tuple[Measurement, dict[str, Any]]:
        case, plan, tool = run.case, self.plan, tools.get(run.case.tool)
        try:
            server, client = self._ready(case)
            mark = self._log_mark(case, server) if tool.reads_server_output(case) else None
        except (RunFailure, engines.EngineError) as exc:
            raise _set_up_failure(exc) from None
        window = self._cpu_window(case)
        try:
            out, err = self._run_client(case, client, tool.client_argv(case, plan, server.address, server.port))
            ended_at = time.monotonic()
            measured = self._parse(case, out, err, server, mark)
        except RunFailure as exc:
            window and window.cancel()
            raise self._after_failure(case, server, exc) from None
        except BaseException:
            window and window.cancel()
            raise
        return measured, self._cpu_fields(case, window, measured, ended_at)

    # ------------------------------------------------------------------ CPU
    def _cpu_window(self, case: Case) -> cpu.Window | None:
        """The CPU samples of this run, timed on the tool's measured window from now (the
        client's start): warm-up left out, the last sample a little before the end."""
        if self.samplers is None or "throughput_mbps" not in tools.get(case.tool).metrics:
            return None
        kernels = self.samplers.kernels(case.server_node, case.client_node)
        if not kernels:
            return None
        start = time.monotonic() + bench_plan.warmup_s(self.plan, case)
        return self.samplers.window(kernels, start, start + self.plan.duration_s - cpu.END_MARGIN_S)

    def _cpu_fields(self, case: Case, window: cpu.Window | None, measured: Measurement,
                    ended_at: float) -> dict[str, Any]:
        used = window.used(ended_at) if window else None
        if not used:
            return {}
        return cpu.run_fields(used, self.samplers.kernel_of[case.server_node],
                              self.samplers.kernel_of[case.client_node], measured.metrics.get("throughput_mbps"))

    # ------------------------------------------------------------------ servers and clients
    def _ready(self, case: Case) -> tuple[Server, Shell]:
        """The case's server (started if need be; checked to be running) and the client
        container of its network on the client node; on an overlay, the server reachable from it."""
        key = server_key(case)
        server = self._servers.get(key)
        if server is not None and not self._running(case.server_node, server.container):
            why = self._exit_text(case.server_node, server.container)
            self._evict_server(key)
            raise RunFailure(f"the server on {case.server_node} had exited ({why}); it is started again",
                             setup=True, server_died=True)
        client = self._clients.get((case.network, case.client_node))
        if server is None or client is None:
            server, client = self._start_missing(case, server, client)
        if case.network.startswith("overlay") and client.id not in server.reached_from:
            self._wait_reachable(case, client, server.address)
            server.reached_from.add(client.id)
        return server, client

    def prepare(self, cases: list[Case]) -> None:
        """Start the servers and client containers of `cases` ahead of their first runs,
        in parallel (while the session reads the node facts). What fails to start here is
        left to the case's first run, which starts it again and records why if it fails."""
        first: dict[ServerKey, Case] = {}
        for case in cases:
            if case.network in ("host", "bridge") or case.network in self.networks:
                first.setdefault(server_key(case), case)
        # Cases that share a client container are set up one after the other.
        groups: dict[tuple[str, str], list[Case]] = {}
        for case in first.values():
            groups.setdefault((case.network, case.client_node), []).append(case)

        def set_up(group: list[Case]) -> None:
            for case in group:
                with contextlib.suppress(RunFailure, engines.EngineError):
                    self._ready(case)

        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(4, len(groups)))) as pool:
            list(pool.map(set_up, groups.values()))

    def _start_missing(self, case: Case, server: Server | None, client: Shell | None) -> tuple[Server, Shell]:
        """Start the server and the client container that are missing, at the same time, each
        through its own node's engine (an overlay attach takes about a second each)."""
        key = server_key(case)
        port = self.ports[key]
        target = self._target(case, port)
        futs: dict[str, concurrent.futures.Future] = {}
        if server is None:
            futs["server"] = self._pool.submit(
                self._start, case.server_node, server_command(case, target.bind, port),
                labels=self._labels("server", "-".join(key)), **target.server_kwargs)
        if client is None:
            # A shell that runs each run's client (bench/shell.py).
            futs["client"] = self._pool.submit(
                lambda: Shell.start(self.clients[case.client_node], case.client_node,
                                    lambda command, **kwargs: self._start(
                                        case.client_node, command,
                                        labels=self._labels("client", f"{case.network}-{case.client_node}"),
                                        **target.client_kwargs, **kwargs)))
        concurrent.futures.wait(futs.values())
        # Keep what started (even when the other failed): the next attempt uses it, and close()
        # or the session's cleanup removes it.
        started = {name: fut.result() for name, fut in futs.items() if fut.exception() is None}
        if "client" in started:
            client = self._clients[(case.network, case.client_node)] = started["client"]
        new_server = started.get("server")
        for fut in futs.values():
            if fut.exception() is not None:
                if new_server is not None:
                    self._remove_later([new_server])
                raise fut.exception()
        if new_server is not None:
            try:
                self._wait_listening(case, new_server, port)
                address = self._server_address(case, new_server)
            except BaseException:
                self._remove_later([new_server])
                raise
            server = self._servers[key] = Server(new_server, port, address)
        assert server is not None and client is not None  # noqa: S101
        return server, client

    def _running(self, node: str, container) -> bool:
        engines.call(node, container.reload)
        return container.status == "running"

    def _exit_text(self, node: str, container) -> str:
        state = container.attrs.get("State") or {}
        with contextlib.suppress(engines.EngineError):
            logs = strip_ansi(engines.call(node, lambda: container.logs(tail=3)).decode(errors="replace")).strip()
            if logs:
                return f"exit code {state.get('ExitCode')}: {logs.splitlines()[-1][:200]}"
        return f"exit code {state.get('ExitCode')}"

    def _evict_server(self, key: ServerKey) -> None:
        server = self._servers.pop(key, None)
        if server is not None:
            self._remove_later([server.container])

    def _evict_client(self, case: Case) -> None:
        client = self._clients.pop((case.network, case.client_node), None)
        if client is not None:
            client.close()
            self._remove_later([client.container])

    def _after_failure(self, case: Case, server: Server, exc: RunFailure) -> RunFailure:
        """A run failed while measuring. Its server is started again for the next run (its
        state is unknown: iperf3 may still be busy with the failed test); if it had died, the
        run is tried again at once."""
        failure = exc.failure
        key = server_key(case)
        with contextlib.suppress(engines.EngineError):
            # A killed server's peer sees the connection reset a moment before the engine
            # reports the container exited (seen): wait for that a little.
            if poll(lambda: not self._running(case.server_node, server.container), SERVER_EXIT_WAIT_S,
                    delay_s=0.05, backoff=1.5, max_delay_s=0.2):
                why = self._exit_text(case.server_node, server.container)
                self._evict_server(key)
                return RunFailure(f"{failure.reason} (the server on {case.server_node} had exited: {why})",
                                  failure.engine_down, failure.port_in_use, server_died=True)
        self._evict_server(key)
        return exc

    def _log_mark(self, case: Case, server: Server) -> str | None:
        """The timestamp of the server's last output line before this run (None: no output yet)."""
        tail = engines.call(case.server_node, lambda: server.container.logs(
            stdout=True, stderr=False, timestamps=True, tail=1)).decode(errors="replace").strip()
        return tail.split(" ", 1)[0] if tail else None

    def _server_output_since(self, case: Case, server: Server, mark: str | None) -> str:
        """The server's output after `mark`: this run's lines only (a server serves every run)."""
        after = _log_time(mark) if mark else None
        logs = engines.call(case.server_node, lambda: server.container.logs(
            stdout=True, stderr=False, timestamps=True, since=int(after[0]) if after else None))
        lines = []
        for line in logs.decode(errors="replace").splitlines():
            stamp, _, text = line.partition(" ")
            if after is None or _log_time(stamp) > after:
                lines.append(text)
        return "\n".join(lines)

    def dead_engine(self, case: Case) -> str | None:
        """The node of this case whose engine no longer answers, if any."""
        for node in (case.server_node, case.client_node):
            try:
                self.clients[node].ping()
            except (docker.errors.DockerException, *ENGINE_DOWN):
                return node
        return None

    def _start(self, node: str, command: list[str], **kwargs: Any):
        """Start a container through `node`'s engine (see _start_container)."""
        with engines.answering(node):
            try:
                return engines.with_store_retries(
                    lambda: _start_container(self.clients[node], self.image, command, **kwargs))
            except docker.errors.ImageNotFound:
                raise RunFailure(f"image {self.image} is missing on {node}") from None

    def _wait_reachable(self, case: Case, client: Shell, address: str) -> None:
        """From the client's container, wait until the server's overlay address answers.

        A new container's address reaches the other nodes by gossip; until it has, the first
        packets meet "No route to host" or silence (seen: sockperf and iperf 2 UDP failing,
        and now and then 10-15 s on a swarm lab). The probe is a TCP connect to a closed port:
        "Connection refused" proves the path works both ways.
        """
        probe = tools.connect_probe_argv(address, PROBE_PORT)
        out = ""

        def refused() -> bool:
            nonlocal out
            result = self._shell_run(case, client, probe, PROBE_TIMEOUT_S)
            out = result.out + result.err
            return "refused" in out

        if not poll(refused, self.reach_timeout_s, delay_s=0.01, max_delay_s=0.2, backoff=2):
            last = out.strip().splitlines()[-1] if out.strip() else "no answer"
            raise RunFailure(f"server {address} on {case.network} not reachable from "
                             f"{case.client_node} within {self.reach_timeout_s:g} s ({last})")

    def _run_client(self, case: Case, client: Shell, argv: list[str]) -> tuple[str, str]:
        """The run's client, in the client container's shell; its stdout and stderr."""
        budget = self.plan.warmup_s + self.plan.duration_s + self.slack_s
        result = self._shell_run(case, client, argv, budget)
        return result.out, result.err

    def _shell_run(self, case: Case, client: Shell, argv: list[str], timeout_s: float) -> Output:
        try:
            return client.run(argv, timeout_s)
        except ShellError as exc:
            # Removing its container ends whatever still runs there (a client that hangs).
            self._evict_client(case)
            if exc.timed_out:
                raise RunFailure(f"timed out: no result after {timeout_s:g} s") from None
            raise RunFailure(f"the client container on {case.client_node}: {exc}") from None

    def close(self, remove: bool = True) -> None:
        """Remove every server and client container, in parallel, and wait for the removals
        (remove=False: the session's cleanup by label removes them, with its other containers)."""
        for client in self._clients.values():
            client.close()
        if remove:
            self._remove_later([s.container for s in self._servers.values()]
                               + [c.container for c in self._clients.values()])
        self._servers.clear()
        self._clients.clear()
        self._finish_removals()
        self._pool.shutdown(wait=True)  # in-flight creations end before the cleanup by label

    def _parse(self, case: Case, out: str, err: str, server: Server, mark: str | None) -> Measurement:
        tool, plan = tools.get(case.tool), self.plan
        try:
            if not tool.reads_server_output(case):
                return tool.parse(case, plan, out, err)
            last: ToolFailure | None = None

            def parsed() -> Measurement | None:
                # The server prints its last lines when the test ends, a moment after the client.
                nonlocal last
                try:
                    return tool.parse(case, plan, out, err, self._server_output_since(case, server, mark))
                except ToolFailure as exc:
                    last = exc
                    return None

            measured = poll(parsed, tool.server_output_wait_s, delay_s=0.1, backoff=1)
            if measured is None:
                raise last  # set by the last parsed()
            return measured
        except ToolFailure as exc:
            raise RunFailure(exc.reason) from None

    def _wait_listening(self, case: Case, server, port: int) -> None:
        """Wait for the server's "listening" line (see server_command): no fixed sleep."""
        node = case.server_node
        polls = 0

        def listening() -> bool:
            nonlocal polls
            logs = engines.call(node, lambda: server.logs(stdout=False, stderr=True))
            if READY_MARK.encode() in logs:
                if case.network == "host":
                    # On the host network the socket seen may be someone else's, and ours
                    # exited because the port was taken.
                    engines.call(node, server.reload)
                    if server.status != "running":
                        self._server_exited(case, server, port)
                return True
            polls += 1
            if polls % 8 == 0:
                engines.call(node, server.reload)
                if server.status == "exited":
                    self._server_exited(case, server, port)
            return False

        if not poll(listening, READY_TIMEOUT_S, delay_s=0.002, max_delay_s=0.05, backoff=2):
            raise RunFailure(f"server on {node} did not listen on port {port} within {READY_TIMEOUT_S:g} s")

    def _server_exited(self, case: Case, server, port: int) -> None:
        logs = engines.call(case.server_node, server.logs).decode(errors="replace")
        if tools.get(case.tool).port_in_use(logs):
            raise RunFailure(f"port {port}/{case.protocol} is already in use on node {case.server_node} "
                             f"({case.network} network): free it or pass --port-base", port_in_use=True)
        raise RunFailure(f"server on {case.server_node} exited before listening: "
                         f"{strip_ansi(logs).strip()[-300:] or '(no output)'}")

    def _server_address(self, case: Case, server) -> str:
        if case.network in ("host", "bridge"):
            return self.nodes[case.server_node]["address"]
        net = self.networks[case.network]

        def address() -> str | None:
            # A classic-mode engine under load has been seen to report the network's
            # address a moment after the start (inspect shows none at first).
            engines.call(case.server_node, server.reload)
            networks = (server.attrs.get("NetworkSettings") or {}).get("Networks") or {}
            return networks.get(net, {}).get("IPAddress")

        ip = poll(address, 3.0, delay_s=0.05, backoff=1)
        if not ip:
            raise RunFailure(f"server on {case.server_node} got no address on network {net} "
                             f"(container {server.status})")
        return ip

    def _remove_later(self, made: list[Any]) -> None:
        """Remove containers in the background (a dead engine is left to the session's
        cleanup by label); close() waits for the last ones."""
        def rm(ctr):
            with contextlib.suppress(Exception):
                ctr.remove(force=True)
        self._removals += [self._pool.submit(rm, ctr) for ctr in made]

    def _finish_removals(self) -> None:
        pending, self._removals = self._removals, []
        concurrent.futures.wait(pending)


def _log_time(stamp: str) -> tuple[int, int]:
    """An engine's log timestamp (RFC 3339, nanoseconds, trailing zeros cut) as (seconds, ns)."""
    whole, _, frac = stamp.rstrip("Z").partition(".")
    seconds = int(dt.datetime.fromisoformat(whole).replace(tzinfo=dt.UTC).timestamp())
    return seconds, int((frac or "0").ljust(9, "0")[:9])


def _set_up_failure(exc: RunFailure | engines.EngineError) -> RunFailure:
    """A failure before anything was measured: unless an engine died or the port is taken,
    a fresh attempt is fair. Seen in classic mode under load: an engine failing to write to
    the key-value store ("failed to update store ... network is unreachable")."""
    if isinstance(exc, RunFailure):
        failure = exc.failure
    else:
        failure = Failure(str(exc), engine_down=exc.node_down)
    return RunFailure(failure.reason, failure.engine_down, failure.port_in_use,
                      setup=failure.setup or not failure.stops_session, server_died=failure.server_died)


def _start_container(client: docker.DockerClient, image: str, command: list[str], **kwargs: Any):
    """containers.run(detach=True) without the two inspects the SDK adds (every run pays them).

    A container that fails to start is removed before the error goes up."""
    from docker.models.containers import _create_container_args

    args = _create_container_args(dict(kwargs, image=image, command=command, version=client.api._version))
    cid = client.api.create_container(**args)["Id"]
    try:
        client.api.start(cid)
    except BaseException:
        with contextlib.suppress(Exception):
            client.api.remove_container(cid, force=True)
        raise
    return client.containers.prepare_model({"Id": cid})
