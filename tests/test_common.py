"""common/: the status printer, waiting (poll) and trying again (retry), the user-error base,
the one-writer lock."""
from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time

import pytest

from common import errors, locks, polling
from common.status import Status

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_status_plain_lines_say_done_or_failed_with_the_duration():
    out = io.StringIO()
    status = Status(stream=out)
    with status.step("Starting engines (2 nodes)"):
        pass
    with pytest.raises(KeyError), status.step("Forming the cluster"):
        raise KeyError("x")
    lines = out.getvalue().splitlines()
    assert re.fullmatch(r"Starting engines \(2 nodes\) \.\.\. done \d+\.\d s", lines[0]), lines
    assert re.fullmatch(r"Forming the cluster \.\.\. FAILED \d+\.\d s", lines[1]), lines
    assert len(lines) == 2


def test_status_quiet_prints_nothing():
    out = io.StringIO()
    with Status(stream=out, quiet=True).step("Removing lab x"):
        pass
    assert out.getvalue() == ""


def test_poll_returns_the_first_true_value():
    values = iter([None, 0, "", "here", "later"])
    assert polling.poll(lambda: next(values), 5, delay_s=0.001) == "here"


def test_poll_returns_the_last_false_value_at_the_deadline():
    calls = []
    start = time.monotonic()
    assert polling.poll(lambda: calls.append(1) or 0, 0.05, delay_s=0.01, backoff=1) == 0
    assert 0.05 <= time.monotonic() - start < 1
    assert 3 <= len(calls) <= 10  # about one check per delay, and one after the deadline


def test_poll_stops_when_the_check_raises():
    def check():
        raise RuntimeError("the process died")
    with pytest.raises(RuntimeError, match="died"):
        polling.poll(check, 5)


class Hiccup(Exception):
    pass


def flaky(failures: int, exc: type[Exception] = Hiccup):
    """An action that fails `failures` times, then returns how many calls it took."""
    calls = []

    def attempt():
        calls.append(1)
        if len(calls) <= failures:
            raise exc(f"failure {len(calls)}")
        return len(calls)
    return attempt


def test_retry_tries_again_on_a_passing_failure():
    seen = []
    assert polling.retry(flaky(2), tries=3, again_on=lambda e: isinstance(e, Hiccup),
                         before_again=seen.append) == 3
    assert [str(e) for e in seen] == ["failure 1", "failure 2"]


def test_retry_gives_the_last_failure_after_its_tries():
    with pytest.raises(Hiccup, match="failure 3"):
        polling.retry(flaky(5), tries=3, again_on=lambda e: isinstance(e, Hiccup))


def test_retry_never_repeats_another_failure():
    attempt = flaky(1, ValueError)
    with pytest.raises(ValueError, match="failure 1"):
        polling.retry(attempt, tries=3, again_on=lambda e: isinstance(e, Hiccup))


def test_retry_on_a_result():
    results = iter(["too early", "too early", "measured", "unused"])
    seen = []
    assert polling.retry(lambda: next(results), tries=3, again_if=lambda r: r == "too early",
                         before_again=seen.append) == "measured"
    assert seen == ["too early", "too early"]
    # The last try's result is returned even when it asks for another.
    results = iter(["too early"] * 3)
    assert polling.retry(lambda: next(results), tries=2, again_if=lambda r: True) == "too early"


def test_user_errors_carry_their_exit_code():
    assert errors.UserError("x").exit_code == errors.EXIT_ENVIRONMENT == 1
    assert errors.UsageError("x").exit_code == errors.EXIT_USAGE == 2
    assert issubclass(errors.UsageError, errors.UserError)


def test_every_error_a_user_can_fix_derives_from_the_base():
    """The commands catch UserError alone: a user error outside the tree would be a traceback."""
    from analysis import AnalysisError
    from bench.engines import EngineError
    from bench.image import ImageError
    from bench.plan import PlanError
    from bench.session import SessionError
    from bench.stack import StackError
    from bench.store import SessionInputError, StoreError
    from stacks.local.lab import LabError

    usage = (PlanError, StackError, AnalysisError, SessionInputError)
    environment = (EngineError, ImageError, StoreError, SessionError, LabError)
    for cls in usage:
        assert issubclass(cls, errors.UsageError) and cls("x").exit_code == 2, cls
    for cls in environment:
        assert issubclass(cls, errors.UserError) and cls("x").exit_code == 1, cls


def test_lock_refuses_a_second_holder_with_the_first_ones_pid(tmp_path):
    path = tmp_path / "locks" / "lab1.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path\n"
         "from common import locks\n"
         f"with locks.exclusive(Path({str(path)!r}), keep=lambda: False):\n"
         "    print('held', flush=True); time.sleep(30)"],
        cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(locks.Busy) as busy, locks.exclusive(path, keep=lambda: False):
            pass
        assert busy.value.pid == holder.pid
    finally:
        holder.kill()
        holder.wait()
    # The holder died: the kernel released its lock, and the next one takes it.
    with locks.exclusive(path, keep=lambda: True):
        assert path.read_text() == f"{os.getpid()}\n"
    with locks.exclusive(path, keep=lambda: False):
        pass
    assert not path.exists(), "the lock file goes when what it guards is gone"


def test_a_waiter_on_an_unlinked_lock_file_starts_over(tmp_path):
    """The holder unlinks the file while a second opener already has it open: that opener
    must not think it holds the lock (a third would take a new file at the same time)."""
    path = tmp_path / "lab1.lock"
    with locks.exclusive(path, keep=lambda: False):
        stale = os.open(path, os.O_RDWR)  # opened before the unlink, as a racing waiter would
    try:
        with locks.exclusive(path, keep=lambda: True):
            assert os.stat(path).st_ino != os.fstat(stale).st_ino
    finally:
        os.close(stale)
