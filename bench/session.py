"""A bench session: check the nodes, prepare, run the plan in order, store every run.

The steps, in order: reach every engine (all must answer before anything runs), put the
image on every node, record the nodes (engine, kernel, MTUs) and the tools while each node's
CPU sampler starts (bench/cpu.py), measure the idle CPU, write metadata.json, probe what
needs probing (the encrypted overlay), then run round after round (with --precision, until
the rule of bench/precision.py stops it). Whatever happens, the session's containers and
networks are removed where the engine still answers.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import signal
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors

from bench import cpu, engines, results_format, store, tools, underlay
from bench import image as bench_image
from bench import plan as bench_plan
from bench import stack as bench_stack
from bench.plan import Case, Plan, Run
from bench.progress import Progress
from bench.runner import Runner, RunResult
from common.errors import UserError
from common.polling import retry

ENCRYPTED_PROBE_TIMEOUT_S = 8
# Long enough for a slow gossip (seen: 10-15 s on a plain overlay), short enough to bound it.
ENCRYPTED_REACH_TIMEOUT_S = 20


class SessionError(UserError):
    """A session cannot start or continue; the message says what to do."""


def check_resumable(meta: dict[str, Any], session: Path) -> None:
    """Refuse to add runs to a session written in another version of the results format."""
    version = meta.get("format_version")
    if version != results_format.FORMAT_VERSION:
        raise SessionError(
            f"{session} was written in results format {version} (no CPU figures, no idle baseline); "
            f"this bench writes version {results_format.FORMAT_VERSION} and does not add runs to it: "
            "start a new session (python -m analysis still reads it)")


# A run whose containers failed to set up (no address yet, not reachable yet) is tried again
# at once, this many times; the failed attempts stay in runs.jsonl with their reason.
SETUP_RETRIES = 2


@dataclasses.dataclass
class Summary:
    session_dir: Path
    cases: int
    runs_total: int
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    already_done: int = 0
    retried: int = 0
    stopped_reason: str | None = None
    interrupted: bool = False
    wall_s: float = 0.0
    # What the reader of the results must know (an overlay MTU below what the link carries).
    warnings: list[str] = dataclasses.field(default_factory=list)
    precision: Any = None  # the precision rule's last decision (bench.precision.Decision)

    def lines(self) -> list[str]:
        out = [f"cases: {self.cases}, runs: {self.runs_total} "
               f"(ok {self.ok}, failed {self.failed}, skipped {self.skipped}"
               + (f", done before {self.already_done}" if self.already_done else "")
               + (f", set-up retries {self.retried}" if self.retried else "") + ")",
               f"wall time: {self.wall_s:.1f} s",
               f"results: {self.session_dir}"]
        if self.precision is not None:
            out.insert(1, self.precision.summary())
        out += [f"warning: {warning}" for warning in self.warnings]
        if self.stopped_reason:
            out.append(f"stopped: {self.stopped_reason}; continue with --resume {self.session_dir}")
        if self.interrupted:
            out.append(f"interrupted: continue with --resume {self.session_dir}")
        return out


def static_skip(case: Case, outputs: dict[str, Any]) -> str | None:
    """Why a case cannot run, known from the plan and the outputs alone."""
    # The stack says what its platform cannot carry (outputs' unsupported_networks).
    stack_says = (outputs.get("unsupported_networks") or {}).get(case.network)
    if stack_says:
        return f"unsupported on stack {outputs['stack']} ({outputs['provider']}): {stack_says}"
    if case.network == "overlay-encrypted" and outputs["mode"] == "classic":
        return ("encrypted overlay is unsupported in classic mode: the cluster-store overlay "
                "driver has no encryption (swarm mode only)")
    return case.static_skip_reason()


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM is handled like Ctrl-C: stop, clean up, keep what was stored."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


class Session:
    def __init__(self, outputs: dict[str, Any], plan: Plan, results: Path, *, image_name: str,
                 use_builtin_image: bool, keep_going: bool, command_line: list[str],
                 resume_dir: Path | None = None, progress: Progress | None = None):
        self.outputs = outputs
        self.plan = plan
        self.results = results
        self.image_name = image_name
        self.use_builtin_image = use_builtin_image
        self.keep_going = keep_going
        self.command_line = command_line
        self.resume_dir = resume_dir
        self.progress = progress or Progress(enabled=False)
        self.clients: dict[str, docker.DockerClient] = {}
        # The name the session's containers and networks are labelled with.
        self.session_id = resume_dir.name if resume_dir else None
        self._started: dt.datetime | None = None
        self.created_networks: list[tuple[str, Any]] = []
        self.samplers: cpu.Samplers | None = None
        self.runner: Runner | None = None
        self._writer = contextlib.ExitStack()  # the new session's lock, held until the end

    # ------------------------------------------------------------------ steps
    def _step(self, text: str):
        return self.progress.step(text)

    def run(self) -> Summary:
        t0 = time.monotonic()
        node_names = [n["name"] for n in self.outputs["nodes"]]
        all_cases = bench_plan.cases(self.plan, node_names)
        ports = bench_plan.server_ports(self.plan, all_cases)
        with self._step("Reaching the engines"):
            self.clients = engines.connect_all(self.outputs["nodes"])
        try:
            with sigterm_as_interrupt(), engines.answering(doing="while preparing"):
                if self.resume_dir:
                    # What an earlier process of this session left (killed before its cleanup):
                    # this process is the session's one writer (bench/__main__.py took
                    # store.writer), so none of it belongs to a process still running it.
                    engines.remove_session_containers(self.clients, self.session_id)
                return self._run(all_cases, ports, t0)
        finally:
            try:
                self._cleanup()
            finally:
                self._writer.close()

    def _run(self, all_cases: list[Case], ports: dict, t0: float) -> Summary:
        tarball = None
        if self.use_builtin_image:
            with self._step("Building the bench image"):
                tarball = bench_image.build_tarball()
        with self._step(f"Putting the image on {len(self.clients)} nodes"):
            image_id = engines.ensure_image(self.clients, self.image_name, tarball)
        if not self.resume_dir:
            # Labels need the session's name before its directory exists: the directory is
            # made only once the nodes answered for their facts (no empty sessions on failure),
            # with the same time in its name. The labels keep this name even if the directory
            # gets a suffix: the cleanup finds the containers by it.
            self._started = dt.datetime.now(dt.UTC)
            self.session_id = store.session_name(self.outputs["stack"], self._started)
        # Valid lines only: a damaged line's run is not done (bench/__main__.py told of it).
        earlier = store.read_runs(self.resume_dir)[0] if self.resume_dir else []
        done = store.done_ids(earlier)
        first = list(bench_plan.run_order(self.plan, all_cases))
        todo = [r for r in first if r.run_id not in done]
        networks = {"overlay": self.outputs["overlay_network"]}
        runner = self.runner = Runner(self.outputs, self.clients, self.plan, self.image_name, self.session_id,
                                      networks, ports)
        if any("throughput_mbps" in tools.get(c.tool).metrics for c in all_cases):
            self.samplers = runner.samplers = cpu.Samplers(self.clients, self.image_name, self.session_id)
        with (self._step("Recording the nodes (engine, kernel, MTUs) and tools; starting the servers"),
              concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool):
            # The CPU samplers and the servers (with each network's client container)
            # start while the node facts are read: all of it is waiting on engines.
            starting = [pool.submit(self.samplers.start)] if self.samplers else []
            starting.append(pool.submit(runner.prepare, list(dict.fromkeys(
                r.case for r in todo if static_skip(r.case, self.outputs) is None))))
            facts = self._node_facts(any(n.startswith("overlay") for n in self.plan.networks))
            for fut in starting:
                fut.result()
        if self.samplers and not self.resume_dir:
            with self._step(f"Measuring the idle CPU ({cpu.IDLE_BASELINE_S:g} s, nothing running)"):
                self.samplers.measure_idle()
        meta = self._metadata(image_id, facts, self.samplers.metadata() if self.samplers else None)
        session_dir = self._session_dir()
        meta["session"] = session_dir.name
        if self.resume_dir:
            self._check_resume(meta)
        else:
            store.write_metadata(session_dir, meta)
        log = store.RunLog(session_dir)  # runs.jsonl exists from the start, even if empty
        summary = Summary(session_dir, len(all_cases), len(first),
                          already_done=len(done & {r.run_id for r in first}), warnings=meta["warnings"])
        for warning in meta["warnings"]:
            self.progress.note(f"warning: {warning}")
        dynamic_skip: dict[str, str] = {}
        if any(c.network == "overlay-encrypted" and static_skip(c, self.outputs) is None for c in all_cases):
            with self._step("Probing the encrypted overlay"):
                net, reason = self._encrypted_network()
            if net:
                networks["overlay-encrypted"] = net
            else:
                dynamic_skip["overlay-encrypted"] = reason
        for kind in underlay.NETWORKS:
            if any(c.network == kind and static_skip(c, self.outputs) is None for c in all_cases):
                with self._step(f"Probing {kind} on every node"):
                    made, reason = underlay.prepare(kind, self.outputs, self.clients, self.image_name,
                                                    self.session_id)
                self.created_networks += made
                if reason:
                    dynamic_skip[kind] = reason
                    self.progress.note(f"{kind}: skipped, {reason}")
                else:
                    networks[kind] = underlay.network_name(kind, self.session_id)
        rounds = _Rounds(self, runner, log, summary, done, earlier, dynamic_skip)
        try:
            self.progress.start(len(todo), bench_plan.estimate_s(self.plan, todo))
            for k, round_ in enumerate(bench_plan.rounds(self.plan, all_cases), 1):
                if not rounds.run(k, round_):
                    break
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            self.progress.stop()
            log.close()
            summary.wall_s = time.monotonic() - t0
        return summary

    def _execute(self, runner: Runner, log: store.RunLog, summary: Summary, run: Run,
                 skip_reason: str | None) -> list[RunResult]:
        """Run it; a set-up failure or a dead server is tried again at once (SETUP_RETRIES).
        Every attempt is stored, and returned."""
        attempts: list[RunResult] = []

        def attempt() -> RunResult:
            result = runner.execute(run, skip_reason=skip_reason)
            log.append(result.record)  # every attempt is on disk, the failed ones too
            attempts.append(result)
            return result

        def before_again(result: RunResult) -> None:
            summary.retried += 1
            self.progress.note(f"{run.run_id}: {result.failure.reason}; trying again")

        retry(attempt, tries=1 + SETUP_RETRIES, before_again=before_again,
              again_if=lambda result: result.failure is not None and result.failure.try_again)
        return attempts

    # ------------------------------------------------------------------ session directory
    def _session_dir(self) -> Path:
        if self.resume_dir:
            return self.resume_dir
        path = store.new_session_dir(self.results, self.outputs["stack"], self._started)
        # Ours from its creation: a --resume of it while this process runs is refused.
        self._writer.enter_context(store.writer(path))
        return path

    def _node_facts(self, with_overlay: bool) -> dict[str, dict[str, Any]]:
        """Each node's facts; the overlay's MTU only when the plan measures an overlay."""
        overlay = self.outputs["overlay_network"] if with_overlay else None
        subnet = engines.overlay_subnet(self.clients, overlay) if overlay else None
        by_name = {n["name"]: n for n in self.outputs["nodes"]}

        def facts(name: str) -> dict[str, Any]:
            with engines.answering(name, doing="while its facts were recorded"):
                return engines.node_facts(self.clients[name], by_name[name], self.image_name, overlay,
                                          subnet, self.session_id)

        with concurrent.futures.ThreadPoolExecutor(max_workers=len(self.clients)) as pool:
            return dict(zip(self.clients, pool.map(facts, self.clients)))

    def _metadata(self, image_id: str, nodes: dict[str, dict[str, Any]], cpu_doc: dict[str, Any] | None
                  ) -> dict[str, Any]:
        # The same image everywhere, so the same tools: checked, then stored once.
        versions = [facts.pop("tool_versions") for facts in nodes.values()]
        if any(v != versions[0] for v in versions):
            raise SessionError(f"the tools differ between nodes ({versions}): the image is not the same")
        tool_versions = versions[0]
        return results_format.metadata(
            session=self.session_id,
            started_at=store.utc_now(),
            command_line=self.command_line,
            seed=self.plan.seed if self.plan.shuffle else None,
            stack_outputs=bench_stack.without_secrets(self.outputs),
            nodes=nodes,
            cpu=cpu_doc,
            image={"name": self.image_name, "id": image_id},
            tool_versions=tool_versions,
            plan=self.plan.to_json(),
            warnings=engines.mtu_warnings(nodes),
        )

    def _check_resume(self, now: dict[str, Any]) -> None:
        """Refuse to add runs to a session measured on something else."""
        then = store.read_metadata(self.resume_dir)
        diffs = []
        if then["plan"] != now["plan"]:
            diffs.append("the plan")
        stacks = [(results_format.stack_identity(doc["stack_outputs"]),
                   [n["name"] for n in doc["stack_outputs"]["nodes"]]) for doc in (then, now)]
        if stacks[0] != stacks[1]:
            diffs.append("the stack (provider, mode, link rate, MTU or nodes)")
        if then["image"]["id"] != now["image"]["id"]:
            diffs.append("the bench image (tools rebuilt or upgraded)")
        if then["tool_versions"] != now["tool_versions"]:
            diffs.append("the tool versions")
        keys = ("engine_version", "kernel", "host_mtu_bytes", "overlay_mtu_bytes")
        if {n: {k: f.get(k) for k in keys} for n, f in then["nodes"].items()} != \
                {n: {k: f.get(k) for k in keys} for n, f in now["nodes"].items()}:
            diffs.append("the nodes (engine, kernel or MTUs)")
        if diffs:
            raise SessionError(f"cannot resume {self.resume_dir}: {', '.join(diffs)} changed since it "
                               "started; start a new session instead")

    # ------------------------------------------------------------------ encrypted overlay
    def _encrypted_network(self) -> tuple[str | None, str | None]:
        """Create an encrypted attachable overlay and check it carries traffic, briefly."""
        manager = next(n["name"] for n in self.outputs["nodes"] if n["role"] == "manager")
        name = f"ob-enc-{self.session_id}"[:60]
        try:
            net = self.clients[manager].networks.create(
                name, driver="overlay", attachable=True, options={"encrypted": "true"},
                labels=engines.labels(self.session_id))
        except docker.errors.APIError as exc:
            return None, f"encrypted overlay cannot be created on this cluster: {exc.explanation or exc}"
        self.created_networks.append((manager, net))
        server_node, client_node = bench_plan.node_pairs(
            [n["name"] for n in self.outputs["nodes"]], self.plan.pairs)[0]
        probe = Case(tools.PROBE_TOOL, "tcp", 1, "forward", "overlay-encrypted", server_node, client_node)
        probe_plan = dataclasses.replace(self.plan, duration_s=1, warmup_s=0, runs=1)
        # The run machinery itself, with a short budget: on a kernel without ESP the client
        # hangs silently (seen: dockerd logs that it cannot add the ESP state, and nothing
        # arrives), so the probe must end on its own.
        runner = Runner(self.outputs, self.clients, probe_plan, self.image_name, self.session_id,
                        {"overlay-encrypted": name}, bench_plan.server_ports(probe_plan, [probe]),
                        slack_s=ENCRYPTED_PROBE_TIMEOUT_S,
                        reach_timeout_s=ENCRYPTED_REACH_TIMEOUT_S)
        try:
            result = runner.execute(Run(probe, 0))
        finally:
            runner.close()
        if result.failure is None:
            return name, None
        return None, (f"encrypted overlay carries no traffic between {server_node} and {client_node} "
                      f"(probe: {result.failure.reason}); this host's kernel may lack ESP (INET_ESP)")

    # ------------------------------------------------------------------ cleanup
    def _cleanup(self) -> None:
        if self.runner is not None:
            self.runner.close(remove=False)  # removed below with the rest, by label
        if self.samplers is not None:
            self.samplers.close()
        engines.remove_own_containers(self.clients)
        for _node, net in self.created_networks:
            with contextlib.suppress(Exception):
                net.remove()
        for c in self.clients.values():
            with contextlib.suppress(Exception):
                c.close()


class _Rounds:
    """The session's rounds: each round's runs not done yet, in order, then, with --precision,
    the stopping rule on the runs of the rounds so far."""

    def __init__(self, session: Session, runner: Runner, log: store.RunLog, summary: Summary,
                 done: set[str], earlier: list[dict[str, Any]], dynamic_skip: dict[str, str]):
        self.session = session
        self.runner = runner
        self.log = log
        self.summary = summary
        self.done = done
        self.records = list(earlier)  # every attempt stored, for the rule
        self.dynamic_skip = dynamic_skip

    def run(self, k: int, round_: list[Run]) -> bool:
        """Run round k; False when the session stops after it (a failure, or the rule)."""
        s, plan, summary = self.session, self.session.plan, self.summary
        todo = [r for r in round_ if r.run_id not in self.done]
        if k > plan.runs:  # a round the precision rule asked for
            summary.runs_total += len(round_)
            if todo:
                s.progress.more(len(todo), bench_plan.estimate_s(plan, todo))
        for run in todo:
            reason = static_skip(run.case, s.outputs) or self.dynamic_skip.get(run.case.network)
            s.progress.begin(run)
            attempts = s._execute(self.runner, self.log, summary, run, reason)
            self.records += [a.record for a in attempts]
            result = attempts[-1]
            status = result.record["status"]
            summary.ok += status == "ok"
            summary.failed += status == "failed"
            summary.skipped += status == "skipped"
            s.progress.done(run, result.record, 0 if reason else bench_plan.run_cost_s(plan, run.case))
            if result.failure and result.failure.stops_session and not s.keep_going:
                summary.stopped_reason = f"{run.run_id} failed: {result.failure.reason}"
                return False
        if plan.precision_points is None or k < plan.runs:
            return True
        from bench import precision  # numpy and scipy: only for a precision session

        # The runs of rounds 1..k only: a resumed session makes the same decisions again.
        so_far = [r for r in self.records if (r.get("run_index") or 0) <= k]
        decision = precision.decide(precision.comparisons(so_far), target_points=plan.precision_points,
                                    rounds_done=k, min_rounds=plan.runs, max_rounds=plan.max_rounds)
        if todo or decision.stop:
            precision.record(summary.session_dir, decision)
            s.progress.note(decision.summary())
        summary.precision = decision
        return not decision.stop
