"""The results format (docs/results-format.md), in one module: bench writes it, analysis reads it.

A session directory holds `metadata.json` (written once, before any run) and `runs.jsonl`
(one JSON object per run, appended). This module says which fields each holds, the values
the enumerated ones take, what identifies a session, and how one run line is written and
read. It imports only the standard library, and analysis imports nothing else from bench:
the format is the contract between the two. tests/test_results_format.py holds this module
and docs/results-format.md together.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
from typing import Any

# Version history of FORMAT_VERSION:
#   1  first version: metadata.json and runs.jsonl as in docs/results-format.md.
#   2  CPU cost from the kernels' counters: runs gain CPU_FIELDS (cpu_scope ... cpu_cores_per_gbps),
#      metadata gains `cpu` (the kernels measured, their idle baseline). A session of version 1
#      is still read by analysis; bench refuses to resume it (it has no idle baseline).
# A new value of an enumeration (a tool, a network) or a new metric field (absent from older
# lines, read as null) keeps the version. Renaming or removing a field, or changing what a
# value means, makes a new version; READABLE_VERSIONS then says which ones readers still take.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)

# ---------------------------------------------------------------- enumerations
# One order everywhere: the plan's `full` profile, the table's columns, the messages.
NETWORKS = ("host", "overlay", "overlay-encrypted", "bridge", "macvlan", "ipvlan")
PROTOCOLS = ("tcp", "udp")
DIRECTIONS = ("forward", "reverse")  # forward: the client sends to the server
STATUSES = ("ok", "failed", "skipped")
# A run is done when a line with its run_id has one of these; --resume runs the others again.
DONE_STATUSES = ("ok", "skipped")

# What a run measured: null when not measured, never zero.
METRIC_FIELDS = (
    "throughput_mbps", "retransmits", "cpu_client_percent", "cpu_server_percent",
    "udp_loss_percent", "udp_jitter_ms", "latency_p50_us", "latency_p99_us", "latency_p999_us",
)
# The metrics where more is better; for every other one, less is.
HIGHER_IS_BETTER = frozenset({"throughput_mbps"})

# CPU used on the nodes during a throughput run's measured window, from the kernels' own
# counters (/proc/stat): null when not measured (latency tools, failed runs, format 1).
# `cores` is CPU-seconds per second of the window, summed over the kernels measured: with
# `cpu_scope` "machine" both ends share one kernel (lab nodes: the whole machine, counted
# once), with "nodes" each end is its own kernel. total = user + system + softirq + irq;
# steal (time a hypervisor gave to someone else) is reported beside it, not in it.
CPU_SCOPES = ("machine", "nodes")
CPU_PART_FIELDS = ("cpu_user_cores", "cpu_system_cores", "cpu_softirq_cores", "cpu_irq_cores")
CPU_FIELDS = (
    "cpu_scope", "cpu_window_s", *CPU_PART_FIELDS, "cpu_steal_cores", "cpu_total_cores",
    "cpu_server_total_cores", "cpu_client_total_cores", "cpu_cores_per_gbps",
)

# Each tool and the metric its cases are compared by (with that metric's label in tables).
TOOL_METRICS = {
    "iperf2": ("throughput_mbps", "Mbit/s"),
    "iperf3": ("throughput_mbps", "Mbit/s"),
    "sockperf": ("latency_p50_us", "us p50"),
}
TOOLS = tuple(TOOL_METRICS)

# ---------------------------------------------------------------- runs.jsonl
CASE_FIELDS = ("network", "tool", "protocol", "streams", "direction", "server_node", "client_node")
RUN_FIELDS = (
    "format_version", "run_id", "case_id", "run_index", *CASE_FIELDS, "duration_s", "warmup_s",
    "udp_target_mbps", "started_at", "wall_s", "status", "reason", *METRIC_FIELDS, *CPU_FIELDS,
)
# Fields a line must carry to be read at all: what identifies the run, its case and outcome.
REQUIRED_FIELDS = frozenset({
    "format_version", "run_id", "network", "tool", "protocol", "streams", "direction",
    "server_node", "client_node", "duration_s", "status",
})
NUMERIC_FIELDS = ("streams", "duration_s", "warmup_s", "udp_target_mbps", "wall_s", "run_index",
                  *METRIC_FIELDS, *CPU_FIELDS[1:])
ENUM_FIELDS = {"network": NETWORKS, "tool": TOOLS, "protocol": PROTOCOLS,
               "direction": DIRECTIONS, "status": STATUSES}
# Enumerations that may be null (not measured).
OPTIONAL_ENUM_FIELDS = {"cpu_scope": CPU_SCOPES}

# ---------------------------------------------------------------- metadata.json
METADATA_FIELDS = ("format_version", "session", "started_at", "command_line", "seed",
                   "stack_outputs", "nodes", "cpu", "image", "tool_versions", "plan", "warnings")
# What is recorded of each node, under metadata["nodes"][NODE_NAME].
NODE_FIELDS = ("engine_version", "kernel", "os", "host_mtu_bytes", "overlay_mtu_bytes")

# What must match for two sessions of one stack to be one experiment: these keys of
# stack_outputs, and the tool versions. (Two stacks are two setups whatever their keys.)
STACK_IDENTITY_FIELDS = ("provider", "mode", "link_rate", "mtu_bytes")
IDENTITY_FIELDS = (*STACK_IDENTITY_FIELDS, "tool_versions")


class FormatError(ValueError):
    """A line or document that does not follow the format; the message says how."""


def readable_versions_text() -> str:
    """The versions readers take, for messages: "1 or 2"."""
    *rest, last = (str(v) for v in READABLE_VERSIONS)
    return f"{', '.join(rest)} or {last}" if rest else last


def stack_identity(stack_outputs: dict[str, Any]) -> dict[str, Any]:
    return {k: stack_outputs.get(k) for k in STACK_IDENTITY_FIELDS}


def identity(metadata: dict[str, Any]) -> dict[str, Any]:
    """A session's identifying metadata, in IDENTITY_FIELDS order (tool versions sorted)."""
    ident = stack_identity(metadata["stack_outputs"])
    ident["tool_versions"] = dict(sorted((metadata.get("tool_versions") or {}).items()))
    return ident


def metadata(**fields: Any) -> dict[str, Any]:
    """metadata.json's document, in METADATA_FIELDS order; every field but the version is given
    (or, for a field of METADATA_ADDED, its value there)."""
    doc = {"format_version": FORMAT_VERSION, **copy.deepcopy(METADATA_ADDED), **fields}
    if set(doc) != set(METADATA_FIELDS):
        # A bug in the writer, not a user error.
        raise ValueError(f"metadata fields {sorted(doc)} are not {sorted(METADATA_FIELDS)}")
    return {k: doc[k] for k in METADATA_FIELDS}


def run_line(record: dict[str, Any]) -> str:
    """One runs.jsonl line (with its newline): every run field, in RUN_FIELDS order."""
    missing = [k for k in RUN_FIELDS if k not in record]
    if missing:
        raise ValueError(f"run record lacks {missing}")  # a bug in the writer, not a user error
    # allow_nan=False: NaN and Infinity are not JSON (the writer checks its metrics first).
    return json.dumps({k: record[k] for k in RUN_FIELDS}, allow_nan=False) + "\n"


# ---------------------------------------------------------------- what a valid run line is
# bench's --resume and analysis both take a line as a run only when it passes these checks, in
# this order (the first that fails is the reason told): `run_problem` applies them to one
# record; analysis/load.py applies the same, column by column, on a whole file at once, and
# tests/test_results_format.py holds the two together.
#   1. every REQUIRED_FIELDS key present and not null ("missing KEY", keys in sorted order)
#   2. format_version one of READABLE_VERSIONS
#   3. each ENUM_FIELDS value one of its values; each OPTIONAL_ENUM_FIELDS value null or one of its values
#   4. each STRING_FIELDS value a string
#   5. each NUMERIC_FIELDS value, when not null, a number (not a boolean), finite, not negative
#   6. each POSITIVE_FIELDS value above zero
STRING_FIELDS = ("run_id", "server_node", "client_node")
POSITIVE_FIELDS = ("streams", "duration_s")


@dataclasses.dataclass(frozen=True)
class DamagedLine:
    """A runs.jsonl line that is not a valid run: where it is and why. Readers report it as
    `FILE:LINE: skipped: REASON`, leave it in place and never count it."""
    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: skipped: {self.reason}"


class NonFinite:
    """A JSON `NaN`, `Infinity` or `-Infinity` (Python's json reads them; they are not JSON):
    kept as what it was, so that it is told apart from null (not measured) and reported."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def loads(text: str) -> Any:
    """json.loads, with NaN and Infinity read as NonFinite (never as a float)."""
    return json.loads(text, parse_constant=NonFinite)


def parse_run_line(line: str | bytes) -> dict[str, Any]:
    """One runs.jsonl line as a dict; FormatError when it is not UTF-8 or not a JSON object.

    Its fields are not checked here (run_problem does): analysis checks a whole file's at once.
    """
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(f"not UTF-8 (byte 0x{line[exc.start]:02x} at column {exc.start + 1})") from None
    try:
        record = loads(line)
    except ValueError as exc:
        # A run killed mid-write leaves a truncated last line: the same treatment.
        raise FormatError(f"not JSON ({getattr(exc, 'msg', None) or exc})") from None
    if not isinstance(record, dict):
        raise FormatError("not a JSON object")
    return record


def number_problem(value: Any) -> str | None:
    """Why a non-null value of a NUMERIC_FIELDS field is not a valid one ('is not a number',
    'is not a finite number', 'is negative'), or None."""
    if isinstance(value, NonFinite):
        return "is not a finite number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "is not a number"  # JSON true/false would pass as 1/0: a boolean is no measurement
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        finite = False
    if not finite:
        return "is not a finite number"
    if value < 0:
        return "is negative"
    return None


def run_problem(record: dict[str, Any]) -> str | None:
    """Why a parsed runs.jsonl line is not a valid run (the checks above, in order), or None."""
    for key in sorted(REQUIRED_FIELDS):
        if record.get(key) is None:
            return f"missing {key}"
    version = record["format_version"]
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        return f"format_version {version!r}, expected {readable_versions_text()}"
    for key, allowed in ENUM_FIELDS.items():
        if not isinstance(record[key], str) or record[key] not in allowed:
            return f"{key} is not one of {', '.join(allowed)}"
    for key, allowed in OPTIONAL_ENUM_FIELDS.items():
        value = record.get(key)
        if value is not None and (not isinstance(value, str) or value not in allowed):
            return f"{key} is not one of {', '.join(allowed)} (or null)"
    for key in STRING_FIELDS:
        if not isinstance(record[key], str):
            return f"{key} is not a string"
    for key in NUMERIC_FIELDS:
        value = record.get(key)
        problem = None if value is None else number_problem(value)
        if problem:
            return f"{key} {problem}"
    for key in POSITIVE_FIELDS:
        if not record[key] > 0:
            return f"{key} must be a positive number"
    return None


# ---------------------------------------------------------------- what a valid metadata.json is
def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text_or_null(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _whole_or_null(value: Any) -> bool:
    return value is None or _whole(value)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _object(value: Any) -> bool:
    return isinstance(value, dict)


# Each metadata field and node field: what it must be, and how a message says it.
METADATA_TYPES = {
    "format_version": (_whole, "a whole number"),
    "session": (lambda v: isinstance(v, str), "a string"),
    "started_at": (lambda v: isinstance(v, str), "a string"),
    "command_line": (_strings, "a list of strings"),
    "seed": (_whole_or_null, "a whole number or null"),
    "stack_outputs": (_object, "an object (the stack outputs document)"),
    "nodes": (_object, "an object keyed by node name"),
    "cpu": (lambda v: v is None or _object(v), "an object or null"),
    "image": (_object, "an object"),
    "tool_versions": (lambda v: _object(v) and all(isinstance(x, str) for x in v.values()),
                      "an object of tool name to version string"),
    "plan": (_object, "an object"),
    "warnings": (_strings, "a list of strings"),
}
# Metadata fields added after the first version: a session written before one lacks it and
# is read as if it held this value.
METADATA_ADDED = {"warnings": []}
# Fields a version added: an older session lacks them.
METADATA_SINCE = {"cpu": 2}
NODE_TYPES = {
    "engine_version": (_text_or_null, "a string or null"),
    "kernel": (_text_or_null, "a string or null"),
    "os": (_text_or_null, "a string or null"),
    "host_mtu_bytes": (_whole_or_null, "a whole number or null"),
    "overlay_mtu_bytes": (_whole_or_null, "a whole number or null"),
}


class UnreadableVersion(FormatError):
    """A metadata.json of a format version this reader does not take (`version`)."""

    def __init__(self, version: Any):
        super().__init__(f"format_version {version!r}")
        self.version = version


def parse_metadata(data: bytes) -> dict[str, Any]:
    """metadata.json's document; FormatError saying why it is not one a reader can use (not
    UTF-8, not JSON, the fields of metadata_problem), UnreadableVersion for another version."""
    try:
        doc = loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise FormatError("not UTF-8 text") from None
    except ValueError as exc:
        raise FormatError(f"not JSON ({exc})") from None
    if isinstance(doc, dict) and doc.get("format_version") not in READABLE_VERSIONS:
        raise UnreadableVersion(doc.get("format_version"))
    problem = metadata_problem(doc)
    if problem:
        raise FormatError(problem)
    return doc


def metadata_problem(doc: Any) -> str | None:
    """Why a parsed metadata.json is not one this format reads, or None. The format version
    is checked only for its type: each reader says in its own words what to do about another.

    What is checked is what readers use: every field present with its type, each node's
    fields, the image's name and id, and of the stack outputs the stack and provider names
    (the stack outputs document itself is stacks/outputs.py's to check).
    """
    if not isinstance(doc, dict):
        return "not a JSON object"
    version = doc.get("format_version")
    for key, (valid, what) in METADATA_TYPES.items():
        if key not in doc and key in METADATA_ADDED:
            continue
        if key not in doc:
            if _whole(version) and version < METADATA_SINCE.get(key, 1):
                continue
            return f"{key} missing"
        if not valid(doc[key]):
            return f"{key} is not {what}"
    outputs = doc["stack_outputs"]
    for key in ("stack", "provider"):
        if not isinstance(outputs.get(key), str) or not outputs[key]:
            return f"stack_outputs.{key} is not a non-empty string"
    for name, facts in doc["nodes"].items():
        if not isinstance(facts, dict):
            return f"nodes.{name} is not an object"
        for key, (valid, what) in NODE_TYPES.items():
            if key not in facts:
                return f"nodes.{name}.{key} missing"
            if not valid(facts[key]):
                return f"nodes.{name}.{key} is not {what}"
    for key in ("name", "id"):
        if not isinstance(doc["image"].get(key), str):
            return f"image.{key} is not a string"
    return None
