"""python -m bench on damaged input files: --outputs, --stack's output, and a session to --resume.

Each case is one line on stderr and its exit code, before any engine is touched (the nodes in
these outputs have no engine: reaching one would say "does not answer" instead). runs.jsonl
is never rewritten: its damaged lines are reported as FILE:LINE and left in place.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from bench import plan as bench_plan
from bench import results_format as fmt
from tests.test_bench_cli import bench, outputs_doc

ENGINE_TOUCHED = "does not answer"


def one_line(res, code: int) -> str:
    assert res.returncode == code, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert ENGINE_TOUCHED not in lines[0]
    return lines[0]


# --- --outputs FILE ---------------------------------------------------------------------------

def write(tmp_path: Path, content: bytes | str) -> Path:
    path = tmp_path / "outputs.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def test_outputs_not_utf8_is_one_line_even_in_a_dry_run(tmp_path):
    """The issue's case: `--outputs /bin/ls --dry-run` was a UnicodeDecodeError and exit 0."""
    line = one_line(bench("--outputs", "/bin/ls", "--dry-run"), 2)
    assert line.startswith("bench: /bin/ls is not UTF-8 text (byte 0x")
    assert line.endswith("pass the output of `pulumi stack output --json`")


def test_outputs_not_json(tmp_path):
    path = write(tmp_path, '{"stack": "lab",')
    line = one_line(bench("--outputs", str(path)), 2)
    assert line.startswith(f"bench: {path} is not JSON (Expecting")


@pytest.mark.parametrize("doc, kind", [([], "array"), ("lab", "string"), (None, "null"), (3, "number")])
def test_outputs_not_an_object(tmp_path, doc, kind):
    path = write(tmp_path, json.dumps(doc))
    line = one_line(bench("--outputs", str(path)), 2)
    assert line == (f"bench: {path} is a JSON {kind}, not an object: pass the output of "
                    "`pulumi stack output --json`")


@pytest.mark.parametrize("stack", ["a/b", "..", "lab\n", "lab x", "-lab", "x" * 101, "läb"])
def test_outputs_with_a_stack_name_that_cannot_name_a_directory(tmp_path, stack):
    path = write(tmp_path, json.dumps(outputs_doc(stack=stack)))
    line = one_line(bench("--outputs", str(path)), 2)
    assert line == (f"bench: stack outputs invalid at stack: {stack!r} cannot name a results directory "
                    "(YYYYmmdd-HHMMSS-STACK): use letters, digits, '-', '_' and '.' (100 at most)")


def test_outputs_with_a_valid_stack_name_pass(tmp_path):
    path = write(tmp_path, json.dumps(outputs_doc(stack="do-prod_2.x")))
    res = bench("--outputs", str(path), "--dry-run")
    assert res.returncode == 0, res.stderr
    assert "stack do-prod_2.x" in res.stdout


# --- --stack NAME: what `pulumi stack output --json` printed ----------------------------------

def fake_pulumi(tmp_path: Path, stdout: bytes) -> dict:
    """A `pulumi` on PATH that prints `stdout` for `stack output`, as a broken stack might."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "out").write_bytes(stdout)
    script = bin_dir / "pulumi"
    script.write_text(f"#!/bin/sh\ncat {bin_dir / 'out'}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


@pytest.mark.parametrize("stdout, message", [
    (b"\xff\xfe{}", "bench: `pulumi stack output --stack lab` is not UTF-8 text (byte 0xff at offset 0)"),
    (b"[]", "bench: `pulumi stack output --stack lab` is a JSON array, not an object"),
    (b"oops", "bench: `pulumi stack output --stack lab` is not JSON (Expecting value"),
    (json.dumps(outputs_doc(stack="a/b")).encode(), "bench: stack outputs invalid at stack: 'a/b' cannot name"),
    (json.dumps(outputs_doc(mtu_bytes="1500")).encode(), "bench: stack outputs invalid at mtu_bytes"),
])
def test_stack_output_that_is_not_valid(tmp_path, stdout, message):
    res = bench("--stack", "lab", env=fake_pulumi(tmp_path, stdout))
    assert one_line(res, 2).startswith(message)


# --- --resume DIR: metadata.json --------------------------------------------------------------

PLAN = bench_plan.make_plan(runs=2, duration_s=1)
NODES = ("lab-node1", "lab-node2")
RUN_IDS = [r.run_id for r in bench_plan.run_order(PLAN, bench_plan.cases(PLAN, list(NODES)))]  # 4 runs


def metadata() -> dict:
    doc = outputs_doc()
    return fmt.metadata(
        session="20261126-130501-lab", started_at="2026-11-26T13:05:01Z",
        command_line=["python", "-m", "bench", "--runs", "2"], seed=None, stack_outputs=doc,
        nodes={n["name"]: {"engine_version": "20.10.24", "kernel": "6.18.0", "os": "Debian GNU/Linux 12",
                           "host_mtu_bytes": 1500, "overlay_mtu_bytes": 1450} for n in doc["nodes"]},
        image={"name": "overlay-bench/tools:1", "id": "sha256:" + "0" * 64},
        tool_versions={"iperf2": "2.1.8"}, plan=PLAN.to_json(), cpu=None)


def run_record(run_id: str, status: str = "ok") -> dict:
    case_id, index = run_id.split("#")
    network = "overlay" if "-overlay-" in case_id else "host"
    return {
        "format_version": 1, "run_id": run_id, "case_id": case_id, "run_index": int(index),
        "network": network, "tool": "iperf2", "protocol": "tcp", "streams": 10, "direction": "forward",
        "server_node": NODES[0], "client_node": NODES[1], "duration_s": 1, "warmup_s": 1,
        "udp_target_mbps": None, "started_at": "2026-11-26T13:05:09Z", "wall_s": 2.3,
        "status": status, "reason": None if status == "ok" else "refused",
        **dict.fromkeys(fmt.METRIC_FIELDS), "throughput_mbps": 931.8 if status == "ok" else None,
    }


def line(rid: str, **changes) -> str:
    return json.dumps({**run_record(rid), **changes})


def session(tmp_path: Path, meta: object = None, runs: bytes | None = None) -> Path:
    path = tmp_path / "results" / "20261126-130501-lab"
    path.mkdir(parents=True)
    (path / "metadata.json").write_text(json.dumps(metadata() if meta is None else meta))
    if runs is not None:
        (path / "runs.jsonl").write_bytes(runs)
    return path


def resume(path: Path, *more: str):
    return bench("--resume", str(path), *more)


def without(key: str) -> dict:
    doc = metadata()
    del doc[key]
    return doc


def changed(**fields) -> dict:
    return {**metadata(), **fields}


def node_changed(**fields) -> dict:
    doc = metadata()
    doc["nodes"]["lab-node1"] = {**doc["nodes"]["lab-node1"], **fields}
    return doc


@pytest.mark.parametrize("meta, problem", [
    ([], "not a JSON object"),
    ("session", "not a JSON object"),
    (without("plan"), "plan missing"),
    (without("nodes"), "nodes missing"),
    (changed(tool_versions=[]), "tool_versions is not an object of tool name to version string"),
    (changed(tool_versions={"iperf2": 2.1}), "tool_versions is not an object of tool name to version string"),
    (changed(nodes={"lab-node1": "up"}), "nodes.lab-node1 is not an object"),
    (node_changed(host_mtu_bytes="1500"), "nodes.lab-node1.host_mtu_bytes is not a whole number or null"),
    (changed(plan=[]), "plan is not an object"),
    (changed(image={"name": "x"}), "image.id is not a string"),
    (changed(command_line="python -m bench"), "command_line is not a list of strings"),
    (changed(seed=True), "seed is not a whole number or null"),
    (changed(stack_outputs={"stack": "lab"}), "stack_outputs.provider is not a non-empty string"),
])
@pytest.mark.parametrize("dry_run", [True, False])
def test_resume_of_metadata_that_is_not_the_format(tmp_path, meta, problem, dry_run):
    path = session(tmp_path, meta)
    res = resume(path, *(["--dry-run"] if dry_run else []))
    assert one_line(res, 2) == (f"bench: {path}/metadata.json: {problem} (see docs/results-format.md): "
                                "this session cannot be resumed; start a new one")


def test_resume_of_metadata_not_utf8_or_not_json(tmp_path):
    path = session(tmp_path)
    (path / "metadata.json").write_bytes(b'{"session": "\xff"}')
    assert one_line(resume(path), 2) == (f"bench: {path}/metadata.json: not UTF-8 text (see "
                                         "docs/results-format.md): this session cannot be resumed; start a new one")
    (path / "metadata.json").write_text('{"session": ')
    assert one_line(resume(path), 2).startswith(f"bench: {path}/metadata.json: not JSON (Expecting value")


def test_resume_of_a_plan_this_bench_cannot_run(tmp_path):
    path = session(tmp_path, changed(plan={**PLAN.to_json(), "runs": "five"}))
    assert one_line(resume(path, "--dry-run"), 2).startswith(
        f"bench: {path}/metadata.json: plan is not one this bench can run (")
    path = session(tmp_path / "2", changed(plan={**PLAN.to_json(), "tools": ["iperf9"]}))
    assert one_line(resume(path, "--dry-run"), 2) == (
        f"bench: {path}/metadata.json: plan is not one this bench can run (--tools: unknown iperf9; "
        "choose from iperf2, iperf3, sockperf): start a new session")


def test_resume_of_stack_outputs_that_break_the_contract(tmp_path):
    outputs = {**outputs_doc(), "nodes": "lab-node1"}
    path = session(tmp_path, changed(stack_outputs=outputs))
    # Even with --outputs given: the stored outputs are what the resume is checked against.
    good = write(tmp_path, json.dumps(outputs_doc()))
    assert one_line(resume(path, "--outputs", str(good)), 2).startswith("bench: stack outputs invalid at nodes")


# --- --resume DIR: runs.jsonl ---------------------------------------------------------------

GOOD = [line(RUN_IDS[0]), line(RUN_IDS[1])]


def reported(path: Path, reasons: dict[int, str]) -> list[str]:
    """What bench says of runs.jsonl's damaged lines (line number: reason), then their count."""
    return [f"bench: {path}/runs.jsonl:{n}: skipped: {reason}" for n, reason in reasons.items()] + [
        f"bench: {len(reasons)} damaged line(s) of {path}/runs.jsonl left in place; their runs count as not done"]


@pytest.mark.parametrize("damaged, reason", [
    (b'{"format_version": 1, "run_id": "\xff\xfe"}', "not UTF-8 (byte 0xff at column 34)"),
    (b"[1, 2, 3]", "not a JSON object"),
    (json.dumps({k: v for k, v in run_record(RUN_IDS[2]).items() if k != "run_id"}).encode(), "missing run_id"),
    # Cut short in the middle of the file, not only at its end (a disk error, a bad copy).
    (line(RUN_IDS[2])[:80].encode(), "not JSON (Unterminated string starting at)"),
    (line(RUN_IDS[2]).replace("931.8", "Infinity").encode(), "throughput_mbps is not a finite number"),
    (line(RUN_IDS[2]).replace("931.8", "NaN").encode(), "throughput_mbps is not a finite number"),
    (line(RUN_IDS[2]).replace("931.8", "-931.8").encode(), "throughput_mbps is negative"),
    (line(RUN_IDS[2], run_id=3).encode(), "run_id is not a string"),
    (line(RUN_IDS[2], network="weave").encode(), "network is not one of host, overlay, overlay-encrypted, bridge, macvlan, ipvlan"),
    (line(RUN_IDS[2], format_version=3).encode(), "format_version 3, expected 1 or 2"),
])
def test_resume_reports_a_damaged_line_leaves_it_and_goes_on(tmp_path, damaged, reason):
    runs = "\n".join([GOOD[0]]).encode() + b"\n" + damaged + b"\n" + GOOD[1].encode() + b"\n"
    path = session(tmp_path, runs=runs)
    res = resume(path, "--dry-run")
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines() == reported(path, {2: reason})
    # The two good lines are done; the damaged line's run is run again with the other one.
    assert res.stdout.splitlines()[-2].startswith("2 runs to do (2 measured)")
    assert (path / "runs.jsonl").read_bytes() == runs  # never rewritten
    # A real resume reads it the same way, before it reaches any engine.
    res = resume(path)
    assert res.returncode == 1
    assert res.stderr.splitlines()[:2] == reported(path, {2: reason})
    assert ENGINE_TOUCHED in res.stderr.splitlines()[-1]
    assert (path / "runs.jsonl").read_bytes() == runs


def test_resume_of_damaged_lines_everywhere(tmp_path):
    runs = (b"\x00\x00\x00\n" + GOOD[0].encode() + b"\n\n" + b"{}\n" + GOOD[1].encode() + b"\n"
            + line(RUN_IDS[2], status="failed").encode() + b"\n" + line(RUN_IDS[3])[:-20].encode())
    path = session(tmp_path, runs=runs)
    res = resume(path, "--dry-run")
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines() == reported(path, {
        1: "not JSON (Expecting value)", 4: "missing client_node", 7: "not JSON (Unterminated string starting at)"})
    # Two done; the failed one and the one cut short are run again.
    assert res.stdout.splitlines()[-2].startswith("2 runs to do")


def test_resume_stops_when_runs_cannot_be_read(tmp_path):
    path = session(tmp_path)
    (path / "runs.jsonl").mkdir()
    assert one_line(resume(path, "--dry-run"), 1) == (
        f"bench: cannot read {path}/runs.jsonl: Is a directory; nothing can be known of what this "
        "session did, so it cannot be resumed")
