"""bench/results_format.py: the one results format, its page in docs/, and who imports it."""
from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import pytest

from bench import results_format as fmt

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "results-format.md"


def sections(text: str) -> dict[str, str]:
    """Markdown text under each heading (its title without #), up to the next heading."""
    out: dict[str, str] = {}
    title = ""
    for line in text.splitlines():
        match = re.match(r"#+ (.*)", line)
        if match:
            title = match.group(1).strip()
            out[title] = ""
        else:
            out[title] = out.get(title, "") + line + "\n"
    return out


def table(text: str) -> list[list[str]]:
    """The body rows of the first Markdown table in `text`, as lists of cells."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    rows = [line.strip().strip("|").split("|") for line in lines[start + 2:end]]
    return [[cell.strip() for cell in row] for row in rows]


def code(cell: str) -> str:
    match = re.fullmatch(r"`([^`]+)`", cell)
    assert match, f"{cell!r} is not one `name`"
    return match.group(1)


DOC_SECTIONS = sections(DOC.read_text())


def test_the_doc_states_the_current_version_and_its_history():
    assert DOC.read_text().splitlines()[0] == f"# Results format (version {fmt.FORMAT_VERSION})"
    versions = [int(row[0]) for row in table(DOC_SECTIONS["Versions"])]
    assert versions == list(range(1, fmt.FORMAT_VERSION + 1))
    assert fmt.FORMAT_VERSION in fmt.READABLE_VERSIONS


def test_the_doc_lists_the_modules_fields_in_order():
    assert [code(r[0]) for r in table(DOC_SECTIONS["Session fields"])] == list(fmt.METADATA_FIELDS)
    assert [code(r[0]) for r in table(DOC_SECTIONS["Node fields"])] == list(fmt.NODE_FIELDS)
    runs = table(DOC_SECTIONS["Run fields"])
    assert [code(r[0]) for r in runs] == list(fmt.RUN_FIELDS)
    assert {code(r[0]) for r in runs if r[1] == "yes"} == fmt.REQUIRED_FIELDS
    metrics = table(DOC_SECTIONS["Metrics"])
    assert [code(r[0]) for r in metrics] == list(fmt.METRIC_FIELDS)
    assert {code(r[0]) for r in metrics if r[2] == "higher"} == fmt.HIGHER_IS_BETTER
    assert {r[2] for r in metrics} <= {"higher", "lower"}
    assert [code(r[0]) for r in table(DOC_SECTIONS["CPU"])] == list(fmt.CPU_FIELDS)
    assert [code(r[0]) for r in runs if r[2] == "CPU" or r[2].startswith("CPU ")] == list(fmt.CPU_FIELDS)


def test_the_doc_lists_the_modules_values_in_order():
    values = {}
    for line in DOC_SECTIONS["Values"].splitlines():
        match = re.fullmatch(r"- `(\w+)`: (.*?)( \(or null: not measured\))?", line)
        if match:
            values[match.group(1)] = tuple(code(v.strip()) for v in match.group(2).split(","))
            assert bool(match.group(3)) == (match.group(1) in fmt.OPTIONAL_ENUM_FIELDS)
    assert values == fmt.ENUM_FIELDS | fmt.OPTIONAL_ENUM_FIELDS
    tools = {code(r[0]): (code(r[1]), r[2]) for r in table(DOC_SECTIONS["Metrics"].split("compared by one metric")[1])}
    assert tools == fmt.TOOL_METRICS
    assert list(tools) == list(fmt.TOOLS)


def test_the_doc_lists_the_identity():
    listed = re.findall(r"^- `([\w.]+)`$", DOC_SECTIONS["Identity"], re.M)
    assert listed == [f"stack_outputs.{k}" for k in fmt.STACK_IDENTITY_FIELDS] + ["tool_versions"]
    assert (*fmt.STACK_IDENTITY_FIELDS, "tool_versions") == fmt.IDENTITY_FIELDS


def test_a_run_line_round_trips_in_field_order():
    record = {k: None for k in reversed(fmt.RUN_FIELDS)} | {"format_version": 1, "run_id": "a#1", "streams": 2}
    line = fmt.run_line(record)
    assert line.endswith("\n") and line.count("\n") == 1
    assert list(fmt.parse_run_line(line)) == list(fmt.RUN_FIELDS)
    assert fmt.parse_run_line(line) == record
    with pytest.raises(ValueError, match="lacks"):
        fmt.run_line({"run_id": "a#1"})


@pytest.mark.parametrize("line, reason", [
    ('{"run_id": "a#1", "sta', "not JSON (Unterminated string starting at)"),
    ("", "not JSON (Expecting value)"),
    ("[1, 2]", "not a JSON object"),
])
def test_a_damaged_line_says_why(line, reason):
    with pytest.raises(fmt.FormatError) as exc:
        fmt.parse_run_line(line)
    assert str(exc.value) == reason


def test_metadata_has_every_field_in_order():
    given = {k: k for k in reversed(fmt.METADATA_FIELDS) if k != "format_version"}
    doc = fmt.metadata(**given)
    assert list(doc) == list(fmt.METADATA_FIELDS) and doc["format_version"] == fmt.FORMAT_VERSION
    with pytest.raises(ValueError):
        fmt.metadata(session="x")


def test_readers_take_the_versions_they_say():
    assert fmt.READABLE_VERSIONS == (1, 2) and fmt.readable_versions_text() == "1 or 2"


def test_identity_of_a_session():
    meta = {"stack_outputs": {"provider": "local", "mode": "swarm", "link_rate": None, "mtu_bytes": 1500,
                              "stack": "lab"},
            "tool_versions": {"iperf3": "3.12", "iperf2": "2.1.8"}}
    ident = fmt.identity(meta)
    assert list(ident) == list(fmt.IDENTITY_FIELDS)
    assert json.dumps(ident["tool_versions"]) == '{"iperf2": "2.1.8", "iperf3": "3.12"}'


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            # `from bench import results_format` names a module too
            found.update(f"{node.module}.{alias.name}" for alias in node.names if node.module == "bench")
    return found


def test_analysis_imports_nothing_of_bench_but_the_format():
    seen = {}
    for path in sorted((REPO / "analysis").glob("*.py")):
        from_bench = {m for m in imports_of(path) if m == "bench" or m.startswith("bench.")}
        from_bench.discard("bench")  # `from bench import results_format`: the module is what counts
        assert from_bench <= {"bench.results_format"}, f"{path.name} imports {from_bench}"
        seen[path.name] = from_bench
    assert seen["load.py"] == {"bench.results_format"}


def test_the_format_module_needs_only_the_standard_library():
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    assert {m.split(".")[0] for m in imports_of(REPO / "bench" / "results_format.py")} <= stdlib


def test_the_type_tables_cover_every_field():
    assert tuple(fmt.METADATA_TYPES) == fmt.METADATA_FIELDS
    assert tuple(fmt.NODE_TYPES) == fmt.NODE_FIELDS
    assert set(fmt.STRING_FIELDS) | set(fmt.POSITIVE_FIELDS) <= fmt.REQUIRED_FIELDS
    assert set(fmt.POSITIVE_FIELDS) <= set(fmt.NUMERIC_FIELDS)


GOOD_RUN = {
    "format_version": 1, "run_id": "iperf3-tcp-P1-forward-host-n1-n2#1", "case_id": "iperf3-tcp-P1-forward-host-n1-n2",
    "run_index": 1, "network": "host", "tool": "iperf3", "protocol": "tcp", "streams": 1, "direction": "forward",
    "server_node": "n1", "client_node": "n2", "duration_s": 10, "warmup_s": 1, "udp_target_mbps": None,
    "started_at": "2026-11-26T13:05:09Z", "wall_s": 11.3, "status": "ok", "reason": None,
    **dict.fromkeys(fmt.METRIC_FIELDS), "throughput_mbps": 931.8, "retransmits": 0,
}

# Lines with every kind of damage (each alone), and where two checks fail, the first one told.
DAMAGED_RUNS = [
    ('"throughput_mbps": 931.8', '"throughput_mbps": Infinity', "throughput_mbps is not a finite number"),
    ('"throughput_mbps": 931.8', '"throughput_mbps": -Infinity', "throughput_mbps is not a finite number"),
    ('"throughput_mbps": 931.8', '"throughput_mbps": NaN', "throughput_mbps is not a finite number"),
    ('"throughput_mbps": 931.8', '"throughput_mbps": 1e999', "throughput_mbps is not a finite number"),
    ('"throughput_mbps": 931.8', '"throughput_mbps": -0.5', "throughput_mbps is negative"),
    ('"retransmits": 0', '"retransmits": -1', "retransmits is negative"),
    ('"throughput_mbps": 931.8', '"throughput_mbps": "931.8"', "throughput_mbps is not a number"),
    ('"throughput_mbps": 931.8', '"throughput_mbps": true', "throughput_mbps is not a number"),
    ('"throughput_mbps": 931.8', '"throughput_mbps": [931.8]', "throughput_mbps is not a number"),
    ('"wall_s": 11.3', '"wall_s": NaN', "wall_s is not a finite number"),
    ('"streams": 1', '"streams": 0', "streams must be a positive number"),
    ('"streams": 1', '"streams": -2', "streams is negative"),
    ('"duration_s": 10', '"duration_s": Infinity', "duration_s is not a finite number"),
    ('"duration_s": 10', '"duration_s": null', "missing duration_s"),
    ('"run_id": "iperf3-tcp-P1-forward-host-n1-n2#1", ', "", "missing run_id"),
    ('"run_id": "iperf3-tcp-P1-forward-host-n1-n2#1"', '"run_id": 7', "run_id is not a string"),
    ('"server_node": "n1"', '"server_node": ["n1"]', "server_node is not a string"),
    ('"network": "host"', '"network": "weave"', "network is not one of host, overlay, overlay-encrypted, bridge, macvlan, ipvlan"),
    ('"network": "host"', '"network": ["host"]', "network is not one of host, overlay, overlay-encrypted, bridge, macvlan, ipvlan"),
    ('"status": "ok"', '"status": NaN', "status is not one of ok, failed, skipped"),
    ('"format_version": 1', '"format_version": 3', "format_version 3, expected 1 or 2"),
    ('"format_version": 1', '"format_version": true', "format_version True, expected 1 or 2"),
    ('"format_version": 1', '"format_version": "1"', "format_version '1', expected 1 or 2"),
    # Two faults: the checks' order decides.
    ('"network": "host", "tool": "iperf3"', '"network": "x", "tool": "y"', "network is not one of host, overlay, overlay-encrypted, bridge, macvlan, ipvlan"),
    ('"streams": 1, "direction": "forward"', '"streams": -1, "direction": "back"', "direction is not one of forward, reverse"),
]


@pytest.mark.parametrize("old, new, reason", DAMAGED_RUNS)
def test_bench_and_analysis_find_the_same_fault_in_a_run_line(old, new, reason):
    """bench's --resume (one record at a time) and analysis (column by column) apply one rule."""
    from analysis import load

    good = json.dumps(GOOD_RUN)
    assert old in good
    damaged = good.replace(old, new)
    assert fmt.run_problem(fmt.parse_run_line(damaged)) == reason
    # In a file among good lines, on both of analysis's paths: the one-call parse of clean
    # files (a valid JSON array) and the line-by-line one (here forced by a blank line).
    for text in (f"{good}\n{damaged}\n{good}\n", f"{good}\n{damaged}\n\n{good}\n"):
        frame, problems = load.parse_lines(text.encode(), 1, "runs.jsonl")
        assert [str(p) for p in problems] == [f"runs.jsonl:2: skipped: {reason}"]
        assert len(frame) == 2


def test_a_valid_run_line_has_no_problem():
    assert fmt.run_problem(fmt.parse_run_line(json.dumps(GOOD_RUN))) is None
    assert fmt.run_problem(dict(GOOD_RUN, throughput_mbps=0, warmup_s=0.4, retransmits=12)) is None


def test_a_line_that_is_not_utf8_is_damaged_for_both():
    from analysis import load

    good = json.dumps(GOOD_RUN).encode()
    damaged = good.replace(b'"reason": null', b'"reason": "\xc3("')
    with pytest.raises(fmt.FormatError, match=r"not UTF-8 \(byte 0xc3 at column \d+\)"):
        fmt.parse_run_line(damaged)
    frame, problems = load.parse_lines(good + b"\n" + damaged + b"\n" + good + b"\n", 1, "runs.jsonl")
    assert len(problems) == 1 and problems[0].line == 2 and problems[0].reason.startswith("not UTF-8 (byte 0xc3")
    assert len(frame) == 2


def test_non_finite_numbers_are_never_written():
    record = dict(GOOD_RUN, throughput_mbps=float("inf"))
    with pytest.raises(ValueError):
        fmt.run_line(record)


@pytest.mark.parametrize("change, problem", [
    (lambda d: d.pop("plan"), "plan missing"),
    (lambda d: d.update(tool_versions=["iperf3"]), "tool_versions is not an object of tool name to version string"),
    (lambda d: d["nodes"].update(n1=[]), "nodes.n1 is not an object"),
    (lambda d: d["nodes"]["n1"].pop("kernel"), "nodes.n1.kernel missing"),
    (lambda d: d["nodes"]["n1"].update(overlay_mtu_bytes=1450.5), "nodes.n1.overlay_mtu_bytes is not a whole number or null"),
    (lambda d: d.update(plan="2015"), "plan is not an object"),
    (lambda d: d.update(stack_outputs={"stack": "", "provider": "local"}), "stack_outputs.stack is not a non-empty string"),
    (lambda d: d.update(warnings="low MTU"), "warnings is not a list of strings"),
])
def test_metadata_problems(change, problem):
    doc = fmt.metadata(session="s", started_at="t", command_line=["python"], seed=None,
                       stack_outputs={"stack": "lab", "provider": "local"},
                       nodes={"n1": dict.fromkeys(fmt.NODE_FIELDS)}, image={"name": "i", "id": "sha256:x"},
                       tool_versions={"iperf3": "3.12"}, plan={}, cpu=None, warnings=[])
    assert fmt.metadata_problem(doc) is None
    # A session written before `warnings` existed is read as if it had none.
    assert fmt.metadata_problem({k: v for k, v in doc.items() if k != "warnings"}) is None
    change(doc)
    assert fmt.metadata_problem(doc) == problem
    assert fmt.metadata_problem([doc]) == "not a JSON object"
