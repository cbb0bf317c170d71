"""bench.store: sessions never reused or overwritten, runs durable line by line, a full disk said clearly."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess

import pytest

from bench import results_format, store
from bench.store import StoreError


def record(run_id: str, status: str = "ok") -> dict:
    """A valid run line's record (store.read_runs takes only those)."""
    rec = {k: None for k in results_format.RUN_FIELDS}
    rec.update(format_version=1, run_id=run_id, case_id=run_id.split("#")[0], status=status,
               network="host", tool="iperf3", protocol="tcp", streams=1, direction="forward",
               server_node="n1", client_node="n2", duration_s=1)
    return rec


def test_session_directories_are_never_reused(tmp_path):
    when = dt.datetime(2026, 11, 26, 13, 5, 1, tzinfo=dt.UTC)
    first = store.new_session_dir(tmp_path, "lab", when)
    second = store.new_session_dir(tmp_path, "lab", when)
    assert first.name == "20261126-130501-lab"
    assert second.name == "20261126-130501-lab-2"


def test_metadata_written_once(tmp_path):
    store.write_metadata(tmp_path, {"format_version": 1, "x": 1})
    assert json.loads((tmp_path / "metadata.json").read_text()) == {"format_version": 1, "x": 1}
    with pytest.raises(StoreError, match="never overwritten"):
        store.write_metadata(tmp_path, {"format_version": 1, "x": 2})
    assert json.loads((tmp_path / "metadata.json").read_text())["x"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metadata.json"]


def test_runs_appended_and_done_ids(tmp_path):
    with store.RunLog(tmp_path) as log:
        log.append(record("a#1"))
        log.append(record("b#1", "failed"))
        # On disk before the next run: another reader sees it now, not at close.
        assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == 2
    with store.RunLog(tmp_path) as log:  # a resumed session appends, never truncates
        log.append(record("b#1"))
        log.append(record("c#1", "skipped"))
    lines = (tmp_path / "runs.jsonl").read_text().splitlines()
    assert [json.loads(x)["run_id"] for x in lines] == ["a#1", "b#1", "b#1", "c#1"]
    assert store.done_run_ids(tmp_path) == {"a#1", "b#1", "c#1"}
    assert list(json.loads(lines[0])) == list(results_format.RUN_FIELDS)


def test_a_torn_last_line_is_redone(tmp_path):
    with store.RunLog(tmp_path) as log:
        log.append(record("a#1"))
    with open(tmp_path / "runs.jsonl", "a") as f:
        f.write('{"format_version": 1, "run_id": "b#1", "sta')  # a crash mid-write
    assert store.done_run_ids(tmp_path) == {"a#1"}
    with store.RunLog(tmp_path) as log:
        log.append(record("b#1"))
    assert store.done_run_ids(tmp_path) == {"a#1", "b#1"}


def test_metadata_version_is_checked(tmp_path):
    (tmp_path / "metadata.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(StoreError, match="format_version 99"):
        store.read_metadata(tmp_path)
    with pytest.raises(StoreError, match="not a results session"):
        store.read_metadata(tmp_path / "nope")


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 1 MiB tmpfs: writes past it fail with ENOSPC as on a full results disk."""
    if os.geteuid() != 0:
        pytest.fail("needs root to mount a tmpfs (the CI runs as root)")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)  # lazy: a failed test may hold a file open


def _fill(path):
    fd = os.open(path / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


def test_full_disk_on_a_run_line(tiny_disk):
    session = store.new_session_dir(tiny_disk, "lab")
    store.write_metadata(session, {"format_version": 1})
    log = store.RunLog(session)
    log.append(record("a#1"))
    _fill(tiny_disk)
    with pytest.raises(StoreError, match=r"disk holding .*runs.jsonl is full: free some space, then continue with --resume"):
        big = record("b#1")
        big["reason"] = "x" * 8192  # larger than what is left in the last block
        log.append(big)
    log.close()
    assert store.done_run_ids(session) == {"a#1"}


def test_full_disk_on_metadata(tiny_disk):
    _fill(tiny_disk)
    with pytest.raises(StoreError, match="is full"):
        session = store.new_session_dir(tiny_disk, "lab")
        store.write_metadata(session, {"format_version": 1, "pad": "x" * 100_000})
