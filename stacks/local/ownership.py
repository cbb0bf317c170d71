"""How a lab knows what is its own: marked state directories and a ledger.

We run as root beside other people's namespaces, links and processes, so nothing is ours
because of its name (kind deletes by label, never by name). A lab's run directory carries a
marker file and holds its ledger: one JSON line per object, written before the object
exists or in the same step that creates it, with what identifies it (a namespace's nsfs
inode, a link's interface index, a process's start time). Removal checks that identity
again, so an object re-created by someone else under the same name is not taken for ours.

One writer at a time: the lab holds common/locks.py's lock on a file outside the state
directories (which `down` removes) while it changes the lab.
"""
from __future__ import annotations

import errno
import json
import os
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
