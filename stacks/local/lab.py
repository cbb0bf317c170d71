"""The local lab: N network-namespace nodes on one Linux machine, each with its own dockerd.

Topology of a lab NAME (everything carries the name, so two labs live side by side):

    bridge ob-NAME (no address: the root namespace is not on the lab network)
      ├─ veth ob-NAME-kv  <-> eth0 in netns ob-NAME-kv   10.213.0.2   etcd (classic mode only)
      ├─ veth ob-NAME-1   <-> eth0 in netns ob-NAME-n1   10.213.0.11  dockerd, hostname NAME-node1
      └─ veth ob-NAME-2   <-> eth0 in netns ob-NAME-n2   10.213.0.12  dockerd, hostname NAME-node2

Nodes have only the connected route of the lab subnet: nothing they send can leave it.
State lives in /run/overlay-bench/NAME (sockets, pid files, logs, the ledger) and
/var/lib/overlay-bench/NAME (data roots, lab.json), both marked as the lab's.

Names only say where to look: an object is the lab's when it carries the lab's mark (link
alias, firewall comment, marker file) or its ledger records it with an identity that still
holds (stacks/local/ownership.py). `up`, `down` and `residue` act on those alone; anything
else with a lab-like name is left alone and reported, and blocks `up` if `up` needs its name.
`up` is a plan of steps run in order (kind's habit); a failure or a SIGINT/SIGTERM tears the
partial lab down. One process at a time changes a lab (a lock per lab).
"""
from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors

from common import locks
from common.polling import poll
from common.status import Status
from stacks import classic, firewall, remote_cluster
from stacks import outputs as outputs_schema
from stacks.local import host, ownership
from stacks.local.spec import DEFAULT_SUBNET, NAME_RE, LabError, LabSpec, rate_bits_per_s

RUN_ROOT = Path("/run/overlay-bench")
DATA_ROOT = Path("/var/lib/overlay-bench")
# Beside the state directories (which `down` removes), in the directory removed last.
LOCK_ROOT = RUN_ROOT / ".locks"
OVERLAY_NETWORK = "overlay-bench"
KEYSTORE_ADDRESS_INDEX = 2
FIRST_NODE_ADDRESS_INDEX = 11
ENGINE_START_TIMEOUT_S = 40.0
DOWN_TIMEOUT_S = 10.0
# Interface indexes we choose for our links, so that a link is recorded (name and index)
# before it exists; far above the indexes the kernel hands out by itself.
IFINDEX_RANGE = (1 << 24, 1 << 30)
# Classic (--cluster-store) mode was removed from the engine in Docker 23.0.
CLASSIC_MAX_ENGINE_MAJOR = remote_cluster.CLASSIC_MAX_ENGINE_MAJOR
# Debian's openssh-server; an absolute path, since sshd re-executes itself per connection.
SSHD = "/usr/sbin/sshd"
SSH_PORT = firewall.SSH_PORT
SSH_START_TIMEOUT_S = 10.0
# The chain of --firewall's rules in each node's mangle table: PREROUTING sees what arrives
# on the node's interfaces before anything else does (and before the engine's DNAT to a
# bridge network's published port), as a cloud firewall sees a droplet's traffic.
FIREWALL_CHAIN = "ob-inbound"


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived while a lab was being brought up (the partial lab is gone
    unless --retain); a KeyboardInterrupt, so callers that stop on Ctrl-C stop on it too."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# --- names: the one place that says what a lab's things are called ----------------------

def bridge_name(name: str) -> str:
    return f"ob-{name}"


def node_netns(name: str, index: int) -> str:
    return f"ob-{name}-n{index}"


def keystore_netns(name: str) -> str:
    return f"ob-{name}-kv"


def node_veth(name: str, index: int) -> str:
    return f"ob-{name}-{index}"


def keystore_veth(name: str) -> str:
    return f"ob-{name}-kv"


def management_bridge(name: str) -> str:
    return f"ob-{name}-m"


def management_veth(name: str, index: int) -> str:
    return f"ob-{name}-m{index}"


def node_hostname(name: str, index: int) -> str:
    return f"{name}-node{index}"


def run_dir(name: str) -> Path:
    return RUN_ROOT / name


def data_dir(name: str) -> Path:
    return DATA_ROOT / name


def cgroup_parent(name: str) -> str:
    return f"overlay-bench-{name}"


def mark(name: str) -> str:
    """The lab's mark: alias of its links, comment of its firewall rule."""
    return f"overlay-bench:{name}"


def netns_bind(name: str, netns: str) -> Path:
    """Where the lab keeps its own handle on a namespace: made there first, named after."""
    return run_dir(name) / "netns" / netns


def ledger(name: str) -> ownership.Ledger:
    return ownership.Ledger(run_dir(name) / "ledger.jsonl")


def lock_path(name: str) -> Path:
    return LOCK_ROOT / f"{name}.lock"


def node_socket(name: str, index: int) -> Path:
    return run_dir(name) / f"n{index}" / "docker.sock"


def ssh_dir(name: str) -> Path:
    """The lab's SSH client key and the authorized_keys every node's sshd reads."""
    return run_dir(name) / "ssh"


def known_hosts_file() -> Path:
    """Where the docker SDK (paramiko) looks for host keys: the user's known_hosts."""
    return Path.home() / ".ssh" / "known_hosts"


def namespace(name: str, node_name: str) -> str:
    """The network namespace of a node (by hostname), for tools run beside the engine."""
    match = re.fullmatch(rf"{re.escape(name)}-node(\d+)", node_name)
    if match:
        return node_netns(name, int(match.group(1)))
    if node_name == f"{name}-keystore":
        return keystore_netns(name)
    raise LabError(f"lab {name!r} has no node named {node_name!r}")


# --- preflight ---------------------------------------------------------------------------

REQUIRED_TOOLS = {  # command -> Debian package that provides it
    "dockerd": "docker.io",
    "ip": "iproute2",
    "tc": "iproute2",
    "iptables": "iptables",
    "nsenter": "util-linux",
    "unshare": "util-linux",
}


def engine_version() -> tuple[int, int, str]:
    out = host.run("dockerd", "--version")
    match = re.search(r"version (\d+)\.(\d+)\.?([\w.+~-]*)", out)
    if not match:
        raise LabError(f"cannot read the engine version from `dockerd --version`: {out.strip()}")
    return int(match.group(1)), int(match.group(2)), out.split("version", 1)[1].split(",")[0].strip()


def _require_root(command: str) -> None:
    if os.geteuid() != 0:
        raise LabError(f"`{command}` of the local lab needs root (network namespaces, links, "
                       "dockerd): run it with sudo")


# What --access ssh needs besides: the SSH server and keys, and the docker CLI that the
# docker SDK runs on the node (`docker system dial-stdio`).
SSH_TOOLS = {
    SSHD: "openssh-server",
    "ssh-keygen": "openssh-client",
    "docker": "docker.io",
}


def preflight(spec: LabSpec) -> None:
    """Tools, engine and subnets (the caller checked the spec and root)."""
    tools = {**REQUIRED_TOOLS, **(SSH_TOOLS if spec.access == "ssh" else {}),
             **({"iptables-restore": "iptables"} if spec.firewall else {})}
    for tool, package in tools.items():
        if not shutil.which(tool):
            raise LabError(f"`{tool}` not found: install it with `apt-get install {package}` "
                           "(or run `make setup`)")
    if spec.mode == "classic":
        if not shutil.which("etcd"):
            raise LabError("classic mode needs a key-value store: install etcd with "
                           "`apt-get install etcd-server` (or run `make setup`), or use --mode swarm")
        major, _minor, full = engine_version()
        if major > CLASSIC_MAX_ENGINE_MAJOR:
            raise LabError(f"classic mode (--cluster-store) was removed in Docker 23.0 and this "
                           f"engine is {full}: use --mode swarm")
    # The lab subnet has no address in the root namespace; the management subnet has one, on
    # the lab's own bridge (a leftover of an earlier lab of this name is not a collision).
    subnets = [(spec.network, "--subnet")]
    if spec.access == "ssh":
        subnets.append((spec.management_network, "--management-subnet"))
    ours = {link["ifname"] for link in host.links() if link.get("ifalias") == mark(spec.name)}
    for iface, address, prefix in host.root_addresses():
        for net, flag in subnets:
            if iface not in ours and ipaddress.IPv4Network(f"{address}/{prefix}", strict=False).overlaps(net):
                raise LabError(f"subnet {net} overlaps {address}/{prefix} on {iface}, which is not "
                               f"the lab's: choose another with {flag}")


# --- the plan of `up` --------------------------------------------------------------------

@dataclasses.dataclass
class Node:
    index: int
    name: str
    netns: str
    veth: str
    address: str
    # The "public" address on the management bridge (--access ssh), else None.
    management_address: str | None = None

    def socket(self, lab: str) -> Path:
        return node_socket(lab, self.index)

    def engine_url(self, lab: str) -> str:
        """The engine's own socket: how the lab itself drives it."""
        return f"unix://{self.socket(lab)}"

    def docker_host(self, lab: str) -> str:
        """How the outputs reach the engine."""
        if self.management_address:
            return f"ssh://root@{self.management_address}"
        return self.engine_url(lab)


class Lab:
    """One lab being brought up; each step is one method, run in order by `up`."""

    def __init__(self, spec: LabSpec, status: Status):
        self.spec, self.status = spec, status
        hosts = list(spec.network.hosts())
        public = list(spec.management_network.hosts()) if spec.access == "ssh" else []
        self.nodes = [
            Node(i, node_hostname(spec.name, i), node_netns(spec.name, i), node_veth(spec.name, i),
                 str(hosts[FIRST_NODE_ADDRESS_INDEX + i - 2]),
                 str(public[FIRST_NODE_ADDRESS_INDEX + i - 2]) if public else None)
            for i in range(1, spec.nodes + 1)
        ]
        # The root namespace's address on the management bridge.
        self.management_root = f"{public[0]}/{spec.management_network.prefixlen}" if public else None
        self.keystore_address = str(hosts[KEYSTORE_ADDRESS_INDEX - 1])
        # Classic mode's key-value store (stacks/classic.py says why etcd).
        self.keystore = "etcd" if spec.mode == "classic" else None
        self.clients: dict[int, docker.DockerClient] = {}
        self.ledger = ledger(spec.name)
        self.cgroup_procs: Path | None = None  # where our daemons join the lab's cgroup
        self.engines: dict[int, subprocess.Popen] = {}  # by node index, once started

    @property
    def name(self) -> str:
        return self.spec.name

    def steps(self) -> list[tuple[str, Callable[[], None]]]:
        spec = self.spec
        plan = [("Creating lab network", self.create_network)]
        if spec.access == "ssh":
            plan.append(("Creating the management network", self.create_management_network))
        if spec.firewall:
            # Before anything listens, as a cloud firewall is there before a droplet boots.
            plan.append(("Applying the firewall", self.apply_firewall))
        if self.keystore:
            plan.append((f"Starting key-value store ({self.keystore})", self.start_keystore))
        plan.append((f"Starting engines ({spec.nodes} nodes)", self.start_engines))
        if spec.access == "ssh":
            plan.append(("Starting SSH servers", self.start_ssh))
        if spec.mode == "classic":
            plan.append(("Checking the cluster store", self.form_cluster))
        elif not spec.bare:
            plan.append(("Forming the cluster", self.form_cluster))
        if not spec.bare:
            plan.append(("Creating the overlay network", self.create_overlay))
        return plan

    # Step: network -----------------------------------------------------------------------
    def create_network(self) -> None:
        spec, bridge, lab_mark = self.spec, bridge_name(self.name), mark(self.name)
        prefix = spec.network.prefixlen
        self._make_state()
        self._add_link(bridge, "type", "bridge")
        host.ip("link", "set", bridge, "alias", lab_mark, "mtu", str(spec.mtu_bytes), "up")
        # A root-namespace dockerd sets FORWARD to DROP and br_netfilter would then drop
        # bridged lab traffic: accept everything that stays on our bridge.
        host.run("iptables", "-w", "-I", "FORWARD", "-i", bridge, "-o", bridge,
                 "-m", "comment", "--comment", lab_mark, "-j", "ACCEPT")
        members = [(n.netns, n.veth, n.address) for n in self.nodes]
        if self.keystore:
            members.append((keystore_netns(self.name), keystore_veth(self.name), self.keystore_address))
        for netns, veth, address in members:
            self._add_namespace(netns)
            self._add_link(veth, "mtu", str(spec.mtu_bytes), "type", "veth",
                           "peer", "name", "eth0", "mtu", str(spec.mtu_bytes), "netns", netns)
            host.ip("link", "set", veth, "alias", lab_mark, "master", bridge, "up")
            host.ip("addr", "add", f"{address}/{prefix}", "dev", "eth0", netns=netns)
            host.ip("link", "set", "lo", "up", netns=netns)
            host.ip("link", "set", "eth0", "up", netns=netns)
            if spec.link_rate:
                self._shape(netns)

    def create_management_network(self) -> None:
        """The nodes' "public" side: eth1 in each node on bridge ob-NAME-m, which has the root
        namespace's address. The nodes get the connected route of this subnet and no other:
        they reach the root namespace and nothing beyond."""
        lab_mark, bridge = mark(self.name), management_bridge(self.name)
        prefix = self.spec.management_network.prefixlen
        self._add_link(bridge, "type", "bridge")
        host.ip("link", "set", bridge, "alias", lab_mark, "up")
        host.ip("addr", "add", str(self.management_root), "dev", bridge)
        for node in self.nodes:
            veth = management_veth(self.name, node.index)
            self._add_link(veth, "type", "veth", "peer", "name", "eth1", "netns", node.netns)
            host.ip("link", "set", veth, "alias", lab_mark, "master", bridge, "up")
            host.ip("addr", "add", f"{node.management_address}/{prefix}", "dev", "eth1", netns=node.netns)
            host.ip("link", "set", "eth1", "up", netns=node.netns)

    def firewall_rules(self) -> str:
        """stacks/firewall.py's inbound rules as an iptables-restore input for one node:
        OPERATOR sources are the management subnet on eth1, CLUSTER the lab subnet on eth0;
        whatever else arrives on eth0 or eth1 is dropped (loopback, the engine's own
        bridges and replies to the node's own connections are let through)."""
        spec, comment = self.spec, mark(self.name)
        keystore_port = classic.ETCD_CLIENT_PORT if self.keystore else None
        sources = {firewall.CLUSTER: ("eth0", str(spec.network))}
        if spec.access == "ssh":
            sources[firewall.OPERATOR] = ("eth1", str(spec.management_network))
        tag = f"-m comment --comment {comment}"
        lines = ["*mangle", f":{FIREWALL_CHAIN} - [0:0]",
                 f"-A PREROUTING {tag} -j {FIREWALL_CHAIN}",
                 f"-A {FIREWALL_CHAIN} -i lo {tag} -j RETURN",
                 f"-A {FIREWALL_CHAIN} -m conntrack --ctstate ESTABLISHED,RELATED {tag} -j RETURN"]
        for rule in firewall.inbound(spec.mode, keystore_port):
            if rule.source not in sources:
                continue
            iface, subnet = sources[rule.source]
            match = f"-p {rule.protocol}"
            if rule.ports:
                match += f" -m {rule.protocol} --dport {rule.ports[0]}:{rule.ports[1]}"
            lines.append(f"-A {FIREWALL_CHAIN} -i {iface} -s {subnet} {match} {tag} -j RETURN")
        lines += [f"-A {FIREWALL_CHAIN} -i {iface} {tag} -j DROP" for iface, _ in sources.values()]
        return "\n".join(lines + ["COMMIT"]) + "\n"

    def apply_firewall(self) -> None:
        rules = self.firewall_rules()
        netns = [n.netns for n in self.nodes] + ([keystore_netns(self.name)] if self.keystore else [])
        for ns in netns:
            # In the node's namespace, which takes them along when it is deleted.
            self.ledger.record("firewall", netns=ns, table="mangle", chain=FIREWALL_CHAIN)
            host.run("ip", "netns", "exec", ns, "iptables-restore", "-w", "--noflush", input=rules)

    def _make_state(self) -> None:
        """Marked state directories, the ledger, and the lab's cgroup, before anything else."""
        for directory in (run_dir(self.name), data_dir(self.name)):
            try:
                ownership.mark_dir(directory, self.name)
            except FileExistsError:
                raise _blocked(self.name, Foreign("directory", str(directory), f"rm -r {directory}")) from None
        relative = cgroup_parent(self.name)
        base = host.cgroup_hierarchy() / relative
        self.ledger.record("cgroup", relative=relative)  # the claim, before the directory exists
        # Daemons in a leaf of their own: under cgroup v2 a cgroup with processes in it
        # cannot have controllers for children, and the engines put containers below base.
        (base / "daemons").mkdir(parents=True, exist_ok=True)
        dev, ino = host.identity(base) or (0, 0)
        self.ledger.record("cgroup", relative=relative, path=str(base), dev=dev, ino=ino)
        self.cgroup_procs = base / "daemons" / "cgroup.procs"

    def _add_namespace(self, netns: str) -> None:
        """Made at a path of our own, its identity recorded, and only then given its name."""
        bind = netns_bind(self.name, netns)
        bind.parent.mkdir(exist_ok=True)
        bind.touch()
        host.run("unshare", f"--net={bind}", "true")
        dev, ino = host.identity(bind) or (0, 0)
        self.ledger.record("netns", name=netns, dev=dev, ino=ino)
        try:
            # `ip netns attach` names the namespace of a pid: the shell's own, which exec keeps.
            host.run("nsenter", f"--net={bind}", "--", "sh", "-c", 'exec ip netns attach "$0" "$$"', netns)
        except host.HostError:
            if host.netns_identity(netns) not in (None, (dev, ino)):
                raise _blocked(self.name, Foreign("namespace", netns, f"ip netns delete {netns}")) from None
            raise

    def _add_link(self, link: str, *args: str) -> None:
        """`ip link add LINK ...` with an interface index recorded before the link exists."""
        for _ in range(20):
            ifindex = random.randrange(*IFINDEX_RANGE)
            self.ledger.record("link", name=link, ifindex=ifindex)
            try:
                host.ip("link", "add", link, "index", str(ifindex), *args)
                return
            except host.HostError as exc:
                if host.link_exists(link):  # someone else took the name meanwhile
                    raise _blocked(self.name, Foreign("link", link, f"ip link delete {link}")) from None
                if "File exists" not in exc.stderr:  # else: the index was taken meanwhile
                    raise
        raise LabError(f"could not find a free interface index for {link}")

    def _shape(self, netns: str) -> None:
        rate = rate_bits_per_s(self.spec.link_rate or "")
        # tbf needs a bucket of at least one timer tick of traffic (4 ms at HZ=250) and of one
        # GSO super-packet (64 KiB), or it throttles below the rate.
        burst_bytes = max(rate // 8 // 250, 64 * 1024 + 1514)
        host.run("ip", "netns", "exec", netns, "tc", "qdisc", "replace", "dev", "eth0", "root",
                 "tbf", "rate", str(rate), "burst", str(burst_bytes), "latency", "20ms")

    # Step: key-value store (classic) -----------------------------------------------------
    def start_keystore(self) -> None:
        base = data_dir(self.name) / "keystore"
        base.mkdir(parents=True, exist_ok=True)
        addr = self.keystore_address
        # The key-value droplet's etcd runs with these same arguments (stacks/classic.py).
        cmd = ["etcd", *classic.etcd_args(addr, str(base / "etcd"))]
        log = run_dir(self.name) / "keystore.log"
        netns = netns_bind(self.name, keystore_netns(self.name))
        proc = self._spawn(["nsenter", f"--net={netns}", "--", *cmd], log, "keystore")
        _wait_for(lambda: _tcp_open_in(netns, addr, classic.ETCD_CLIENT_PORT), 20.0,
                  lambda: f"the {self.keystore} key-value store did not start: {_tail(log)}", proc)

    @property
    def keystore_url(self) -> str | None:
        return classic.store_url(self.keystore_address) if self.keystore else None

    # Step: engines -------------------------------------------------------------------------
    def start_engines(self) -> None:
        procs = {node.index: self._start_engine(node) for node in self.nodes}
        self.engines = procs
        deadline = time.monotonic() + ENGINE_START_TIMEOUT_S
        for node in self.nodes:
            _wait_for(lambda node=node: self._ping(node), max(deadline - time.monotonic(), 1.0),
                      lambda node=node: f"dockerd of {node.name} did not start: {self._engine_says(node)}",
                      procs[node.index])

    def _engine_log(self, node: Node) -> Path:
        return run_dir(self.name) / f"n{node.index}" / "dockerd.log"

    def _engine_says(self, node: Node) -> str:
        """What a node's engine said last about classic mode, else its last log lines."""
        log = self._engine_log(node)
        try:
            lines = log.read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        said = classic.engine_message(lines)
        return f"it says: {said}" if said else f"its last log lines: {_tail(log)}"

    def _start_engine(self, node: Node) -> subprocess.Popen:
        rdir = run_dir(self.name) / f"n{node.index}"
        ddir = data_dir(self.name) / f"n{node.index}"
        rdir.mkdir(parents=True, exist_ok=True)
        ddir.mkdir(parents=True, exist_ok=True)
        settings = {"deprecated-key-path": str(ddir / "key.json")}
        if self.keystore:
            # The 2015 topology, with the droplets' daemon.json settings (stacks/classic.py):
            # network state in the key-value store, gossip on eth0 (the lab network).
            settings.update(classic.engine_settings(self.keystore_address, "eth0"))
        config = rdir / "daemon.json"
        config.write_text(json.dumps(settings, indent=2) + "\n")
        dockerd = [
            "dockerd",
            # Own data root, exec root, pid file and socket: engines share nothing on disk.
            "--data-root", str(ddir), "--exec-root", str(rdir / "exec"),
            "--pidfile", str(rdir / "docker.pid"), "--host", node.engine_url(self.name),
            # Not /etc/docker: a user's daemon.json must not leak in, and the engine ID is
            # derived from key.json, which would otherwise be shared (identical engine IDs).
            "--config-file", str(config),
            # Containers in a cgroup named after the lab, so `down` finds and removes them.
            "--cgroup-parent", f"/{cgroup_parent(self.name)}",
            "--log-level", "warn",
        ]
        # nsenter (not `ip netns exec`, which remounts /sys and breaks dockerd's cgroup
        # discovery) for the network; its own UTS namespace so each engine has its own
        # hostname: classic gossip and swarm refuse duplicate node names.
        cmd = ["nsenter", f"--net={netns_bind(self.name, node.netns)}", "--",
               "unshare", "--uts", "--",
               "sh", "-c", 'hostname "$0" && exec "$@"', node.name, *dockerd]
        return self._spawn(cmd, rdir / "dockerd.log", f"dockerd {node.name}")

    def _spawn(self, cmd: list[str], log: Path, what: str) -> subprocess.Popen:
        """A daemon in the lab's cgroup from its first instruction (so its children are the
        lab's too, and one killed before we record its pid is still found), pid recorded."""
        assert self.cgroup_procs is not None, "the lab's state is made in the first step"
        proc = _spawn(["sh", "-c", 'echo "$$" > "$0" && exec "$@"', str(self.cgroup_procs), *cmd], log)
        self.ledger.record("process", pid=proc.pid, start=host.start_time(proc.pid), what=what)
        return proc

    # Step: SSH (--access ssh) ----------------------------------------------------------------
    def start_ssh(self) -> None:
        """sshd in each node's namespace, on its management address, as a droplet has it:
        root logs in with the lab's key, and a session's DOCKER_HOST is the node's engine
        (what `docker system dial-stdio`, run by the docker SDK over ssh://, talks to)."""
        keys = ssh_dir(self.name)
        keys.mkdir(mode=0o700, exist_ok=True)
        client_key = keys / "id_ed25519"
        _keygen(client_key, mark(self.name))
        (keys / "authorized_keys").write_text(Path(f"{client_key}.pub").read_text())
        # sshd's privilege separation directory (systemd-tmpfiles makes it where Debian's ssh
        # service is enabled; that service is never started here): a system directory, left.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        procs = {}
        for node in self.nodes:
            rdir = run_dir(self.name) / f"n{node.index}"
            host_key = rdir / "ssh_host_ed25519_key"
            _keygen(host_key, mark(self.name))
            config = rdir / "sshd_config"
            (rdir / "home").mkdir(mode=0o700, exist_ok=True)
            config.write_text(_sshd_config(node, host_key, keys / "authorized_keys", node.engine_url(self.name),
                                           rdir / "home"))
            # The node's network and, from its engine (the same process since its exec
            # chain began), its hostname: a session sees the node as a droplet's would.
            procs[node.index] = self._spawn(
                ["nsenter", f"--net={netns_bind(self.name, node.netns)}",
                 f"--uts=/proc/{self.engines[node.index].pid}/ns/uts", "--", SSHD, "-D", "-e", "-f", str(config)],
                rdir / "sshd.log", f"sshd {node.name}")
        self._write_known_hosts()
        for node in self.nodes:
            log = run_dir(self.name) / f"n{node.index}" / "sshd.log"
            # From the root namespace, over the management bridge: the path bench takes.
            _wait_for(lambda node=node: _tcp_open(node.management_address, SSH_PORT), SSH_START_TIMEOUT_S,
                      lambda node=node, log=log: f"sshd of {node.name} did not start: {_tail(log)}",
                      procs[node.index])

    def _write_known_hosts(self) -> None:
        """The nodes' host keys in the user's known_hosts, each line marked with the lab's
        mark as its comment: the docker SDK checks host keys there (and refuses unknown ones)."""
        path = known_hosts_file()
        made_dir, made_file = not path.parent.exists(), not path.exists()
        self.ledger.record("known_hosts", path=str(path), made_dir=made_dir, made_file=made_file)
        path.parent.mkdir(mode=0o700, exist_ok=True)
        if made_file:
            path.touch(mode=0o600)
        lines = []
        for node in self.nodes:
            key = (run_dir(self.name) / f"n{node.index}" / "ssh_host_ed25519_key.pub").read_text().split()
            lines.append(f"{node.management_address} {key[0]} {key[1]} {mark(self.name)}")
        host.known_hosts_add(path, lines)

    def client(self, node: Node) -> docker.DockerClient:
        # The lab drives its engines on their sockets, whatever --access gives bench.
        if node.index not in self.clients:
            self.clients[node.index] = docker.DockerClient(base_url=node.engine_url(self.name), timeout=30)
        return self.clients[node.index]

    def _ping(self, node: Node) -> bool:
        if not node.socket(self.name).exists():
            return False
        try:
            return bool(self.client(node).ping())
        except (docker.errors.DockerException, OSError):
            return False

    # Step: cluster ---------------------------------------------------------------------------
    def form_cluster(self) -> None:
        if self.spec.mode == "classic":
            # Each engine registers with the store; the overlay step proves it works.
            for node in self.nodes:
                store = self.client(node).info().get("ClusterStore", "")
                if store != self.keystore_url:
                    raise LabError(f"{node.name} ignores --cluster-store (reports {store!r}): "
                                   "this engine cannot run classic mode, use --mode swarm")
            return
        manager = self.nodes[0]
        mclient = self.client(manager)
        mclient.swarm.init(advertise_addr=manager.address, listen_addr=f"{manager.address}:2377")
        token = mclient.swarm.attrs["JoinTokens"]["Worker"]
        for node in self.nodes[1:]:
            self.client(node).swarm.join(remote_addrs=[f"{manager.address}:2377"], join_token=token,
                                         listen_addr=f"{node.address}:2377",
                                         advertise_addr=node.address)
        _wait_for(lambda: self._swarm_ready(mclient), 30.0,
                  lambda: "swarm nodes did not all become ready within 30 s")

    def _swarm_ready(self, mclient: docker.DockerClient) -> bool:
        nodes = mclient.nodes.list()
        return len(nodes) == self.spec.nodes and all(n.attrs["Status"]["State"] == "ready" for n in nodes)

    def create_overlay(self) -> None:
        manager = self.client(self.nodes[0])
        if self.spec.mode == "swarm":
            manager.networks.create(OVERLAY_NETWORK, driver="overlay", attachable=True,
                                    labels={"overlay-bench.lab": self.name})
            return
        try:
            manager.networks.create(OVERLAY_NETWORK, driver="overlay", labels={"overlay-bench.lab": self.name})
        except docker.errors.APIError as exc:
            # An engine without its store still runs; its first use of the store fails.
            said = " ".join(str(exc.explanation or exc).split())
            raise LabError(f"the engine of {self.nodes[0].name} cannot use its key-value store "
                           f"{self.keystore_url}: {said}") from None
        # Global scope: every engine must see it through the store before we say "up".
        for node in self.nodes[1:]:
            _wait_for(lambda node=node: bool(self.client(node).networks.list(names=[OVERLAY_NETWORK])), 20.0,
                      lambda node=node: f"{node.name} does not see the overlay network through the "
                                        f"key-value store {self.keystore_url}: {self._engine_says(node)}")

    # Outputs ---------------------------------------------------------------------------------
    def outputs(self) -> dict[str, Any]:
        # The first node is the manager: swarm init ran there, the overlay was made there.
        key = str(ssh_dir(self.name) / "id_ed25519") if self.spec.access == "ssh" else None
        return outputs_schema.document(
            stack=self.name, provider="local", mode=self.spec.mode,
            nodes=[outputs_schema.node(n.name, n.address, n.docker_host(self.name), ssh_key_path=key)
                   for n in self.nodes],
            keystore=(outputs_schema.keystore(f"{self.name}-keystore", self.keystore_address,
                                              self.keystore_url) if self.keystore_url else None),
            overlay_network=OVERLAY_NETWORK, link_rate=self.spec.link_rate,
            mtu_bytes=self.spec.mtu_bytes)

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
        self.clients.clear()


# --- process helpers -----------------------------------------------------------------------

def _spawn(cmd: list[str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        # A new session and no inherited pipes: the daemon outlives this command, and a
        # caller reading our stdout (pulumi-command) is not kept waiting for it.
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)


def _wait_for(ready: Callable[[], bool], timeout_s: float, why: Callable[[], str],
              process: subprocess.Popen | None = None) -> None:
    """Poll `ready` with backoff; fail at the deadline, or at once if `process` exits."""
    def check() -> bool:
        if ready():
            return True
        if process is not None and process.poll() is not None:
            raise LabError(why())
        return False

    if not poll(check, timeout_s, delay_s=0.05, max_delay_s=0.5, backoff=1.5):
        raise LabError(why())


def _keygen(path: Path, comment: str) -> None:
    host.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path))


def _sshd_config(node: Node, host_key: Path, authorized_keys: Path, engine: str, home: Path) -> str:
    return f"""\
# sshd of lab node {node.name}, in its namespace, on its management address only.
ListenAddress {node.management_address}:{SSH_PORT}
HostKey {host_key}
PidFile none
AuthorizedKeysFile {authorized_keys}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
# The keys are in the lab's own state directory, not in a home directory.
StrictModes no
# As Debian's default sshd_config: a remote command's environment beyond these is refused.
AcceptEnv LANG LC_*
# Every session's docker CLI talks to this node's engine (docker system dial-stdio). HOME
# is the node's own, as a droplet's root has one: this machine's dotfiles (a shell's rc
# files, the docker CLI's configuration) stay out of the node's sessions.
SetEnv DOCKER_HOST={engine} HOME={home}
"""


def _tcp_open(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=1).close()
        return True
    except OSError:
        return False


def _tcp_open_in(netns: Path, address: str, port: int) -> bool:
    # bash's /dev/tcp inside the namespace: no route from the root namespace to the lab.
    proc = subprocess.run(["nsenter", f"--net={netns}", "--", "bash", "-c",
                           f"exec 3<>/dev/tcp/{address}/{port}"], capture_output=True, timeout=5)
    return proc.returncode == 0


def _tail(log: Path, lines: int = 5) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


# --- state file ---------------------------------------------------------------------------

def _state_file(name: str) -> Path:
    return data_dir(name) / "lab.json"


def _write_state(spec: LabSpec, doc: dict[str, Any]) -> None:
    path = _state_file(spec.name)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"spec": dataclasses.asdict(spec), "outputs": doc}, indent=2))
    os.replace(tmp, path)


def _read_state(name: str) -> dict[str, Any] | None:
    if ownership.dir_owner(data_dir(name), name) != "ours":
        return None
    try:
        return json.loads(_state_file(name).read_text())
    except (OSError, ValueError):
        return None


# --- what is the lab's, and what only looks like it ---------------------------------------

@dataclasses.dataclass(frozen=True)
class Foreign:
    """Something with a lab-like name that the lab did not make: left alone and reported."""

    kind: str  # namespace, link, directory, cgroup, process
    name: str
    remove: str  # the command that would remove it
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.name}" + (f" ({self.detail})" if self.detail else "")


@dataclasses.dataclass
class _Survey:
    """Lab `name`'s objects on this machine (by kind), and the look-alikes that are not its."""

    namespaces: list[str]
    links: list[str]
    firewall_rules: list[str]
    processes: list[int]
    mounts: list[str]
    cgroups: list[str]
    known_hosts: list[str]
    directories: list[str]
    foreign: list[Foreign]

    def residue(self) -> dict[str, list]:
        found = dataclasses.asdict(self)
        del found["foreign"]
        return {kind: items for kind, items in found.items() if items}


def _lab_like_link(name: str, ifname: str) -> bool:
    return ifname == bridge_name(name) or ifname.startswith(f"ob-{name}-")


def _survey(name: str, report_processes: bool = False) -> _Survey:
    """Ours: what carries the lab's mark, or what its ledger records with an identity that
    still holds. Processes: those it started (pid and start time), those in its cgroup, and
    those in its namespaces. `report_processes` also looks for others' processes that
    mention the lab's paths or run in a look-alike namespace (a /proc scan, for reports)."""
    rdir, ddir = run_dir(name), data_dir(name)
    owners = {d: ownership.dir_owner(d, name) for d in (rdir, ddir)}
    book = ledger(name)
    recorded = (lambda kind: book.entries(kind)) if owners[rdir] == "ours" else (lambda kind: [])
    foreign: list[Foreign] = [Foreign("directory", str(d), f"rm -r {d}", "no overlay-bench marker")
                              for d, owner in owners.items() if owner == "foreign"]
    ours_dirs = [d for d, owner in owners.items() if owner in ("ours", "empty")]

    # Namespaces: the identity recorded when we made it must be the one under its name.
    made = {(e["name"], (e["dev"], e["ino"])) for e in recorded("netns") if {"name", "dev", "ino"} <= set(e)}
    named = {ns: host.netns_identity(ns) for ns in host.netns_list() if ns.startswith(f"ob-{name}-")}
    namespaces = sorted(ns for ns, ident in named.items() if (ns, ident) in made)
    alive = {ident for ns, ident in made
             if named.get(ns) == ident or host.identity(netns_bind(name, ns)) == ident}
    others = {ns: ident for ns, ident in named.items() if ns not in namespaces}

    # Links: our alias, or the name and index the ledger recorded before creating it.
    made_links = {(e["name"], e["ifindex"]) for e in recorded("link") if {"name", "ifindex"} <= set(e)}
    links = []
    for link in host.links():
        ifname = link["ifname"]
        if link.get("ifalias") == mark(name) or (ifname, link["ifindex"]) in made_links:
            links.append(ifname)
        elif _lab_like_link(name, ifname):
            foreign.append(Foreign("link", ifname, f"ip link delete {ifname}", "no overlay-bench alias"))

    # Cgroups: the lab claims its name in every hierarchy (the engines make it in each); its
    # processes are found in the one we made and recorded.
    claims = recorded("cgroup")
    cgroup_dirs = [str(d) for d in host.cgroup_dirs(cgroup_parent(name))]
    if not claims:
        foreign += [Foreign("cgroup", d, f"rmdir {d}", "not made by overlay-bench") for d in cgroup_dirs]
        cgroup_dirs = []
    pids = {e["pid"] for e in recorded("process")
            if e.get("start") is not None and host.start_time(e["pid"]) == e["start"]}
    for claim in claims:
        if {"path", "dev", "ino"} <= set(claim) and host.identity(claim["path"]) == (claim["dev"], claim["ino"]):
            pids.update(host.cgroup_pids(Path(claim["path"])))
    pids.update(host.pids_in_netns(alive))
    pids.discard(os.getpid())

    for ns, ident in sorted(others.items()):
        inside = host.pids_in_netns({ident}) if ident else []
        count = f"; {len(inside)} process{'es' if len(inside) > 1 else ''} in it" if inside else ""
        foreign.append(Foreign("namespace", ns, f"ip netns delete {ns}", f"not made by this lab{count}"))
        if report_processes:
            foreign += [Foreign("process", str(pid), f"kill {pid}", f"{host.command_name(pid)}, in namespace {ns}")
                        for pid in inside if pid not in pids]
    if report_processes:
        for directory in (rdir, ddir):
            foreign += [Foreign("process", str(pid), f"kill {pid}",
                                f"{host.command_name(pid)}, its command line mentions {directory}/")
                        for pid in host.pids_mentioning(f"{directory}/") if pid not in pids]
    return _Survey(
        namespaces=namespaces,
        links=sorted(links),
        firewall_rules=host.iptables_rules(mark(name)),
        processes=sorted(pids),
        mounts=host.mounts_under(*map(str, ours_dirs)) if ours_dirs else [],
        cgroups=cgroup_dirs,
        known_hosts=[f"{path}: {line.split()[0]}" for path in _known_hosts_files(recorded("known_hosts"))
                     for line in host.known_hosts_lines(path, mark(name))],
        directories=[str(d) for d in ours_dirs],
        foreign=foreign,
    )


def _known_hosts_files(recorded: list[dict[str, Any]]) -> list[Path]:
    """Where the lab's known_hosts lines may be: the files its ledger names, and the user's
    (lines there carry the lab's mark whatever the ledger says)."""
    return sorted({Path(e["path"]) for e in recorded if "path" in e} | {known_hosts_file()})


def _blocked(name: str, first: Foreign, more: int = 0, instead: str = "--name") -> LabError:
    also = (f" (and {more} more: see `python -m stacks.local residue --name {name}`)" if more else "")
    return LabError(f"{first.kind} {first.name} exists and was not made by overlay-bench for lab "
                    f"{name}: remove it with `{first.remove}`, or choose another {instead}{also}")


def _refuse_blockers(lab: Lab, survey: _Survey) -> None:
    """Look-alikes whose names `up` needs (or its state directories and cgroup), and host
    keys of others for the nodes' management addresses (the docker SDK would take the first
    key it finds there for a node's, and refuse the node)."""
    needed = {bridge_name(lab.name)} | {n.netns for n in lab.nodes} | {n.veth for n in lab.nodes}
    if lab.keystore:
        needed |= {keystore_netns(lab.name), keystore_veth(lab.name)}
    if lab.spec.access == "ssh":
        needed |= {management_bridge(lab.name)} | {management_veth(lab.name, n.index) for n in lab.nodes}
    blockers = [f for f in survey.foreign if f.kind in ("directory", "cgroup") or f.name in needed]
    if blockers:
        raise _blocked(lab.name, blockers[0], len(blockers) - 1)
    if lab.spec.access == "ssh":
        path = known_hosts_file()
        keys = [Foreign("host key", f"for {n.management_address} in {path}",
                        f"ssh-keygen -f {path} -R {n.management_address}")
                for n in lab.nodes
                for line in host.known_hosts_lines(path, hostname=n.management_address)
                if line.split()[-1] != mark(lab.name)]
        if keys:
            raise _blocked(lab.name, keys[0], len(keys) - 1, instead="--management-subnet")


# --- one writer, and interruptions ------------------------------------------------------------

def _remove_empty_roots() -> None:
    for root in (LOCK_ROOT, RUN_ROOT, DATA_ROOT):
        try:
            root.rmdir()  # only when no other lab (or lock) is left
        except OSError:
            pass


@contextlib.contextmanager
def _writer(name: str) -> Iterator[None]:
    """This process is the one changing lab `name`, or LabError at once."""
    try:
        with contextlib.ExitStack() as stack:
            try:
                # The lock file stays while the lab has anything on the machine.
                stack.enter_context(locks.exclusive(lock_path(name),
                                                    keep=lambda: bool(_survey(name).residue())))
            except locks.Busy as busy:
                raise LabError(f"lab {name} is being changed by {busy.holder()}: wait for it to finish "
                               "(or stop that process), then run this again") from None
            yield
    finally:
        _remove_empty_roots()


@contextlib.contextmanager
def _signals(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """SIGINT and SIGTERM go to `handler` meanwhile (only the main thread can set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _raise_interrupted(signum: int, _frame: Any) -> None:
    raise Interrupted(signum)


def _ignore(_signum: int, _frame: Any) -> None:
    """While a partial lab is removed: a second Ctrl-C must not leave half of it behind."""


# --- public API -----------------------------------------------------------------------------

def up(name: str, nodes: int = 2, mode: str = "classic", link_rate: str | None = None,
       mtu_bytes: int = 1500, subnet: str = DEFAULT_SUBNET, status: Status | None = None,
       retain: bool = False, **more: Any) -> dict[str, Any]:
    """Bring a lab up (or find it already up with the same spec) and return its outputs.

    `more`: the other LabSpec fields (access, firewall, bare, management_subnet)."""
    spec = LabSpec(name, nodes, mode, link_rate, mtu_bytes, subnet, **more)
    status = status or Status()
    spec.check()
    _require_root("up")
    with _writer(name), _signals(_raise_interrupted):
        state = _read_state(name)
        if state and state.get("spec") == dataclasses.asdict(spec) and _healthy(name, state):
            with status.step(f"Lab {name} is already up"):
                pass
            return state["outputs"]
        preflight(spec)
        lab = Lab(spec, status)
        survey = _survey(name)
        _refuse_blockers(lab, survey)
        try:
            if survey.residue():
                with status.step("Removing leftovers of an earlier lab"):
                    _remove(name)
            for title, action in lab.steps():
                with status.step(title):
                    action()
            doc = lab.outputs()
            _write_state(spec, doc)
            return doc
        except BaseException:
            if not retain:
                with _signals(_ignore), status.step("Removing the partial lab"):
                    _remove(name)
            raise
        finally:
            lab.close()


@contextlib.contextmanager
def running(name: str, status: Status | None = None, **spec: Any) -> Iterator[dict[str, Any]]:
    """A lab for the length of a `with` block: up(name, **spec), its outputs, then down.

    Down happens whatever the block does, and what it leaves is checked: LabError names it.
    """
    doc = up(name, status=status, **spec)
    try:
        yield doc
    finally:
        down(name, status=status)
        left = residue(name)
        if left:
            raise LabError(f"lab {name} left {left} after down")


def _healthy(name: str, state: dict[str, Any]) -> bool:
    """Every engine answers on its socket, the manager still has the overlay network (unless
    the lab is bare), and every node's sshd answers (--access ssh)."""
    doc, spec = state["outputs"], state.get("spec") or {}
    try:
        for index, node in enumerate(doc["nodes"], start=1):
            with contextlib.closing(docker.DockerClient(base_url=f"unix://{node_socket(name, index)}",
                                                        timeout=5)) as client:
                client.ping()
                if not spec.get("bare") and node["role"] == "manager" \
                        and not client.networks.list(names=[doc["overlay_network"]]):
                    return False
            if node["docker_host"].startswith("ssh://") \
                    and not _tcp_open(node["docker_host"].rsplit("@", 1)[1], SSH_PORT):
                return False
        return True
    except (docker.errors.DockerException, OSError, KeyError):
        return False


def status_of(name: str) -> dict[str, Any]:
    """The outputs of a lab that is up; LabError when there is none or it is broken."""
    LabSpec(name).check()
    _require_root("status")
    state = _read_state(name)
    if not state:
        raise LabError(f"no lab named {name!r} is up: run `python -m stacks.local up --name {name}`")
    if not _healthy(name, state):
        raise LabError(f"lab {name!r} is not healthy (an engine does not answer): "
                       f"run `python -m stacks.local up --name {name}` again to rebuild it")
    return state["outputs"]


def down(name: str, status: Status | None = None) -> list[Foreign]:
    """Remove everything lab `name` made (a no-op when nothing is there); returns the
    look-alikes it left alone."""
    LabSpec(name).check()
    _require_root("down")
    status = status or Status()
    with _writer(name), status.step(f"Removing lab {name}"):
        _remove(name)
    return foreign(name)


def _remove(name: str) -> None:
    # A second pass catches what a dying engine made during the first (seen once: an
    # overlay sandbox's nsfs mount appearing after the unmount pass).
    deadline = time.monotonic() + DOWN_TIMEOUT_S
    _remove_once(name)
    while _survey(name).residue() and time.monotonic() < deadline:
        time.sleep(0.2)
        _remove_once(name)
    left = _survey(name).residue()
    if left:
        raise LabError(f"lab {name} could not be removed completely: {left}")


def _remove_once(name: str) -> None:
    found = _survey(name)
    alive = host.kill_all(found.processes)
    if alive:
        raise LabError(f"processes {alive} of lab {name} survived SIGKILL: check `ps` for them")
    # Named namespaces first, while our own handles on them (under the run directory) keep
    # them alive: the identity just checked cannot pass to a new namespace meanwhile.
    for netns in found.namespaces:
        host.ip("netns", "delete", netns, check=False)
    # Swarm-mode engines bind-mount namespaces under the exec root and never unmount them;
    # those mounts (and our handles) would keep the namespaces, and their veths, alive.
    host.unmount_all(*found.directories)
    for link in found.links:
        host.ip("link", "delete", link, check=False)
    for rule in found.firewall_rules:
        host.iptables_delete(rule)
    for cgroup in found.cgroups:
        host.remove_cgroup(Path(cgroup))
    _remove_known_hosts(name)
    # The state directories hold the ledger: they go last, once nothing they record is left.
    left = _survey(name).residue()
    if set(left) <= {"directories"}:
        for directory in found.directories:
            shutil.rmtree(directory, ignore_errors=True)
    _remove_empty_roots()


def _remove_known_hosts(name: str) -> None:
    """The lab's lines (its mark is their comment); then the file and ~/.ssh themselves if
    the lab made them and nothing else is in them."""
    recorded = ledger(name).entries("known_hosts") if ownership.dir_owner(run_dir(name), name) == "ours" else []
    for path in _known_hosts_files(recorded):
        host.known_hosts_remove(path, mark(name))
    for entry in recorded:
        path = Path(entry.get("path", ""))
        with contextlib.suppress(OSError):
            if entry.get("made_file") and path.is_file() and not path.read_text().strip():
                path.unlink()
            if entry.get("made_dir"):
                path.parent.rmdir()  # only when empty


def residue(name: str) -> dict[str, list]:
    """What lab `name` has on this machine, by kind; empty when nothing is left."""
    LabSpec(name).check()
    _require_root("residue")
    return _survey(name).residue()


def foreign(name: str) -> list[Foreign]:
    """Things with lab `name`'s names that it did not make (left alone by up, down, residue)."""
    LabSpec(name).check()
    _require_root("residue")
    return _survey(name, report_processes=True).foreign


def list_labs() -> list[str]:
    """Names of every lab with anything left on this machine, found by marks alone: marked
    state directories, links with a lab's alias, firewall rules with its comment, locks."""
    _require_root("down --all")
    names = set()
    for root in (RUN_ROOT, DATA_ROOT):
        if root.is_dir():
            names.update(p.name for p in root.iterdir() if NAME_RE.fullmatch(p.name)
                         and ownership.dir_owner(p, p.name) in ("ours", "empty"))
    if LOCK_ROOT.is_dir():
        names.update(p.stem for p in LOCK_ROOT.glob("*.lock") if NAME_RE.fullmatch(p.stem))
    marked = re.compile(rf"{re.escape(mark(''))}({NAME_RE.pattern})")
    known_hosts = [line.split()[-1] for line in host.known_hosts_lines(known_hosts_file())]
    for text in [link.get("ifalias") or "" for link in host.links()] + sorted(host.iptables_comments()) \
            + known_hosts:
        match = marked.fullmatch(text)
        if match:
            names.add(match.group(1))
    return sorted(names)


def lab_like_names() -> list[str]:
    """Every name that namespaces, links, state directories or cgroups on this machine look
    like a lab's under, marked or not: where `down --all` looks for look-alikes to report."""
    names = set()
    for text in host.netns_list() + [link["ifname"] for link in host.links()]:
        match = re.fullmatch(rf"ob-({NAME_RE.pattern})(-.+)?", text)
        if match:
            names.add(match.group(1))
    for root in (RUN_ROOT, DATA_ROOT):
        if root.is_dir():
            names.update(p.name for p in root.iterdir() if NAME_RE.fullmatch(p.name))
    for cgroup in [*host.CGROUP_ROOT.glob("overlay-bench-*"), *host.CGROUP_ROOT.glob("*/overlay-bench-*")]:
        match = re.fullmatch(rf"overlay-bench-({NAME_RE.pattern})", cgroup.name)
        if match:
            names.add(match.group(1))
    return sorted(names)
