"""Results on disk: one directory per session, never overwritten.

What the files hold is bench/results_format.py (docs/results-format.md); this module is how
they are written and read back safely.

metadata.json is written once, atomically. runs.jsonl gets one line per run, appended,
flushed and fsynced before the next run starts: a crash or a pulled plug loses at most the
run that was in flight.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from bench import results_format as fmt
from common import locks
from common.errors import UsageError, UserError


class StoreError(UserError):
    """The results directory cannot be written or read; the message says what to do."""


def _os_error(exc: OSError, path: Path) -> StoreError:
    if exc.errno == errno.ENOSPC:
        return StoreError(f"the disk holding {path} is full: free some space, then continue "
                          f"with --resume {path.parent if path.suffix else path}")
    return StoreError(f"cannot write {path}: {exc.strerror or exc}")


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def session_name(stack: str, now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%d-%H%M%S}-{stack}"


def new_session_dir(results: Path, stack: str, now: dt.datetime | None = None) -> Path:
    """Create and return results/YYYYmmdd-HHMMSS-STACK, adding -2, -3 ... if it exists."""
    base = session_name(stack, now)
    try:
        results.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _os_error(exc, results) from None
    for n in range(1, 1000):
        path = results / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir()  # exclusive: never reuse a directory someone else made
            return path
        except FileExistsError:
            continue
        except OSError as exc:
            raise _os_error(exc, path) from None
    raise StoreError(f"too many sessions named {base} in {results}")


def write_metadata(session: Path, doc: dict[str, Any]) -> None:
    path = session / "metadata.json"
    if path.exists():
        raise StoreError(f"{path} exists: a session's metadata is never overwritten")
    tmp = session / ".metadata.json.tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)  # fails if metadata.json appeared meanwhile, unlike rename
        os.unlink(tmp)
        _fsync_dir(session)
    except FileExistsError:
        os.unlink(tmp)
        raise StoreError(f"{path} exists: a session's metadata is never overwritten") from None
    except OSError as exc:
        if tmp.exists():
            tmp.unlink()
        raise _os_error(exc, path) from None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SessionInputError(StoreError, UsageError):
    """A session named with --resume that cannot be read as one; the message says why."""


def read_metadata(session: Path) -> dict[str, Any]:
    """A session's metadata.json, checked against the results format (one line if it is not)."""
    path = session / "metadata.json"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SessionInputError(f"{session} is not a results session (no metadata.json)") from None
    except OSError as exc:
        raise SessionInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return fmt.parse_metadata(data)
    except fmt.UnreadableVersion as exc:
        raise SessionInputError(f"{path} has format_version {exc.version!r}; this bench writes "
                                f"version {fmt.FORMAT_VERSION}") from None
    except fmt.FormatError as exc:
        raise SessionInputError(f"{path}: {exc} (see docs/results-format.md): this session cannot "
                                "be resumed; start a new one") from None


def read_runs(session: Path) -> tuple[list[dict[str, Any]], list[fmt.DamagedLine]]:
    """The valid runs of runs.jsonl, and its damaged lines (bench/results_format.py's checks).

    A damaged line anywhere (cut short by a crash, not UTF-8, not an object, a field missing or
    wrong) is left where it is and its run is not done: `--resume` runs it again, and analysis,
    which skips the same lines, counts the new one. Only a file that cannot be read at all
    stops a resume: then nothing is known of what was done.
    """
    path = session / "runs.jsonl"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}; nothing can be known of what "
                         "this session did, so it cannot be resumed") from None
    runs, damaged = [], []
    for lineno, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            record = fmt.parse_run_line(line)
        except fmt.FormatError as exc:
            damaged.append(fmt.DamagedLine(str(path), lineno, str(exc)))
            continue
        problem = fmt.run_problem(record)
        if problem:
            damaged.append(fmt.DamagedLine(str(path), lineno, problem))
        else:
            runs.append(record)
    return runs, damaged


def done_ids(runs: Iterable[dict[str, Any]]) -> set[str]:
    """The runs done, of valid run lines: a line with status ok or skipped."""
    return {r["run_id"] for r in runs if r["status"] in fmt.DONE_STATUSES}


def done_run_ids(session: Path) -> set[str]:
    return done_ids(read_runs(session)[0])


# Held by the one process that runs a session (a new one from its creation, a resumed one
# from the start of `--resume`); unlinked when it is done.
LOCK_FILE = ".bench.lock"


class SessionBusy(StoreError):
    """Another process runs this session."""


@contextlib.contextmanager
def writer(session: Path) -> Iterator[None]:
    """This process is the one writing `session`, or SessionBusy at once (never wait)."""
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(locks.exclusive(session / LOCK_FILE, keep=lambda: False))
        except locks.Busy as busy:
            raise SessionBusy(f"session {session} is being run by {busy.holder()}: wait for it to "
                              "finish (or stop it), then resume it") from None
        except OSError as exc:
            raise _os_error(exc, session / LOCK_FILE) from None
        yield


class RunLog:
    """runs.jsonl, opened for appending; each record is on disk when append() returns."""

    def __init__(self, session: Path):
        self.path = session / "runs.jsonl"
        try:
            self._f = open(self.path, "a")  # noqa: SIM115 (held open for the session; close() ends it)
        except OSError as exc:
            raise _os_error(exc, self.path) from None
        self._ends_cleanly()

    def _ends_cleanly(self) -> None:
        # After a crash mid-line, start on a fresh line so the next record is whole.
        size = self.path.stat().st_size
        if size:
            with open(self.path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    self._write("\n")

    def _write(self, text: str) -> None:
        try:
            self._f.write(text)
            self._f.flush()
            os.fsync(self._f.fileno())
        except OSError as exc:
            raise _os_error(exc, self.path) from None

    def append(self, record: dict[str, Any]) -> None:
        self._write(fmt.run_line(record))

    def close(self) -> None:
        try:
            self._f.close()
        except OSError:
            pass

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: Iterable[Any]) -> None:
        self.close()
