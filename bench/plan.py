"""The measurement matrix as data: a Plan (what to vary), its cases, and the run order.

A plan is a small declarative description (stored in metadata.json as is); cases are its
cross product, minus combinations that mean nothing (a tool without streams or direction,
bench/tools/). Runs are interleaved, round k of every case before round k+1, so that a
drift of the machine (heat, a noisy neighbour) hits every case alike.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import random
from collections.abc import Iterator
from typing import Any

from bench import ports, tools
from bench.results_format import DIRECTIONS, NETWORKS, PROTOCOLS, TOOLS
from common.errors import UsageError

PAIRS = ("first", "all", "ring")

# Seconds a run costs beyond its measured time (the client's exec, the tool's own start and
# end, parsing, storing); used only for the --dry-run estimate. Measured:
# benchmarks/harness_overhead.py. Servers start once per case (SERVER_START_S).
RUN_OVERHEAD_S = 0.2
SERVER_START_S = 1.0
# With --precision and no --runs: rounds before the stopping rule is first applied (netperf's
# -i 30,3 minimum), and the most rounds with no --max-runs (its maximum).
PRECISION_MIN_RUNS = 3
PRECISION_MAX_RUNS = 30


class PlanError(UsageError):
    """A matrix option that makes no sense; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Plan:
    profile: str = "2015"
    networks: tuple[str, ...] = ("host", "overlay")
    tools: tuple[str, ...] = ("iperf2",)
    protocols: tuple[str, ...] = ("tcp",)
    streams: tuple[int, ...] = (10,)
    directions: tuple[str, ...] = ("forward",)
    runs: int = 5
    duration_s: int = 10
    warmup_s: int = 1
    pairs: str = "first"
    # Total UDP target rate over all streams (each stream gets its share).
    udp_target_mbps: float = 500
    shuffle: bool = False
    seed: int | None = None
    port_base: int = ports.DEFAULT_BASE
    # Precision on demand: rounds are added after `runs` until every network's interval
    # against host has a half-width of at most `precision_points` percentage points, or
    # `max_runs` rounds are done (bench/precision.py). None: exactly `runs` rounds.
    precision_points: float | None = None
    max_runs: int | None = None

    def __post_init__(self) -> None:
        for field, allowed in (("networks", NETWORKS), ("tools", TOOLS),
                               ("protocols", PROTOCOLS), ("directions", DIRECTIONS)):
            values = getattr(self, field)
            if not values:
                raise PlanError(f"--{field} is empty: give at least one of {', '.join(allowed)}")
            bad = [v for v in values if v not in allowed]
            if bad:
                raise PlanError(f"--{field}: unknown {', '.join(bad)}; choose from {', '.join(allowed)}")
        if not self.streams or any(s < 1 or s > 128 for s in self.streams):
            raise PlanError("--streams: give numbers of parallel streams between 1 and 128")
        if self.runs < 1:
            raise PlanError("--runs must be at least 1")
        # Whole seconds: iperf3 -t/-O take integers and iperf 2 reports per second.
        if int(self.duration_s) != self.duration_s or self.duration_s < 1:
            raise PlanError("--duration must be a whole number of seconds, at least 1")
        if int(self.warmup_s) != self.warmup_s or self.warmup_s < 0:
            raise PlanError("--warmup must be a whole number of seconds, 0 or more")
        if self.pairs not in PAIRS:
            raise PlanError(f"--pairs: choose from {', '.join(PAIRS)}")
        if self.udp_target_mbps <= 0:
            raise PlanError("--udp-rate must be positive (Mbit/s)")
        problem = ports.base_problem(self.port_base)
        if problem:
            raise PlanError(problem)
        if self.max_runs is not None and self.precision_points is None:
            raise PlanError("--max-runs only makes sense with --precision")
        if self.precision_points is not None:
            if not (math.isfinite(self.precision_points) and self.precision_points > 0):
                raise PlanError("--precision must be a positive number of percentage points, e.g. 1")
            if "host" not in self.networks or len(self.networks) < 2:
                raise PlanError("--precision bounds each network's interval against host: give host "
                                "and at least one other network in --networks")
            if self.max_runs is None or self.max_runs < self.runs:
                raise PlanError(f"--max-runs must be at least --runs ({self.runs})")

    @property
    def max_rounds(self) -> int:
        """The most rounds this plan may run: `runs`, or `max_runs` with --precision."""
        return self.max_runs if self.precision_points is not None and self.max_runs else self.runs

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Plan:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in doc.items() if k in fields})


PROFILES: dict[str, dict[str, Any]] = {
    # The 2015 post: iperf (2) -P 10, TCP, host vs overlay, five runs.
    "2015": {},
    "full": dict(networks=NETWORKS, tools=TOOLS, protocols=PROTOCOLS, streams=(1, 10),
                 directions=DIRECTIONS),
}


def make_plan(profile: str = "2015", **overrides: Any) -> Plan:
    if profile not in PROFILES:
        raise PlanError(f"--profile: unknown {profile!r}; choose from {', '.join(PROFILES)}")
    values = dict(PROFILES[profile], profile=profile)
    values.update({k: v for k, v in overrides.items() if v is not None})
    if values.get("precision_points") is not None:
        values.setdefault("runs", PRECISION_MIN_RUNS)
        values.setdefault("max_runs", max(PRECISION_MAX_RUNS, values["runs"]))
    return Plan(**values)


@dataclasses.dataclass(frozen=True)
class Case:
    tool: str
    protocol: str
    streams: int
    direction: str
    network: str
    server_node: str
    client_node: str

    @property
    def case_id(self) -> str:
        return (f"{self.tool}-{self.protocol}-P{self.streams}-{self.direction}-{self.network}-"
                f"{self.server_node}-{self.client_node}")

    def static_skip_reason(self) -> str | None:
        """Why this case can never run, whatever the hosts; None when it can."""
        return tools.get(self.tool).skip_reason(self)


@dataclasses.dataclass(frozen=True)
class Run:
    case: Case
    run_index: int  # 1-based

    @property
    def run_id(self) -> str:
        return f"{self.case.case_id}#{self.run_index}"


def node_pairs(node_names: list[str], pairs: str) -> list[tuple[str, str]]:
    """(server, client) pairs: the first two nodes, every pair, or each node to the next."""
    if len(node_names) < 2:
        raise PlanError("the stack has fewer than two nodes: nothing to measure between")
    if pairs == "first":
        return [(node_names[0], node_names[1])]
    if pairs == "all":
        return list(itertools.combinations(node_names, 2))
    if len(node_names) == 2:
        return [(node_names[0], node_names[1])]
    return [(node_names[i], node_names[(i + 1) % len(node_names)]) for i in range(len(node_names))]


def cases(plan: Plan, node_names: list[str]) -> list[Case]:
    out: list[Case] = []
    seen = set()
    for (server, client), network, tool, protocol, streams, direction in itertools.product(
            node_pairs(node_names, plan.pairs), plan.networks, plan.tools, plan.protocols,
            plan.streams, plan.directions):
        # A tool without streams or direction (one connection, the same both ways) has one
        # case where the matrix would give several.
        if not tools.get(tool).varies_streams:
            streams = 1
        if not tools.get(tool).varies_direction:
            direction = "forward"
        case = Case(tool, protocol, streams, direction, network, server, client)
        if case not in seen:
            seen.add(case)
            out.append(case)
    return out


def rounds(plan: Plan, all_cases: list[Case]) -> Iterator[list[Run]]:
    """Round k of every case before round k + 1, up to the plan's most rounds; within a round,
    shuffled when asked (the same order whenever it is generated again, as on --resume)."""
    rng = random.Random(plan.seed)
    for k in range(1, plan.max_rounds + 1):
        round_ = list(all_cases)
        if plan.shuffle:
            rng.shuffle(round_)
        yield [Run(case, k) for case in round_]


def run_order(plan: Plan, all_cases: list[Case]) -> Iterator[Run]:
    """The runs of the plan's first `runs` rounds, in order (rounds a precision rule may add
    come after: see rounds())."""
    for k, round_ in enumerate(rounds(plan, all_cases), 1):
        if k > plan.runs:
            return
        yield from round_


# ---------------------------------------------------------------- servers and their ports
ServerKey = tuple[str, str, str, str, str]


def server_key(case: Case) -> ServerKey:
    """A server serves every run of the cases with this key: streams and direction are the
    client's choice, so they share one server."""
    return (case.network, case.tool, case.protocol, case.server_node, case.client_node)


def server_ports(plan: Plan, all_cases: list[Case]) -> dict[ServerKey, int]:
    """Each server of the plan and its port (bench/ports.py), in the order of the cases."""
    keys = list(dict.fromkeys(server_key(c) for c in all_cases))
    problem = ports.servers_problem(plan.port_base, len(keys)) if keys else None
    if problem:
        raise PlanError(problem)
    return {key: ports.server_port(plan.port_base, i) for i, key in enumerate(keys)}


def warmup_s(plan: Plan, case: Case) -> float:
    """Seconds left out at the start of a run of `case`: the plan's, or the tool's own."""
    return tools.get(case.tool).warmup_s(plan)


def measured_s(plan: Plan, case: Case) -> float:
    return plan.duration_s + warmup_s(plan, case)


def estimate_s(plan: Plan, runs: list[Run]) -> float:
    """Seconds the runs take: each run's cost, and one server start per server they need."""
    measured = [r for r in runs if r.case.static_skip_reason() is None]
    servers = {server_key(r.case) for r in measured}
    return sum(run_cost_s(plan, r.case) for r in measured) + SERVER_START_S * len(servers)


def run_cost_s(plan: Plan, case: Case) -> float:
    """Estimated wall time of one run of `case`."""
    return measured_s(plan, case) + tools.get(case.tool).extra_run_s + RUN_OVERHEAD_S
