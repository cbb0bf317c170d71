"""The local lab: N network-namespace nodes on one Linux machine, each with its own dockerd.

Topology of a lab NAME (everything carries the name, so two labs live side by side):

    bridge ob-NAME (no address: the root namespace is not on the lab network)
      ├─ veth ob-NAME-kv  <-> eth0 in netns ob-NAME-kv   10.213.0.2   etcd (classic mode only)
      ├─ veth ob-NAME-1   <-> eth0 in netns ob-NAME-n1   10.213.0.11  dockerd, hostname NAME-node1
      └─ veth ob-NAME-2   <-> eth0 in netns ob-NAME-n2   10.213.0.12  dockerd, hostname NAME-node2

Nodes have only the connected route of the lab subnet: nothing they send can leave it.
State lives in /run/overlay-bench/NAME (sockets, pid files, logs) and
/var/lib/overlay-bench/NAME (data roots, lab.json); `down` finds everything again by name.
`up` is a plan of steps run in order (kind's habit); a failure tears the partial lab down.
"""
from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import docker
import docker.errors

from stacks import outputs as outputs_schema
from stacks.local import host
from stacks.local.progress import Status
from stacks.local.spec import DEFAULT_SUBNET, NAME_RE, LabError, LabSpec, rate_bits_per_s

RUN_ROOT = Path("/run/overlay-bench")
DATA_ROOT = Path("/var/lib/overlay-bench")
OVERLAY_NETWORK = "overlay-bench"
KEYSTORE_ADDRESS_INDEX = 2
FIRST_NODE_ADDRESS_INDEX = 11
ENGINE_START_TIMEOUT_S = 40.0
DOWN_TIMEOUT_S = 10.0
# Classic (--cluster-store) mode was removed from the engine in Docker 23.0.
CLASSIC_MAX_ENGINE_MAJOR = 22


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


def node_hostname(name: str, index: int) -> str:
    return f"{name}-node{index}"


def run_dir(name: str) -> Path:
    return RUN_ROOT / name


def data_dir(name: str) -> Path:
    return DATA_ROOT / name


def cgroup_parent(name: str) -> str:
    return f"overlay-bench-{name}"


def firewall_comment(name: str) -> str:
    return f"overlay-bench:{name}"


def node_socket(name: str, index: int) -> Path:
    return run_dir(name) / f"n{index}" / "docker.sock"


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


def keystore_kind() -> str:
    """Consul when installed (as in 2015), else etcd from Debian."""
    return "consul" if shutil.which("consul") else "etcd"


def preflight(spec: LabSpec) -> None:
    spec.check()
    if os.geteuid() != 0:
        raise LabError("the local lab needs root (network namespaces, bridges, dockerd): run it with sudo")
    for tool, package in REQUIRED_TOOLS.items():
        if not shutil.which(tool):
            raise LabError(f"`{tool}` not found: install it with `apt-get install {package}` "
                           "(or run `make setup`)")
    if spec.mode == "classic":
        if keystore_kind() == "etcd" and not shutil.which("etcd"):
            raise LabError("classic mode needs a key-value store: install etcd with "
                           "`apt-get install etcd-server` (or run `make setup`), or use --mode swarm")
        major, _minor, full = engine_version()
        if major > CLASSIC_MAX_ENGINE_MAJOR:
            raise LabError(f"classic mode (--cluster-store) was removed in Docker 23.0 and this "
                           f"engine is {full}: use --mode swarm")
    bridge = bridge_name(spec.name)
    if host.link_exists(bridge) and host.link_alias(bridge) != firewall_comment(spec.name):
        raise LabError(f"a link named {bridge} exists and was not made by overlay-bench: "
                       "remove it or choose another --name")
    net = spec.network
    for iface, address, prefix in host.root_addresses():
        if ipaddress.IPv4Network(f"{address}/{prefix}", strict=False).overlaps(net):
            raise LabError(f"subnet {net} overlaps {address}/{prefix} on {iface}, which is not "
                           "the lab's: choose another with --subnet")


# --- the plan of `up` --------------------------------------------------------------------

@dataclasses.dataclass
class Node:
    index: int
    name: str
    netns: str
    veth: str
    address: str

    def socket(self, lab: str) -> Path:
        return node_socket(lab, self.index)

    def docker_host(self, lab: str) -> str:
        return f"unix://{self.socket(lab)}"


class Lab:
    """One lab being brought up; each step is one method, run in order by `up`."""

    def __init__(self, spec: LabSpec, status: Status):
        self.spec, self.status = spec, status
        hosts = list(spec.network.hosts())
        self.nodes = [
            Node(i, node_hostname(spec.name, i), node_netns(spec.name, i), node_veth(spec.name, i),
                 str(hosts[FIRST_NODE_ADDRESS_INDEX + i - 2]))
            for i in range(1, spec.nodes + 1)
        ]
        self.keystore_address = str(hosts[KEYSTORE_ADDRESS_INDEX - 1])
        self.keystore = keystore_kind() if spec.mode == "classic" else None
        self.clients: dict[int, docker.DockerClient] = {}

    @property
    def name(self) -> str:
        return self.spec.name

    def steps(self) -> list[tuple[str, Callable[[], None]]]:
        plan = [("Creating lab network", self.create_network)]
        if self.keystore:
            plan.append((f"Starting key-value store ({self.keystore})", self.start_keystore))
        plan += [
            (f"Starting engines ({self.spec.nodes} nodes)", self.start_engines),
            ("Forming the cluster" if self.spec.mode == "swarm" else "Checking the cluster store",
             self.form_cluster),
            ("Creating the overlay network", self.create_overlay),
        ]
        return plan

    # Step: network -----------------------------------------------------------------------
    def create_network(self) -> None:
        spec, bridge = self.spec, bridge_name(self.name)
        prefix = spec.network.prefixlen
        host.ip("link", "add", bridge, "type", "bridge")
        # The alias marks the bridge as ours: preflight refuses a foreign bridge of that name.
        host.ip("link", "set", bridge, "alias", firewall_comment(self.name), "mtu", str(spec.mtu_bytes), "up")
        # A root-namespace dockerd sets FORWARD to DROP and br_netfilter would then drop
        # bridged lab traffic: accept everything that stays on our bridge.
        host.run("iptables", "-w", "-I", "FORWARD", "-i", bridge, "-o", bridge,
                 "-m", "comment", "--comment", firewall_comment(self.name), "-j", "ACCEPT")
        members = [(n.netns, n.veth, n.address) for n in self.nodes]
        if self.keystore:
            members.append((keystore_netns(self.name), keystore_veth(self.name), self.keystore_address))
        for netns, veth, address in members:
            host.ip("netns", "add", netns)
            host.ip("link", "add", veth, "mtu", str(spec.mtu_bytes), "type", "veth",
                    "peer", "name", "eth0", "mtu", str(spec.mtu_bytes), "netns", netns)
            host.ip("link", "set", veth, "master", bridge, "up")
            host.ip("addr", "add", f"{address}/{prefix}", "dev", "eth0", netns=netns)
            host.ip("link", "set", "lo", "up", netns=netns)
            host.ip("link", "set", "eth0", "up", netns=netns)
            if spec.link_rate:
                self._shape(netns)

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
        if self.keystore == "consul":
            cmd = ["consul", "agent", "-server", "-bootstrap", "-data-dir", str(base),
                   "-bind", addr, "-client", addr, "-node", f"{self.name}-keystore"]
            port = 8500
        else:
            # libkv speaks only etcd's v2 API; the peer port stays on loopback.
            cmd = ["etcd", "--name", f"{self.name}-keystore", "--data-dir", str(base / "etcd"),
                   "--enable-v2=true",
                   "--listen-client-urls", f"http://{addr}:2379",
                   "--advertise-client-urls", f"http://{addr}:2379",
                   "--listen-peer-urls", "http://127.0.0.1:2380",
                   "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
                   "--initial-cluster", f"{self.name}-keystore=http://127.0.0.1:2380"]
            port = 2379
        log = run_dir(self.name) / "keystore.log"
        proc = _spawn(["nsenter", f"--net=/var/run/netns/{keystore_netns(self.name)}", "--", *cmd], log)
        _wait_for(lambda: _tcp_open_in(keystore_netns(self.name), addr, port), 20.0,
                  lambda: f"the {self.keystore} key-value store did not start: {_tail(log)}", proc)

    @property
    def keystore_url(self) -> str | None:
        if not self.keystore:
            return None
        port = 8500 if self.keystore == "consul" else 2379
        return f"{self.keystore}://{self.keystore_address}:{port}"

    # Step: engines -------------------------------------------------------------------------
    def start_engines(self) -> None:
        procs = {node.index: self._start_engine(node) for node in self.nodes}
        deadline = time.monotonic() + ENGINE_START_TIMEOUT_S
        for node in self.nodes:
            log = run_dir(self.name) / f"n{node.index}" / "dockerd.log"
            _wait_for(lambda: self._ping(node), max(deadline - time.monotonic(), 1.0),
                      lambda: f"dockerd of {node.name} did not start; its last log lines: {_tail(log)}",
                      procs[node.index])

    def _start_engine(self, node: Node) -> subprocess.Popen:
        rdir = run_dir(self.name) / f"n{node.index}"
        ddir = data_dir(self.name) / f"n{node.index}"
        rdir.mkdir(parents=True, exist_ok=True)
        ddir.mkdir(parents=True, exist_ok=True)
        config = rdir / "daemon.json"
        config.write_text(json.dumps({"deprecated-key-path": str(ddir / "key.json")}) + "\n")
        dockerd = [
            "dockerd",
            # Own data root, exec root, pid file and socket: engines share nothing on disk.
            "--data-root", str(ddir), "--exec-root", str(rdir / "exec"),
            "--pidfile", str(rdir / "docker.pid"), "--host", node.docker_host(self.name),
            # Not /etc/docker: a user's daemon.json must not leak in, and the engine ID is
            # derived from key.json, which would otherwise be shared (identical engine IDs).
            "--config-file", str(config),
            # Containers in a cgroup named after the lab, so `down` finds and removes them.
            "--cgroup-parent", f"/{cgroup_parent(self.name)}",
            "--log-level", "warn",
        ]
        if self.keystore_url:
            # The 2015 topology: network state in the key-value store, gossip on eth0.
            dockerd += ["--cluster-store", self.keystore_url, "--cluster-advertise", "eth0:2376"]
        # nsenter (not `ip netns exec`, which remounts /sys and breaks dockerd's cgroup
        # discovery) for the network; its own UTS namespace so each engine has its own
        # hostname: classic gossip and swarm refuse duplicate node names.
        cmd = ["nsenter", f"--net=/var/run/netns/{node.netns}", "--",
               "unshare", "--uts", "--",
               "sh", "-c", 'hostname "$0" && exec "$@"', node.name, *dockerd]
        return _spawn(cmd, rdir / "dockerd.log")

    def client(self, node: Node) -> docker.DockerClient:
        if node.index not in self.clients:
            self.clients[node.index] = docker.DockerClient(base_url=node.docker_host(self.name), timeout=30)
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
        manager.networks.create(OVERLAY_NETWORK, driver="overlay", labels={"overlay-bench.lab": self.name})
        # Global scope: every engine must see it through the store before we say "up".
        for node in self.nodes[1:]:
            _wait_for(lambda: bool(self.client(node).networks.list(names=[OVERLAY_NETWORK])), 20.0,
                      lambda: f"{node.name} does not see the overlay network through the key-value store")

    # Outputs ---------------------------------------------------------------------------------
    def outputs(self) -> dict[str, Any]:
        # The first node is the manager: swarm init ran there, the overlay was made there.
        return outputs_schema.document(
            stack=self.name, provider="local", mode=self.spec.mode,
            nodes=[outputs_schema.node(n.name, n.address, n.docker_host(self.name)) for n in self.nodes],
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
    deadline = time.monotonic() + timeout_s
    delay_s = 0.05
    while not ready():
        if time.monotonic() > deadline or (process is not None and process.poll() is not None):
            raise LabError(why())
        time.sleep(delay_s)
        delay_s = min(delay_s * 1.5, 0.5)


def _tcp_open_in(netns: str, address: str, port: int) -> bool:
    # bash's /dev/tcp inside the namespace: no route from the root namespace to the lab.
    proc = subprocess.run(["nsenter", f"--net=/var/run/netns/{netns}", "--", "bash", "-c",
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
    try:
        return json.loads(_state_file(name).read_text())
    except (OSError, ValueError):
        return None


# --- public API -----------------------------------------------------------------------------

def up(name: str, nodes: int = 2, mode: str = "classic", link_rate: str | None = None,
       mtu_bytes: int = 1500, subnet: str = DEFAULT_SUBNET, status: Status | None = None,
       retain: bool = False) -> dict[str, Any]:
    """Bring a lab up (or find it already up with the same spec) and return its outputs."""
    spec = LabSpec(name, nodes, mode, link_rate, mtu_bytes, subnet)
    status = status or Status()
    spec.check()
    state = _read_state(name)
    if state and state.get("spec") == dataclasses.asdict(spec) and _healthy(state["outputs"]):
        with status.step(f"Lab {name} is already up"):
            pass
        return state["outputs"]
    preflight(spec)
    if residue(name):
        with status.step("Removing leftovers of an earlier lab"):
            down(name, status=Status(quiet=True))
    lab = Lab(spec, status)
    try:
        for title, action in lab.steps():
            with status.step(title):
                action()
        doc = lab.outputs()
        _write_state(spec, doc)
        return doc
    except BaseException:
        if not retain:
            with status.step("Removing the partial lab"):
                down(name, status=Status(quiet=True))
        raise
    finally:
        lab.close()


def _healthy(doc: dict[str, Any]) -> bool:
    """Every engine answers and the manager still has the overlay network."""
    try:
        for node in doc["nodes"]:
            with contextlib.closing(docker.DockerClient(base_url=node["docker_host"], timeout=5)) as client:
                client.ping()
                if node["role"] == "manager" and not client.networks.list(names=[doc["overlay_network"]]):
                    return False
        return True
    except (docker.errors.DockerException, OSError, KeyError):
        return False


def status_of(name: str) -> dict[str, Any]:
    """The outputs of a lab that is up; LabError when there is none or it is broken."""
    LabSpec(name).check()
    state = _read_state(name)
    if not state:
        raise LabError(f"no lab named {name!r} is up: run `python -m stacks.local up --name {name}`")
    if not _healthy(state["outputs"]):
        raise LabError(f"lab {name!r} is not healthy (an engine does not answer): "
                       f"run `python -m stacks.local up --name {name}` again to rebuild it")
    return state["outputs"]


def down(name: str, status: Status | None = None) -> None:
    """Remove everything lab `name` made; a no-op when nothing is there."""
    LabSpec(name).check()
    status = status or Status()
    with status.step(f"Removing lab {name}"):
        # A second pass catches what a dying engine made during the first (seen once: an
        # overlay sandbox's nsfs mount appearing after the unmount pass).
        deadline = time.monotonic() + DOWN_TIMEOUT_S
        _remove_once(name)
        while residue(name) and time.monotonic() < deadline:
            time.sleep(0.2)
            _remove_once(name)
    left = residue(name)
    if left:
        raise LabError(f"lab {name} could not be removed completely: {left}")


def _remove_once(name: str) -> None:
    rdir, ddir = str(run_dir(name)), str(data_dir(name))
    # Engines, containerd, shims, containers (by cgroup), the key-value store, and anything
    # else still running inside the lab's namespaces.
    pids = set(host.pids_matching(rdir + "/")) | set(host.pids_matching(ddir + "/"))
    pids |= set(host.cgroup_pids(cgroup_parent(name)))
    for netns in _lab_netns(name):
        pids |= set(host.netns_pids(netns))
    alive = host.kill_all(sorted(pids))
    if alive:
        raise LabError(f"processes {alive} of lab {name} survived SIGKILL: check `ps` for them")
    # Swarm-mode engines bind-mount namespaces under the exec root and never unmount them;
    # those mounts would keep the node's namespace (and its veth) alive.
    host.unmount_all(rdir, ddir)
    for netns in _lab_netns(name):
        host.ip("netns", "delete", netns, check=False)
    for link in _lab_links(name):
        host.ip("link", "delete", link, check=False)
    for rule in host.iptables_rules(firewall_comment(name)):
        host.iptables_delete(rule)
    host.remove_cgroups(cgroup_parent(name))
    shutil.rmtree(rdir, ignore_errors=True)
    shutil.rmtree(ddir, ignore_errors=True)
    for root in (RUN_ROOT, DATA_ROOT):
        try:
            root.rmdir()  # only when no other lab is left
        except OSError:
            pass


def _lab_netns(name: str) -> list[str]:
    return [ns for ns in host.netns_list() if ns.startswith(f"ob-{name}-")]


def _lab_links(name: str) -> list[str]:
    """The lab's bridge (if it carries our alias) and its veths (ob-NAME-N, ob-NAME-kv)."""
    found = []
    for link in host.links():
        ifname = link["ifname"]
        if ifname == bridge_name(name) and host.link_alias(ifname) == firewall_comment(name):
            found.append(ifname)
        elif re.fullmatch(rf"ob-{re.escape(name)}-(\d+|kv)", ifname):
            found.append(ifname)
    return found


def residue(name: str) -> dict[str, list]:
    """What lab `name` has on this machine, by kind; empty when nothing is left."""
    rdir, ddir = str(run_dir(name)), str(data_dir(name))
    found = {
        "namespaces": _lab_netns(name),
        "links": _lab_links(name),
        "firewall_rules": host.iptables_rules(firewall_comment(name)),
        "processes": sorted(set(host.pids_matching(rdir + "/")) | set(host.pids_matching(ddir + "/"))
                            | set(host.cgroup_pids(cgroup_parent(name)))),
        "mounts": host.mounts_under(rdir, ddir),
        "cgroups": [str(p) for p in host.cgroup_dirs(cgroup_parent(name))],
        "directories": [d for d in (rdir, ddir) if os.path.exists(d)],
    }
    return {kind: items for kind, items in found.items() if items}


def list_labs() -> list[str]:
    """Names of every lab with anything left on this machine."""
    names = set()
    for root in (RUN_ROOT, DATA_ROOT):
        if root.is_dir():
            names.update(p.name for p in root.iterdir() if NAME_RE.match(p.name))
    for ns in host.netns_list():
        match = re.fullmatch(r"ob-([a-z0-9]{1,8})-(n\d+|kv)", ns)
        if match:
            names.add(match.group(1))
    for link in host.links():
        match = re.fullmatch(r"ob-([a-z0-9]{1,8})(-\w+)?", link["ifname"])
        if match:
            names.add(match.group(1))
    return sorted(names)

