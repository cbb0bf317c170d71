"""One writer at a time: an flock on a file, taken at once or refused with the holder's pid.

The lab (stacks/local/lab.py) holds one per lab while it changes it, `python -m bench` one per
results session while it runs it. The lock is the kernel's (flock): it goes with its holder,
however that ends, so a crash never leaves a stale lock behind. The file holds the holder's pid
for the message of whoever is refused. It is unlinked by its holder when what it guards is gone,
and a waiter that finds its file unlinked starts over (the usual way to remove a lock file
safely).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path


class Busy(Exception):
    """Another process holds the lock; `pid` is its process id (None if it did not say yet)."""

    def __init__(self, pid: int | None):
        super().__init__(pid)
        self.pid = pid

    def holder(self) -> str:
        """'process PID', for a one-line message."""
        return f"process {self.pid}" if self.pid else "another process"


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
