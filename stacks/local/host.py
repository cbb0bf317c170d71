"""Thin wrappers over the host tools the lab drives: iproute2, tc, iptables, /proc.

Everything here is stateless and knows nothing of labs: which objects are a lab's is
decided in stacks/local/lab.py from its marks and ledger, never from names or command lines.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from common.errors import UserError


class HostError(UserError):
    """A host command failed; carries the command and its stderr."""

    def __init__(self, cmd: list[str], returncode: int, stderr: str):
        self.cmd, self.returncode, self.stderr = cmd, returncode, stderr.strip()
        super().__init__(f"`{' '.join(cmd)}` failed ({returncode}): {self.stderr}")


def run(*cmd: str, check: bool = True, input: str | None = None) -> str:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, input=input)
    if check and proc.returncode != 0:
        raise HostError(list(cmd), proc.returncode, proc.stderr)
    return proc.stdout


def ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    prefix = ["ip", "-n", netns] if netns else ["ip"]
    return run(*prefix, *args, check=check)


def ip_json(*args: str, netns: str | None = None) -> list[dict]:
    out = ip("-j", *args, netns=netns, check=False)
    return json.loads(out) if out.strip() else []


# --- namespaces and links -------------------------------------------------------------

def netns_list() -> list[str]:
    return [entry["name"] for entry in ip_json("netns", "list")]


def links() -> list[dict]:
    return ip_json("link", "show")


def link_exists(name: str) -> bool:
    return any(link["ifname"] == name for link in links())


def root_addresses() -> list[tuple[str, str, int]]:
    """(interface, address, prefix length) of every IPv4 address in the root namespace."""
    result = []
    for link in ip_json("-4", "addr", "show"):
        for addr in link.get("addr_info", []):
            result.append((link["ifname"], addr["local"], addr["prefixlen"]))
    return result


NETNS_DIR = Path("/var/run/netns")


def identity(path: Path | str) -> tuple[int, int] | None:
    """(device, inode) of a file, None if it does not exist: for a namespace file (nsfs),
    which namespace it is; two names of one namespace have the same identity."""
    try:
        st = os.stat(path)
    except OSError:  # absent, or a process that exited while we looked
        return None
    return st.st_dev, st.st_ino


def netns_identity(netns: str) -> tuple[int, int] | None:
    return identity(NETNS_DIR / netns)


def pids_in_netns(identities: set[tuple[int, int]]) -> list[int]:
    """Processes whose network namespace is one of `identities` (what `ip netns pids` does,
    for several namespaces in one pass over /proc)."""
    if not identities:
        return []
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid() \
                and identity(entry / "ns" / "net") in identities:
            pids.append(int(entry.name))
    return sorted(pids)


# --- iptables rules, found by comment ---------------------------------------------------

def iptables_rules(comment: str) -> list[str]:
    """`iptables -S` lines of the filter table carrying our comment."""
    out = run("iptables", "-w", "-S", check=False)
    return [line for line in out.splitlines() if f'"{comment}"' in line or f" {comment} " in line]


def iptables_comments() -> set[str]:
    """Every comment on a filter-table rule."""
    out = run("iptables", "-w", "-S", check=False)
    return {quoted or bare for quoted, bare in re.findall(r'--comment (?:"([^"]*)"|(\S+))', out)}


def iptables_delete(rule_spec: str) -> None:
    # `-S` prints "-A CHAIN ..."; the same words after -D delete exactly that rule.
    import shlex

    args = shlex.split(rule_spec)
    run("iptables", "-w", "-D", *args[1:], check=False)


# --- processes, mounts, cgroups --------------------------------------------------------

def start_time(pid: int) -> int | None:
    """When a running process started (clock ticks since boot): with the pid, it tells a
    process from a later one that got the same pid. None when it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return None if fields[0] == "Z" else int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def pids_mentioning(fragment: str) -> list[int]:
    """Processes whose command line mentions `fragment`: for reports only (anyone can write
    anything on a command line, so it never makes a process ours)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fragment in cmdline:
            pids.append(int(entry.name))
    return pids


def kill_all(pids: list[int], timeout_s: float = 5.0) -> list[int]:
    """SIGKILL and reap: returns the pids still alive after timeout_s (should be none)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _alive(pid)]
        if alive:
            time.sleep(0.05)
    return alive


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # reap our own children, if any
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def mounts_under(*prefixes: str) -> list[str]:
    """Mount points under any of `prefixes`, deepest first (the order to unmount them)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == p or point.startswith(p.rstrip("/") + "/") for p in prefixes):
            points.append(point)
    return sorted(set(points), key=lambda p: p.count("/"), reverse=True)


def unmount_all(*prefixes: str) -> None:
    # Several rounds: a bind mount can hide another under the same point.
    for _ in range(5):
        points = mounts_under(*prefixes)
        if not points:
            return
        for point in points:
            run("umount", "-l", point, check=False)


CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_hierarchy() -> Path:
    """The hierarchy where a lab's processes are kept and found: the unified one (cgroup v2),
    else v1's `pids` (it only counts; cpuset would need cpus and mems set before use)."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return CGROUP_ROOT
    for name in ("pids", "unified", "systemd", "memory", "cpu"):
        if (CGROUP_ROOT / name / "cgroup.procs").exists():
            return CGROUP_ROOT / name
    raise HostError(["ls", str(CGROUP_ROOT)], 1, "no cgroup hierarchy mounted to keep processes in")


def cgroup_dirs(relative: str) -> list[Path]:
    """Existing cgroup directories named `relative` in every mounted hierarchy (v1 and v2)."""
    candidates = [CGROUP_ROOT / relative] + [d / relative for d in CGROUP_ROOT.iterdir() if d.is_dir()]
    return [c for c in candidates if c.is_dir()]


def cgroup_pids(base: Path) -> list[int]:
    """Processes in cgroup `base` and every cgroup below it."""
    pids: set[int] = set()
    for procs in base.rglob("cgroup.procs"):
        try:
            pids.update(int(p) for p in procs.read_text().split())
        except OSError:
            pass
    return sorted(pids)


def remove_cgroup(base: Path) -> None:
    # Children before parents; cgroup dirs are removed with rmdir (only empty ones go).
    for sub in sorted(base.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if sub.is_dir():
            try:
                sub.rmdir()
            except OSError:
                pass
    try:
        base.rmdir()
    except OSError:
        pass


# --- known_hosts lines, found by comment ------------------------------------------------

def _hosts_field_matches(field: str, hostname: str) -> bool:
    """Whether the host field of a known_hosts line (plain names, or `|1|salt|hash` as
    HashKnownHosts writes it) names `hostname`."""
    import base64
    import hashlib
    import hmac

    if field.startswith("|1|"):
        try:
            salt, digest = (base64.b64decode(part) for part in field[3:].split("|", 1))
        except ValueError:
            return False
        return hmac.compare_digest(hmac.new(salt, hostname.encode(), hashlib.sha1).digest(), digest)
    return hostname in field.split(",")


@contextlib.contextmanager
def _locked_lines(path: Path) -> Iterator[list[str]]:
    """The lines of `path` under an flock (writers of known_hosts through these helpers go
    one at a time); what the caller leaves in the list is written back if it changed."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with os.fdopen(os.dup(fd), "r+", encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines(keepends=True)
            before = list(lines)
            yield lines
            if lines != before:
                f.seek(0)
                f.write("".join(lines))
                f.truncate()
    finally:
        os.close(fd)


def known_hosts_lines(path: Path, comment: str | None = None, hostname: str | None = None) -> list[str]:
    """Lines of known_hosts file `path` (without newline) whose comment is `comment`
    and/or whose host field names `hostname`; none when the file does not exist."""
    try:
        text = path.read_text(errors="surrogateescape")
    except OSError:
        return []
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3 or fields[0].startswith("#"):
            continue
        if fields[0].startswith("@"):  # a marker (@cert-authority, @revoked) comes first
            fields = fields[1:]
        if comment is not None and fields[3:] != [comment]:
            continue
        if hostname is not None and not _hosts_field_matches(fields[0], hostname):
            continue
        found.append(line)
    return found


def known_hosts_add(path: Path, lines: list[str]) -> None:
    """Append `lines` to known_hosts file `path` (which must exist)."""
    with _locked_lines(path) as current:
        if current and not current[-1].endswith("\n"):
            current[-1] += "\n"
        current.extend(line + "\n" for line in lines)


def known_hosts_remove(path: Path, comment: str) -> None:
    """Remove the lines whose comment is exactly `comment` from known_hosts file `path`."""
    if not path.is_file():
        return
    with _locked_lines(path) as current:
        mine = set(known_hosts_lines(path, comment))
        current[:] = [line for line in current if line.rstrip("\n") not in mine]
