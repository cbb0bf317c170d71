"""The lab touches only what it made: marks and ledger, one writer at a time, signals.

Real objects, as root: look-alikes (namespaces, veths, a bridge, processes) are made here
with the lab's names but without its marks, and must survive every command of that lab.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.status import Status
from stacks.local import lab, ownership
from tests import names, residue
from tests.conftest import REPO, require_root
from tests.test_lab import lab_cli, one_error_line

UP_TIMEOUT_S = 120


# --- the ownership module on its own (no root needed) ---------------------------------------

def test_state_directory_owner(tmp_path):
    directory = tmp_path / "lab1"
    assert ownership.dir_owner(directory, "lab1") == "absent"
    directory.mkdir()
    assert ownership.dir_owner(directory, "lab1") == "empty", "an empty directory loses nothing"
    ownership.mark_dir(directory, "lab1")
    assert (directory / ownership.MARKER).read_text() == "lab1\n"
    assert ownership.dir_owner(directory, "lab1") == "ours"
    assert ownership.dir_owner(directory, "lab2") == "empty", "a marker alone holds nothing of lab2's"
    (directory / "data").write_text("x")
    assert ownership.dir_owner(directory, "lab2") == "foreign"
    other = tmp_path / "someone"
    other.mkdir()
    (other / "file").write_text("theirs")
    assert ownership.dir_owner(other, "someone") == "foreign"
    with pytest.raises(FileExistsError):
        ownership.mark_dir(other, "someone")
    assert not (other / ownership.MARKER).exists()


def test_ledger_skips_a_torn_line_and_keeps_kinds_apart(tmp_path):
    book = ownership.Ledger(tmp_path / "ledger.jsonl")
    assert book.entries("link") == []
    book.record("link", name="ob-a", ifindex=5)
    book.record("netns", name="ob-a-n1", dev=4, ino=9)
    with open(book.path, "a") as out:
        out.write('{"kind": "link", "name": "ob-a-1", "ifin')  # a crash in the middle of a write
    book.record("link", name="ob-a-2", ifindex=7)
    assert book.entries("link") == [{"kind": "link", "name": "ob-a", "ifindex": 5}]
    # The torn line swallowed the next one's start: a line is whole or lost, never misread.
    assert book.entries("netns") == [{"kind": "netns", "name": "ob-a-n1", "dev": 4, "ino": 9}]


# --- look-alikes: real objects with the lab's names, not made by it --------------------------

@contextlib.contextmanager
def look_alikes(name: str, netns: list[str], links: list[str], bridges: list[str] = ()) -> Iterator[dict]:
    """Namespaces (each with a `sleep` inside), veths, bridges and a process whose command
    line mentions the lab's run directory; all removed afterwards, by this test."""
    made: dict[str, list] = {"netns": [], "links": [], "processes": []}
    try:
        for ns in netns:
            subprocess.run(["ip", "netns", "add", ns], check=True)
            made["netns"].append(ns)
            made["processes"].append(subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "600"]))
        for link in links:
            subprocess.run(["ip", "link", "add", link, "type", "veth", "peer", "name",
                            f"p{link[-12:]}"], check=True)
            made["links"].append(link)
        for bridge in bridges:
            subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
            made["links"].append(bridge)
        # `; :` keeps the shell (and its command line) from being replaced by `sleep`.
        made["processes"].append(subprocess.Popen(["sh", "-c", "sleep 600; :", f"{lab.run_dir(name)}/n1/dockerd"]))
        time.sleep(0.2)  # let `ip netns exec` enter its namespace
        yield made
    finally:
        for proc in made["processes"]:
            proc.kill()
            proc.wait()
        for ns in made["netns"]:
            subprocess.run(["ip", "netns", "delete", ns])
        for link in made["links"]:
            subprocess.run(["ip", "link", "delete", link])


def assert_alive(made: dict) -> None:
    for ns in made["netns"]:
        assert subprocess.run(["ip", "netns", "pids", ns], capture_output=True).returncode == 0, f"{ns} removed"
    for link in made["links"]:
        assert subprocess.run(["ip", "link", "show", link], capture_output=True).returncode == 0, f"{link} removed"
    for proc in made["processes"]:
        assert proc.poll() is None, f"look-alike process {proc.args} was killed"


def assert_reported(stderr: str, made: dict) -> None:
    for ns in made["netns"]:
        assert f"`ip netns delete {ns}`" in stderr, stderr
    for link in made["links"]:
        assert f"`ip link delete {link}`" in stderr, stderr
    for proc in made["processes"]:
        assert f"`kill {proc.pid}`" in stderr, stderr
    assert all(line.startswith("note: left alone") for line in stderr.splitlines()
               if "overlay-bench for lab" in line), stderr


def test_look_alikes_survive_up_residue_and_down_and_are_reported():
    require_root()
    name = names.lab_name("own")
    made_names = dict(netns=[f"ob-{name}-n7", f"ob-{name}-mine"], links=[f"ob-{name}-9"],
                      bridges=[f"ob-{name}-br"])
    with look_alikes(name, **made_names) as made:
        assert lab.residue(name) == {}
        try:
            up = lab_cli("up", "--name", name, "--mode", "swarm")
            assert up.returncode == 0, up.stderr
            assert_alive(made)
            left = lab_cli("residue", "--name", name)
            assert left.returncode == 1, "the lab is up"
            listed = dict(line.split(": ", 1) for line in left.stdout.splitlines())
            assert listed["namespaces"].split() == [lab.node_netns(name, 1), lab.node_netns(name, 2)]
            assert listed["links"].split() == sorted([lab.bridge_name(name), lab.node_veth(name, 1),
                                                      lab.node_veth(name, 2)])
            assert not {str(p.pid) for p in made["processes"]} & set(listed["processes"].split())
            assert_reported(left.stderr, made)
            # Every veth and the bridge carry the mark, and the ledger has each namespace's identity.
            for link in listed["links"].split():
                shown = json.loads(subprocess.run(["ip", "-j", "link", "show", link], capture_output=True,
                                                  text=True).stdout)
                assert shown[0]["ifalias"] == lab.mark(name), shown
            recorded = {e["name"]: (e["dev"], e["ino"]) for e in lab.ledger(name).entries("netns")}
            for ns in listed["namespaces"].split():
                st = os.stat(f"/var/run/netns/{ns}")
                assert recorded[ns] == (st.st_dev, st.st_ino)
        finally:
            down = lab_cli("down", "--name", name)
        assert down.returncode == 0, down.stderr
        assert_alive(made)
        assert_reported(down.stderr, made)
        assert lab.residue(name) == {}
        assert not lab.lock_path(name).exists()
        assert name not in lab.list_labs(), "look-alikes carry no mark: no lab to find"
        assert name in lab.lab_like_names()


def test_down_of_a_lab_that_is_not_there_leaves_a_look_alike_namespace():
    """The issue's first case: `ip netns add ob-lab-mine` then `down --name lab`."""
    require_root()
    name = names.lab_name("dn")
    with look_alikes(name, netns=[f"ob-{name}-mine", lab.node_netns(name, 1)], links=[lab.node_veth(name, 1)]) as made:
        down = lab_cli("down", "--name", name)
        assert down.returncode == 0, down.stderr
        assert_alive(made)
        assert_reported(down.stderr, made)
        assert "1 process in it" in down.stderr, down.stderr


@pytest.mark.parametrize("taken", ["namespace", "veth", "directory"])
def test_a_look_alike_with_a_name_up_needs_stops_up_with_its_removal(taken):
    require_root()
    name = names.lab_name("blk")
    netns, links = [], []
    if taken == "namespace":
        netns = [lab.node_netns(name, 2)]
        what, remove = f"namespace {netns[0]}", f"ip netns delete {netns[0]}"
    elif taken == "veth":
        links = [lab.node_veth(name, 1)]
        what, remove = f"link {links[0]}", f"ip link delete {links[0]}"
    else:
        (lab.data_dir(name) / "n1").mkdir(parents=True)
        what, remove = f"directory {lab.data_dir(name)}", f"rm -r {lab.data_dir(name)}"
    try:
        with look_alikes(name, netns=netns, links=links) as made:
            line = one_error_line(lab_cli("up", "--name", name, "--mode", "swarm"))
            assert line == (f"error: {what} exists and was not made by overlay-bench for lab {name}: "
                            f"remove it with `{remove}`, or choose another --name"), line
            assert_alive(made)
            assert lab.residue(name) == {}, "a refused up made nothing"
            assert not lab.lock_path(name).exists()
    finally:
        if taken == "directory":
            shutil.rmtree(lab.data_dir(name))
            with contextlib.suppress(OSError):
                lab.DATA_ROOT.rmdir()


# --- an up that is still running, interrupted, or killed ---------------------------------------

def slow_dockerd_path(tmp_path: Path, delay_s: float) -> str:
    """PATH with a dockerd that waits `delay_s` before it execs the real one (same pid), so
    an `up` stays in "Starting engines" long enough to be caught there."""
    real = shutil.which("dockerd")
    assert real, "dockerd is not installed: run `make setup`"
    bin_dir = tmp_path / "slowbin"
    bin_dir.mkdir()
    (bin_dir / "dockerd").write_text(f'#!/bin/sh\n[ "$1" = --version ] || sleep {delay_s}\nexec {real} "$@"\n')
    (bin_dir / "dockerd").chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}"


@contextlib.contextmanager
def running_up(name: str, path: str, *args: str) -> Iterator[subprocess.Popen]:
    """`up` of a swarm lab in the background; killed on the way out if still running (its
    lab is left to the test to remove)."""
    proc = subprocess.Popen([sys.executable, "-m", "stacks.local", "up", "--name", name, "--mode", "swarm", *args],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO), "PATH": path})
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def wait_for_engines_recorded(name: str, proc: subprocess.Popen, nodes: int = 2) -> None:
    """Until the ledger has the engines' pids: namespaces, links and cgroup exist by then."""
    deadline = time.monotonic() + 60
    while len(lab.ledger(name).entries("process")) < nodes:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "up did not start its engines within 60 s"
        time.sleep(0.05)


def test_second_up_or_down_while_up_runs_is_refused_with_its_pid(tmp_path):
    require_root()
    name = names.lab_name("two")
    try:
        with running_up(name, slow_dockerd_path(tmp_path, 4)) as first:
            wait_for_engines_recorded(name, first)
            for second in (["up", "--name", name, "--mode", "swarm"], ["down", "--name", name]):
                line = one_error_line(lab_cli(*second))
                assert f"lab {name} is being changed by process {first.pid}" in line, line
            # Readers do not wait for the writer: both answer while the first up still runs.
            assert "no lab named" in one_error_line(lab_cli("status", "--name", name))
            left = lab_cli("residue", "--name", name)
            assert left.returncode == 1 and "namespaces:" in left.stdout, left
            assert first.poll() is None, "the first up ended before the readers answered: slow dockerd too fast?"
            out, err = first.communicate(timeout=UP_TIMEOUT_S)
            assert first.returncode == 0, err
            assert json.loads(out)["stack"] == name
    finally:
        lab.down(name, status=Status(quiet=True))
    assert lab.residue(name) == {}
    assert not lab.lock_path(name).exists()


@pytest.mark.parametrize("signum, exit_code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_during_up_removes_the_partial_lab(tmp_path, signum, exit_code):
    require_root()
    name = names.lab_name("sig")
    before = residue.snapshot(ignore=residue.other_labs(name))
    with running_up(name, slow_dockerd_path(tmp_path, 2)) as proc:
        wait_for_engines_recorded(name, proc)
        assert set(lab.residue(name)) >= {"namespaces", "links", "processes", "cgroups", "directories"}
        proc.send_signal(signum)
        _out, err = proc.communicate(timeout=UP_TIMEOUT_S)
    assert proc.returncode == exit_code, err
    assert "Traceback" not in err, err
    assert f"interrupted by {signal.Signals(signum).name}: the partial lab was removed" in err, err
    assert lab.residue(name) == {}
    assert residue.added(before, residue.snapshot(ignore=residue.other_labs(name))) == {}
    assert not lab.lock_path(name).exists()


def test_signal_during_up_with_retain_keeps_the_partial_lab(tmp_path):
    require_root()
    name = names.lab_name("ret")
    try:
        with running_up(name, slow_dockerd_path(tmp_path, 2), "--retain") as proc:
            wait_for_engines_recorded(name, proc)
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=UP_TIMEOUT_S)
        assert proc.returncode == 143 and "the partial lab was kept (--retain)" in err, err
        assert set(lab.residue(name)) >= {"namespaces", "links", "directories"}
    finally:
        lab.down(name, status=Status(quiet=True))
    assert lab.residue(name) == {}


def test_marked_leftovers_of_a_killed_up_are_found_and_cleaned_by_the_next_up(tmp_path, lab_factory):
    """SIGKILL gives `up` no chance to clean: what it made is found again by its marks."""
    name = names.lab_name("kil")
    with running_up(name, slow_dockerd_path(tmp_path, 30)) as proc:
        wait_for_engines_recorded(name, proc)
        proc.kill()
    left = lab.residue(name)
    assert set(left) >= {"namespaces", "links", "firewall_rules", "processes", "cgroups", "directories"}, left
    assert len(left["processes"]) >= 2, "the engines (still in their `sleep`) are the lab's"
    assert name in lab.list_labs()
    assert lab.foreign(name) == [], "everything a killed up left is the lab's own"
    doc = lab_factory(name, mode="swarm")
    assert [n["name"] for n in doc["nodes"]] == [lab.node_hostname(name, 1), lab.node_hostname(name, 2)]
    assert not set(left["processes"]) & set(lab.residue(name)["processes"]), "old engines survived"


def test_list_labs_finds_labs_by_their_marks_only(lab_factory):
    """What `down --all` would act on: labs found by marks, not look-alike names."""
    name, alike, marked = names.lab_name("lst"), names.lab_name("lka"), names.lab_name("lmk")
    with look_alikes(alike, netns=[lab.node_netns(alike, 1)], links=[lab.bridge_name(alike)]):
        lab_factory(name, mode="swarm")
        found = lab.list_labs()
        assert name in found and alike not in found
        assert {name, alike} <= set(lab.lab_like_names())
    # A link that carries a lab's mark is that lab's, with or without its state directories
    # (removed by hand, say): found, and removed by `down`.
    bridge = lab.bridge_name(marked)
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "link", "set", bridge, "alias", lab.mark(marked)], check=True)
        assert marked in lab.list_labs()
        assert lab.residue(marked) == {"links": [bridge]}
        lab.down(marked, status=Status(quiet=True))
        assert subprocess.run(["ip", "link", "show", bridge], capture_output=True).returncode != 0
    finally:
        subprocess.run(["ip", "link", "delete", bridge], capture_output=True)


# --- down --all: removes every marked lab on the machine; run it when nothing else runs -------

def test_down_all_removes_marked_labs_and_leaves_look_alikes():
    """Takes down every lab this checkout's marks identify, other test runs' included: run
    alone (CI runs the suite alone; during development `-k "not down_all"`)."""
    require_root()
    name, alike = names.lab_name("all"), names.lab_name("alk")
    with look_alikes(alike, netns=[lab.node_netns(alike, 1)], links=[lab.node_veth(alike, 1)]) as made, \
            look_alikes(name, netns=[f"ob-{name}-n9"], links=[]) as made_beside:
        try:
            lab.up(name, mode="swarm", status=Status(quiet=True))
            down = lab_cli("down", "--all")
            assert down.returncode == 0, down.stderr
            assert lab.residue(name) == {}
            assert_alive(made)
            assert_alive(made_beside)
            assert_reported(down.stderr, made)
            assert f"`ip netns delete ob-{name}-n9`" in down.stderr, down.stderr
            assert name not in lab.list_labs()
        finally:
            lab.down(name, status=Status(quiet=True))
