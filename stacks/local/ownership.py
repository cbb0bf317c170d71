"""How a lab knows what is its own: marked state directories, a ledger, and a writer lock.

We run as root beside other people's namespaces, links and processes, so nothing is ours
because of its name (kind deletes by label, never by name). A lab's run directory carries a
marker file and holds its ledger: one JSON line per object, written before the object
exists or in the same step that creates it, with what identifies it (a namespace's nsfs
inode, a link's interface index, a process's start time). Removal checks that identity
again, so an object re-created by someone else under the same name is not taken for ours.

The lock is an flock on a file outside the state directories, which `down` removes; the
file is unlinked by its holder when the lab is gone, and a waiter that finds its file
unlinked starts over (the usual way to remove a lock file safely).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

MARKER = ".overlay-bench-lab"  # in each state directory: the name of the lab that made it


# --- marked state directories ------------------------------------------------------------

def dir_owner(path: Path, lab: str) -> str:
    """'ours' (marked for `lab`), 'empty' (nothing in it but at most a marker, e.g. a crash
    between mkdir and marking: adopting or removing it loses nothing), 'foreign' or 'absent'."""
    try:
        entries = os.listdir(path)
    except FileNotFoundError:
        return "absent"
    except NotADirectoryError:
        return "foreign"
    try:
        if (path / MARKER).read_text().strip() == lab:
            return "ours"
    except (OSError, UnicodeDecodeError):
        pass
    return "empty" if set(entries) <= {MARKER} else "foreign"


def mark_dir(path: Path, lab: str) -> None:
    """Create `path` (if needed) and mark it as `lab`'s; refuses a directory that is not."""
    for _ in range(5):
        try:
            path.mkdir(parents=True, exist_ok=True)
            break
        except FileNotFoundError:  # another lab's `down` removed the (empty) root meanwhile
            continue
    owner = dir_owner(path, lab)
    if owner == "foreign":
        raise FileExistsError(errno.EEXIST, "not made by overlay-bench", str(path))
    if owner == "empty":
        (path / MARKER).write_text(lab + "\n")


# --- the ledger ----------------------------------------------------------------------------

class Ledger:
    """Append-only JSON lines; one writer at a time (the lab lock), a torn last line skipped."""

    def __init__(self, path: Path):
        self.path = path

    def record(self, kind: str, **fields: Any) -> None:
        line = (json.dumps({"kind": kind, **fields}, sort_keys=True) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line)  # one write of one line: a crash leaves it whole or absent
        finally:
            os.close(fd)

    def entries(self, kind: str) -> list[dict[str, Any]]:
        try:
            text = self.path.read_text(errors="replace")
        except OSError:
            return []
        found = []
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("kind") == kind:
                found.append(entry)
        return found


# --- one writer at a time ------------------------------------------------------------------

class Busy(Exception):
    """Another process holds the lock; `pid` is its process id (None if it did not say yet)."""

    def __init__(self, pid: int | None):
        super().__init__(pid)
        self.pid = pid


def _holder(path: Path) -> int | None:
    # The holder writes its pid right after taking the lock: give it a moment to.
    for _ in range(20):
        try:
            text = path.read_text().strip()
        except OSError:
            text = ""
        if text.isdigit():
            return int(text)
        time.sleep(0.05)
    return None


def _acquire(path: Path) -> int:
    for _ in range(100):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:  # its directory was removed (as empty) meanwhile
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Busy(_holder(path)) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)  # the previous holder unlinked it after we opened it: start over
    raise OSError(f"cannot take the lock {path}: it keeps being removed")


@contextlib.contextmanager
def exclusive(path: Path, keep: Callable[[], bool]) -> Iterator[None]:
    """Hold the lock `path` or raise Busy at once (never wait). On release the file is
    unlinked, while still held, unless `keep()` says the thing it guards still exists."""
    fd = _acquire(path)
    try:
        yield
    finally:
        try:
            if not keep():
                path.unlink(missing_ok=True)
        finally:
            os.close(fd)
