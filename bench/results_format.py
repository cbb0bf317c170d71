"""The results format (docs/results-format.md), in one module: bench writes it, analysis reads it.

A session directory holds `metadata.json` (written once, before any run) and `runs.jsonl`
(one JSON object per run, appended). This module says which fields each holds, the values
the enumerated ones take, what identifies a session, and how one run line is written and
read. It imports only the standard library, and analysis imports nothing else from bench:
the format is the contract between the two. tests/test_results_format.py holds this module
and docs/results-format.md together.
"""
from __future__ import annotations

import json
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
NETWORKS = ("host", "overlay", "overlay-encrypted", "bridge")
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
                   "stack_outputs", "nodes", "cpu", "image", "tool_versions", "plan")
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
    """metadata.json's document, in METADATA_FIELDS order; every field but the version is given."""
    doc = {"format_version": FORMAT_VERSION, **fields}
    if set(doc) != set(METADATA_FIELDS):
        # A bug in the writer, not a user error.
        raise ValueError(f"metadata fields {sorted(doc)} are not {sorted(METADATA_FIELDS)}")
    return {k: doc[k] for k in METADATA_FIELDS}


def run_line(record: dict[str, Any]) -> str:
    """One runs.jsonl line (with its newline): every run field, in RUN_FIELDS order."""
    missing = [k for k in RUN_FIELDS if k not in record]
    if missing:
        raise ValueError(f"run record lacks {missing}")  # a bug in the writer, not a user error
    return json.dumps({k: record[k] for k in RUN_FIELDS}) + "\n"


def parse_run_line(line: str) -> dict[str, Any]:
    """One runs.jsonl line as a dict; FormatError when it is not a JSON object.

    Its fields are not checked here: analysis checks a whole file's at once.
    """
    try:
        record = json.loads(line)
    except ValueError as exc:
        # A run killed mid-write leaves a truncated last line: the same treatment.
        raise FormatError(f"not JSON ({getattr(exc, 'msg', None) or exc})") from None
    if not isinstance(record, dict):
        raise FormatError("not a JSON object")
    return record
