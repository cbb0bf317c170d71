"""A machine-wide snapshot of what a lab could leave behind, to compare before and after.

Broader than `lab.residue(name)` (which finds things by the lab's name): it also catches
what an engine might create outside its namespace (docker0, DOCKER chains, stray mounts).
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ENGINE_WORDS = ("dockerd", "containerd", "etcd", "iperf", "sockperf", "docker-proxy")


def _lines(*cmd: str) -> list[str]:
    return subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()


def _identity(path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def snapshot(ignore: tuple[str, ...] = ()) -> dict[str, set[str]]:
    """Namespaces, root links, firewall rules, mounts, engine and sshd processes, cgroups,
    the user's known_hosts lines.

    `ignore`: substrings (other labs' names) whose entries are left out, so that labs of
    concurrent test runs do not show up as our residue.
    """
    links = {l["ifname"] for l in json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True,
                                                                 text=True).stdout or "[]")}
    namespaces = set(_lines("ip", "netns", "list"))
    netns_names = {_identity(f"/var/run/netns/{line.split()[0]}"): line.split()[0] for line in namespaces}
    procs = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                cgroups = (entry / "cgroup").read_text()
            except OSError:
                continue
            # Another lab's process may name none of its paths (iperf3 in its namespace, a
            # container): its namespace and cgroup say whose it is.
            whose = f"{cgroups} netns={netns_names.get(_identity(entry / 'ns' / 'net'), '')}"
            # The lab's sshd names its configuration under the lab's run directory.
            ours = any(word in cmd.split(" ")[0] for word in ENGINE_WORDS) or (
                cmd.split(" ")[0].endswith("sshd") and "/overlay-bench/" in cmd)
            if ours and not any(word in whose for word in ignore):
                procs.add(f"{entry.name} {cmd.strip()}")
    mounts = {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}
    cgroups = {str(p) for p in Path("/sys/fs/cgroup").glob("*/overlay-bench*")}
    try:  # host keys the lab adds for --access ssh (each line ends with the lab's mark)
        known_hosts = set((Path.home() / ".ssh" / "known_hosts").read_text().splitlines())
    except OSError:
        known_hosts = set()
    snap = {
        "known_hosts": known_hosts,
        "namespaces": namespaces,
        "links": links,
        "iptables": set(_lines("iptables-save", "-t", "filter")) | set(_lines("iptables-save", "-t", "nat")),
        "mounts": mounts,
        "processes": procs,
        "cgroups": cgroups,
    }
    # Counters in iptables-save output change between calls: keep rules and chain names.
    snap["iptables"] = ({l for l in snap["iptables"] if l.startswith("-A")}
                        | {l.split()[0] for l in snap["iptables"] if l.startswith(":")})
    return {k: {e for e in v if not any(word in e for word in ignore)} for k, v in snap.items()}


def other_labs(name: str) -> tuple[str, ...]:
    """Markers of every lab but `name`, to pass as `ignore` while other labs run (by marks,
    and by lab-like names too: labs of an older checkout carry no marks)."""
    from stacks.local import lab

    others = set(lab.list_labs()) | set(lab.lab_like_names())
    return tuple(m for other in sorted(others) if other != name
                 for m in (f"ob-{other}", f"/overlay-bench/{other}/", f"overlay-bench-{other}",
                           f"overlay-bench:{other}"))


def added(before: dict[str, set[str]], after: dict[str, set[str]]) -> dict[str, list[str]]:
    """What `after` has that `before` had not, by kind (empty when nothing was left)."""
    diff = {kind: sorted(after[kind] - before[kind]) for kind in before}
    return {k: v for k, v in diff.items() if v}
