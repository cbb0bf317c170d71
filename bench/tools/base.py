"""The interface every measuring tool implements: one module per tool in bench/tools/.

A tool says how it is installed (Debian package, binaries for the image), how its version is
read, its server and client command lines, which socket its server's readiness is read from,
how its output becomes the run's metrics, its warm-up rule, the cases it cannot run, and what
a run costs beyond the measured time. The plan, the runner, the image and scripts/setup.sh
loop over the registry (bench/tools/__init__.py) and never name a tool.

Standard library only: scripts/setup.sh asks the registry for the Debian packages with the
system python3, before the project's virtualenv exists.
"""
from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING

from bench import results_format

if TYPE_CHECKING:
    from bench.plan import Case, Plan


class ToolFailure(Exception):
    """The tool ran but did not measure; `reason` says why (from the tool's own words)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Measurement:
    """What a tool's output says: run fields of results_format.METRIC_FIELDS and their values.

    `warmup_s`: seconds the tool itself left out at the start, when it decides (else None).
    """
    metrics: dict[str, float | int | None]
    warmup_s: float | None = None

    def __post_init__(self) -> None:
        unknown = set(self.metrics) - set(results_format.METRIC_FIELDS)
        if unknown:
            raise ValueError(f"not metric fields of the results format: {sorted(unknown)}")  # a bug


class Tool:
    """One measuring tool. A module sets the attributes and implements the marked methods."""

    name: str  # as in runs.jsonl: a key of results_format.TOOL_METRICS
    package: str  # the Debian package that provides `binaries`
    binaries: tuple[str, ...]  # copied into the bench image with their libraries (ldd)
    version_command: str  # a shell command that prints the version on stdout
    version_pattern: str  # a regular expression whose group 1 is the version
    metrics: tuple[str, ...]  # the run fields its measurements can fill
    varies_streams = True  # parallel streams mean something; else every case has streams 1
    varies_direction = True  # reverse means something; else every case is forward
    takes_udp_rate = True  # UDP cases send at --udp-rate (recorded as udp_target_mbps)
    extra_run_s = 0.0  # seconds a run costs beyond warm-up and duration (for the estimate)
    server_output_wait_s = 0.0  # how long the server may take to print what parse() needs

    # ---------------------------------------------------------------- the plan
    def skip_reason(self, case: Case) -> str | None:
        """Why `case` can never run with this tool, whatever the hosts; None when it can."""
        return None

    def warmup_s(self, plan: Plan) -> float:
        """Seconds left out at the start of each run."""
        return plan.warmup_s

    # ---------------------------------------------------------------- a run
    def server_argv(self, case: Case, bind: str, port: int) -> list[str]:
        """The server's command line, on `bind`:`port`: it serves test after test until it is
        removed (every run of its case). Implement."""
        raise NotImplementedError

    def listen_protocol(self, case: Case) -> str:
        """The socket table ("tcp": listening, "udp": bound) that says the server is ready."""
        return case.protocol

    def client_argv(self, case: Case, plan: Plan, target: str, port: int) -> list[str]:
        """The client's command line, against the server at `target`:`port`. Implement."""
        raise NotImplementedError

    def reads_server_output(self, case: Case) -> bool:
        """True when parse() needs the server's stdout (then waited for up to server_output_wait_s);
        the runner gives it only what the server printed during this run."""
        return False

    def parse(self, case: Case, plan: Plan, out: str, err: str, server_out: str = "") -> Measurement:
        """The run's metrics from the client's stdout and stderr (and the server's stdout when
        reads_server_output); ToolFailure, in the tool's words, when it did not measure.
        The tools do not report failure by exit code. Implement."""
        raise NotImplementedError

    def port_in_use(self, server_output: str) -> bool:
        """True when a server's output says it could not bind its port."""
        return bool(_PORT_IN_USE.search(strip_ansi(server_output)))

    # ---------------------------------------------------------------- the image
    def parse_version(self, text: str) -> str | None:
        """The version in `text`, the output of every tool's version_command together."""
        match = re.search(self.version_pattern, text)
        return match.group(1) if match else None


_PORT_IN_USE = re.compile(r"address already in use", re.I)
_ANSI = re.compile(r"\x1b\[[0-9;]*m|\[[0-9;]*m")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def first_lines(text: str, n: int = 2) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return "; ".join(lines[:n])


def seconds(x: float) -> str:
    """A whole number of seconds as a tool's argument: "10", not "10.0"."""
    return str(int(x)) if float(x).is_integer() else str(x)


def per_stream_bps(case: Case, plan: Plan) -> str:
    """Each stream's share of the UDP target rate, in bit/s."""
    return str(int(plan.udp_target_mbps * 1e6 / case.streams))
