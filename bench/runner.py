"""One run: a server container pinned on node A, a client on node B, on the network under test.

Pinning needs no scheduler: each container is created through its node's own engine.
Every container carries the session label and is removed after its run, whatever happens;
the session's finally removes anything left by label (Ctrl-C, SIGTERM, a crash).
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import time
from typing import Any

import docker
import docker.errors

from bench import engines, ports, tools
from bench import plan as bench_plan
from bench.engines import ENGINE_DOWN
from bench.plan import Case, Plan, Run
from bench.results_format import FORMAT_VERSION, METRIC_FIELDS, run_problem
from bench.store import utc_now
from bench.tools import Measurement, ToolFailure, strip_ansi
from common.polling import poll

# A server must listen within this many seconds of its start.
READY_TIMEOUT_S = 15.0
# A run may take this much longer than its warm-up + duration before it is cut.
RUN_SLACK_S = 30.0
# Reachability probe on overlays: a closed TCP port on the server's address.
PROBE_PORT = 9
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

    @property
    def stops_session(self) -> bool:
        """A dead engine or a taken port fails every run after it too (unless --keep-going)."""
        return bool(self.engine_down or self.port_in_use)


class RunFailure(Exception):
    """Raised inside the runner when a run cannot measure; execute() returns its `failure`."""

    def __init__(self, reason: str, engine_down: str | None = None, port_in_use: bool = False,
                 setup: bool = False):
        super().__init__(reason)
        self.failure = Failure(reason, engine_down, port_in_use, setup)


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


class Runner:
    def __init__(self, outputs: dict[str, Any], clients: dict[str, docker.DockerClient], plan: Plan,
                 image: str, session: str, networks: dict[str, str], slack_s: float = RUN_SLACK_S,
                 reach_timeout_s: float = REACH_TIMEOUT_S):
        self.nodes = {n["name"]: n for n in outputs["nodes"]}
        self.clients = clients
        self.plan = plan
        self.image = image
        self.session = session
        self.networks = networks  # network kind -> docker network name (overlay, overlay-encrypted)
        self.slack_s = slack_s
        self.reach_timeout_s = reach_timeout_s
        self._seq = 0
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=6)
        self._long_clients: dict[str, docker.DockerClient] = {}
        self._removals: list[concurrent.futures.Future] = []

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

    def _labels(self, run: Run, role: str) -> dict[str, str]:
        return engines.labels(self.session, **{"overlay-bench.run": run.run_id, "overlay-bench.role": role})

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
            **dict.fromkeys(METRIC_FIELDS),
        }
        if skip_reason:
            return RunResult(record)
        t0 = time.monotonic()
        failure = None
        try:
            measured = self._measure(run)
        except RunFailure as exc:
            failure = exc.failure
        except engines.EngineError as exc:
            failure = Failure(str(exc), engine_down=exc.node_down)
        else:
            record.update(status="ok", reason=None, **measured.metrics)
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

    def _measure(self, run: Run) -> Measurement:
        case, plan = run.case, self.plan
        port = ports.server_port(plan.port_base, self._seq)
        self._seq += 1
        target = self._target(case, port)
        made: list[Any] = []
        futs: list[concurrent.futures.Future] = []
        try:
            # The server and an idle client container start at the same time, each through
            # its own node's engine (an overlay attach takes about a second per container);
            # the client tool is then exec'd in the idle container once the server listens.
            # The idle process is `cat` on an open stdin: it waits without a sleep binary.
            try:
                futs = [
                    self._pool.submit(self._start, case.server_node, server_command(case, target.bind, port),
                                      labels=self._labels(run, "server"), **target.server_kwargs),
                    self._pool.submit(self._start, case.client_node, ["cat"], stdin_open=True,
                                      labels=self._labels(run, "client"), **target.client_kwargs),
                ]
                concurrent.futures.wait(futs)
                for fut in futs:
                    if fut.exception() is not None:
                        raise fut.exception()
                server, holder = (f.result() for f in futs)
                self._finish_removals()  # the previous run's containers are gone before this one measures
                self._wait_listening(case, server, port)
                address = self._server_address(case, server)
                if case.network.startswith("overlay"):
                    self._wait_reachable(case, holder, address)
            except (RunFailure, engines.EngineError) as exc:
                raise _set_up_failure(exc) from None
            out, err = self._exec_client(case, holder, tools.get(case.tool).client_argv(case, plan, address, port))
            return self._parse(case, out, err, server)
        finally:
            # Also on Ctrl-C: a container still being created is waited for, then removed.
            for fut in futs:
                with contextlib.suppress(BaseException):
                    made.append(fut.result())
            self._remove_later(made)

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

    def _wait_reachable(self, case: Case, holder, address: str) -> None:
        """From the client's container, wait until the server's overlay address answers.

        A new container's address reaches the other nodes by gossip; until it has, the first
        packets meet "No route to host" or silence (seen: sockperf and iperf 2 UDP failing,
        and now and then 10-15 s on a swarm lab). The probe is a TCP connect to a closed port:
        "Connection refused" proves the path works both ways.
        """
        probe = tools.connect_probe_argv(address, PROBE_PORT)
        api = self._long_client(case.client_node).api
        out = ""

        def refused() -> bool:
            nonlocal out
            with engines.answering(case.client_node):
                exec_id = api.exec_create(holder.id, probe)["Id"]
                out = api.exec_start(exec_id).decode(errors="replace")
            return "refused" in out

        if not poll(refused, self.reach_timeout_s, delay_s=0.01, max_delay_s=0.2, backoff=2):
            last = out.strip().splitlines()[-1] if out.strip() else "no answer"
            raise RunFailure(f"server {address} on {case.network} not reachable from "
                             f"{case.client_node} within {self.reach_timeout_s:g} s ({last})")

    def _exec_client(self, case: Case, holder, command: list[str]) -> tuple[str, str]:
        budget = self.plan.warmup_s + self.plan.duration_s + self.slack_s
        api = self._long_client(case.client_node).api
        try:
            with engines.answering(case.client_node):
                exec_id = api.exec_create(holder.id, command, stdout=True, stderr=True)["Id"]
                out, err = api.exec_start(exec_id, demux=True)
        except engines.EngineDown as exc:
            if exc.timed_out:  # the long client's timeout is the run's budget
                raise RunFailure(f"timed out: no result after {budget:g} s") from None
            raise
        return (out or b"").decode(errors="replace"), (err or b"").decode(errors="replace")

    def _long_client(self, node: str) -> docker.DockerClient:
        """A second client per node whose timeout covers a whole run (the exec blocks until the end)."""
        if node not in self._long_clients:
            budget = self.plan.warmup_s + self.plan.duration_s + self.slack_s
            self._long_clients[node] = engines.connect(self.nodes[node], timeout_s=budget)
        return self._long_clients[node]

    def close(self) -> None:
        self._finish_removals()
        self._pool.shutdown(wait=True)  # in-flight creations end before the cleanup by label
        for c in self._long_clients.values():
            with contextlib.suppress(Exception):
                c.close()

    def _parse(self, case: Case, out: str, err: str, server) -> Measurement:
        tool, plan = tools.get(case.tool), self.plan
        try:
            if not tool.reads_server_output(case):
                return tool.parse(case, plan, out, err)
            last: ToolFailure | None = None

            def parsed() -> Measurement | None:
                # The server prints its last lines when the test ends, a moment after the client.
                nonlocal last
                logs = engines.call(case.server_node, lambda: server.logs(stdout=True, stderr=False))
                try:
                    return tool.parse(case, plan, out, err, logs.decode(errors="replace"))
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
        """Remove the run's containers in the background, while the next run's start.

        Both are harness work between two measurements; doing them side by side saves
        about 0.15 s a run. The next run waits for them before it measures, and close()
        waits for the last ones. A dead engine is left to the session's cleanup by label.
        """
        def rm(ctr):
            with contextlib.suppress(Exception):
                ctr.remove(force=True)
        self._removals += [self._pool.submit(rm, ctr) for ctr in made]

    def _finish_removals(self) -> None:
        pending, self._removals = self._removals, []
        concurrent.futures.wait(pending)


def _set_up_failure(exc: RunFailure | engines.EngineError) -> RunFailure:
    """A failure before anything was measured: unless an engine died or the port is taken,
    a fresh attempt is fair. Seen in classic mode under load: an engine failing to write to
    the key-value store ("failed to update store ... network is unreachable")."""
    if isinstance(exc, RunFailure):
        failure = exc.failure
    else:
        failure = Failure(str(exc), engine_down=exc.node_down)
    return RunFailure(failure.reason, failure.engine_down, failure.port_in_use,
                      setup=failure.setup or not failure.stops_session)


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
