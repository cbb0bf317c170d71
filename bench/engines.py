"""Reach every node's engine with the docker SDK and record what it runs on."""
from __future__ import annotations

import concurrent.futures
import contextlib
import ipaddress
import os
import re
import secrets
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import docker
import docker.api.client
import docker.errors
import paramiko
import requests.adapters
import requests.exceptions
from docker.transport.sshconn import SSHConnection, SSHConnectionPool, SSHHTTPAdapter

from bench import image as bench_image
from bench import tools
from common.errors import UserError
from common.polling import poll, retry
from stacks.outputs import OVERLAY_MTU_OPTION, overlay_mtu_bytes

# Seconds an engine call may take before the node counts as unreachable (image loads and
# waits for a run pass their own timeouts).
API_TIMEOUT_S = 30
LABEL_SESSION = "overlay-bench.session"
# Which process made a container: each bench process removes only its own (two processes may
# share a session name: a new session and another of the same stack started in the same
# second, until the second one's directory gets its suffix).
LABEL_PROCESS = "overlay-bench.process"
PROCESS_TOKEN = f"{os.getpid()}-{secrets.token_hex(6)}"


def labels(session: str, **more: str) -> dict[str, str]:
    """The labels of everything a bench process creates: its session and this process."""
    return {LABEL_SESSION: session, LABEL_PROCESS: PROCESS_TOKEN, **more}

T = TypeVar("T")

# What a dead or unreachable engine raises through the SDK.
ENGINE_DOWN = (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
               ConnectionError, socket.timeout, OSError)


# A classic-mode engine under load now and then fails to read or write a global network in
# its key-value store (seen: "network overlay-bench not found", "failed to get network from
# store during join", "failed to update store for object type *libnetwork.endpointCnt:
# client: etcd cluster is unavailable ... network is unreachable"); a moment later the same
# call works. Calls that meet it are tried this many times in all, this long apart.
STORE_TRIES = 3
STORE_RETRY_DELAY_S = 0.5


class EngineError(UserError):
    """A node's engine cannot be reached or refused a request; names the node.

    `node_down` is the node whose engine does not answer, when that is the cause.
    """

    def __init__(self, message: str, node_down: str | None = None):
        super().__init__(message)
        self.node_down = node_down


class EngineRefused(EngineError):
    """The engine answered, with an error."""


class EngineDown(EngineError):
    """The engine did not answer: dead, unreachable, or slower than the call's timeout."""

    def __init__(self, message: str, node: str | None, timed_out: bool):
        super().__init__(message, node_down=node)
        self.timed_out = timed_out


@contextlib.contextmanager
def answering(node: str | None = None, doing: str = "") -> Iterator[None]:
    """Engine calls made in this block fail as EngineRefused or EngineDown, naming the node.

    The one translation of what the docker SDK raises: an API error means the engine
    answered (it derives from OSError too, so it is told apart first); anything in
    ENGINE_DOWN means it did not. `doing` ("while preparing") goes into the message.
    """
    who = f"engine on {node}" if node else "an engine"
    doing = f" {doing}" if doing else ""
    try:
        yield
    except docker.errors.APIError as exc:
        raise EngineRefused(f"{who} refused a request{doing}: {exc.explanation or exc}") from None
    except ENGINE_DOWN as exc:
        raise EngineDown(f"{who} stopped answering{doing}: {brief(exc)}", node, _is_timeout(exc)) from exc


def call(node: str | None, fn: Callable[[], T]) -> T:
    """fn(), an engine call, inside `answering(node)`."""
    with answering(node):
        return fn()


def brief(exc: BaseException) -> str:
    """The first line of an exception's message (the SDK's can run to pages), or its type."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, (requests.exceptions.ReadTimeout, socket.timeout, TimeoutError)) or (
        "timed out" in str(exc).lower())


def store_hiccup(exc: BaseException) -> bool:
    """An engine's failure to reach a global network in its key-value store (see STORE_TRIES)."""
    text = str(getattr(exc, "explanation", "") or "")
    return isinstance(exc, docker.errors.APIError) and (
        ("network" in text and "not found" in text) or "store" in text)


def with_store_retries(fn: Callable[[], T]) -> T:
    """fn(), tried again while it fails with a key-value store hiccup (STORE_TRIES in all)."""
    return retry(fn, tries=STORE_TRIES, delay_s=STORE_RETRY_DELAY_S, again_on=store_hiccup)


# HTTP connections to one engine over its one SSH connection: each is an SSH session
# (channel) running `docker system dial-stdio`, and sshd allows MaxSessions of them per
# connection (10 by default; one more is refused: "ChannelException: Connect failed").
SSH_SESSIONS = 8
SSH_SESSION_TRIES = 25
SSH_SESSION_RETRY_S = 0.2


class _KeyedSSHAdapter(SSHHTTPAdapter):
    """The SDK's paramiko adapter, with the outputs' `ssh_key_path` as the identity, and
    never more than SSH_SESSIONS sessions open.

    The SDK takes the identity only from ~/.ssh/config; the outputs name the key file, so
    it is set here, after the SDK read the config (host key checks stay as the SDK does them).
    The SDK keeps a pool of connections per request URL, each keeping its sessions open,
    so a bench session soon passes sshd's limit: here every request shares one pool, which
    makes a request wait for a free session instead.
    """

    key_filename: str | None = None

    def _create_paramiko_client(self, base_url):
        super()._create_paramiko_client(base_url)
        if self.key_filename:
            self.ssh_params["key_filename"] = self.key_filename

    def _connect(self):
        super()._connect()
        # Requests and answers are small and go back and forth: without TCP_NODELAY, Nagle's
        # algorithm against the server's delayed ACKs holds each for up to 40 ms (seen: an
        # exec took 0.22 s over SSH, 0.08 s with it, as on a unix socket).
        transport = self.ssh_client.get_transport() if self.ssh_client else None
        if transport is not None and isinstance(transport.sock, socket.socket):
            transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def get_connection(self, url, proxies=None):
        with self.pools.lock:
            pool = self.pools.get("ssh")
            if pool is None:
                if self.ssh_client and not self.ssh_client.get_transport():  # reconnect, as the SDK does
                    self._connect()
                pool = _SessionPool(ssh_client=self.ssh_client, timeout=self.timeout,
                                    maxsize=self.max_pool_size, host=self.ssh_host)
                self.pools["ssh"] = pool
        return pool


class _SessionConnection(SSHConnection):
    """A session that sshd refused for being one too many is asked for again: a closed
    session counts until its `docker system dial-stdio` has exited, so a burst of requests
    on new sessions (each exec takes one) can pass MaxSessions for a moment."""

    def connect(self):
        retry(super().connect, tries=SSH_SESSION_TRIES, delay_s=SSH_SESSION_RETRY_S,
              again_on=lambda exc: isinstance(exc, paramiko.ChannelException))


class _SessionPool(SSHConnectionPool):
    """One pool for every request to the engine; a request waits for a free session."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.block = True

    def _new_conn(self):
        return _SessionConnection(self.ssh_transport, self.timeout, self.ssh_host)


_SSH_LOCK = threading.Lock()


def tls_context(ca_cert: str, client_cert: str, client_key: str) -> ssl.SSLContext:
    """How a tcp:// engine is verified: against its CA alone, host name checked, with this
    client certificate; without OpenSSL's strict X.509 checks.

    docker-machine 0.16.2 (built with Go 1.12) issues certificates without subject or
    authority key identifiers. Python 3.13's ssl.create_default_context(), and urllib3 2.x
    on Python 3.13 (util/ssl_.py, create_urllib3_context), turn on VERIFY_X509_STRICT, under
    which OpenSSL rejects them ("Missing Authority Key Identifier"). The signature, the
    chain to the machine's CA, validity and the address are still checked.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_cert)
    context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    context.load_cert_chain(client_cert, client_key)
    return context


class _ContextAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter with our SSLContext: the route requests documents for a custom
    context (HTTPAdapter.build_connection_pool_key_attributes). The context already holds
    the CA and the client certificate, so requests' own copies of them are left out."""

    def __init__(self, context: ssl.SSLContext, **kwargs: Any):
        self._context = context
        super().__init__(**kwargs)

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        for key in ("ca_certs", "ca_cert_dir", "cert_file", "key_file"):
            pool_kwargs.pop(key, None)
        pool_kwargs["ssl_context"] = self._context
        return host_params, pool_kwargs


class _TLSAPIClient(docker.APIClient):
    """The SDK's API client, whose https:// adapter uses our SSLContext from the start.

    requests.Session.__init__ mounts its default adapters before the SDK's first request
    (it asks the engine for its API version inside __init__): ours replaces https://'s there.
    """

    def __init__(self, *, ssl_context: ssl.SSLContext, **kwargs: Any):
        self._ssl_context = ssl_context
        super().__init__(**kwargs)

    def mount(self, prefix, adapter):
        if prefix == "https://":
            adapter = _ContextAdapter(self._ssl_context)
        super().mount(prefix, adapter)


class _TLSDockerClient(docker.DockerClient):
    """docker.DockerClient over _TLSAPIClient (DockerClient.__init__ only makes its `api`)."""

    def __init__(self, *, ssl_context: ssl.SSLContext, **kwargs: Any):
        self.api = _TLSAPIClient(ssl_context=ssl_context, **kwargs)


def connect(node: dict[str, Any], timeout_s: float = API_TIMEOUT_S) -> docker.DockerClient:
    """A client for `node` (an entry of outputs["nodes"]); raises EngineError if it does not answer."""
    url = node["docker_host"]
    kwargs: dict[str, Any] = {"base_url": url, "timeout": timeout_s, "use_ssh_client": False}
    context = None
    if url.startswith("tcp://"):
        certs = node.get("tls_cert_path")
        if not certs:
            raise EngineError(f"node {node['name']}: {url} needs tls_cert_path (tcp engines always use TLS)")
        files = {n: os.path.join(certs, n) for n in ("ca.pem", "cert.pem", "key.pem")}
        missing = [p for p in files.values() if not os.path.exists(p)]
        if missing:
            raise EngineError(f"node {node['name']}: missing TLS files {', '.join(missing)}")
        kwargs["tls"] = docker.tls.TLSConfig(client_cert=(files["cert.pem"], files["key.pem"]),
                                             ca_cert=files["ca.pem"], verify=True)
        try:
            context = tls_context(files["ca.pem"], files["cert.pem"], files["key.pem"])
        except (ssl.SSLError, OSError) as exc:
            raise EngineError(f"node {node['name']}: unusable TLS files in {certs} ({brief(exc)})") from None
    try:
        if context is not None:
            return _TLSDockerClient(ssl_context=context, **kwargs)
        if url.startswith("ssh://"):
            kwargs["max_pool_size"] = SSH_SESSIONS
            with _SSH_LOCK:
                # The SDK builds its adapter inside APIClient(); swap in the keyed one there.
                _KeyedSSHAdapter.key_filename = node.get("ssh_key_path")
                saved = docker.api.client.SSHHTTPAdapter
                docker.api.client.SSHHTTPAdapter = _KeyedSSHAdapter
                try:
                    return docker.DockerClient(**kwargs)
                finally:
                    docker.api.client.SSHHTTPAdapter = saved
        return docker.DockerClient(**kwargs)
    except docker.errors.DockerException as exc:
        raise EngineError(f"node {node['name']}: engine at {url} does not answer ({brief(exc)})",
                          node_down=node["name"]) from None
    except Exception as exc:  # paramiko's auth/host-key errors have no common base with the SDK's
        raise EngineError(f"node {node['name']}: cannot reach {url} ({brief(exc)})",
                          node_down=node["name"]) from None


def connect_all(nodes: list[dict[str, Any]]) -> dict[str, docker.DockerClient]:
    """Clients for every node, checked in parallel; one EngineError listing every failure."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(nodes))) as pool:
        futures = {n["name"]: pool.submit(connect, n) for n in nodes}
    clients, errors = {}, []
    for name, fut in futures.items():
        try:
            clients[name] = fut.result()
        except EngineError as exc:
            errors.append(str(exc))
    if errors:
        for c in clients.values():
            c.close()
        raise EngineError("; ".join(errors) + ": nothing was run (check the nodes, or the outputs)")
    return clients


def run_in(client: docker.DockerClient, image: str, command: list[str], *, session: str,
           timeout_s: float = API_TIMEOUT_S, **kwargs: Any) -> str:
    """Run a short command in a labelled container, return its stdout; always removes it."""
    ctr = client.containers.run(image, command, detach=True,
                                labels=labels(session, **{"overlay-bench.role": "probe"}), **kwargs)
    try:
        result = ctr.wait(timeout=timeout_s)
        out = ctr.logs(stdout=True, stderr=True).decode(errors="replace")
        if result.get("StatusCode") not in (0, None) and not out:
            raise EngineError(f"{' '.join(command)} exited {result.get('StatusCode')} with no output")
        return out
    finally:
        with contextlib.suppress(Exception):
            ctr.remove(force=True)


_MTU_SCRIPT = ("cat /proc/net/route; for i in /sys/class/net/*; do "
               "echo \"mtu ${i##*/} $(cat $i/mtu)\"; done")


_HEX8 = re.compile(r"[0-9A-Fa-f]{8}")


def _parse_mtus(text: str) -> tuple[list[tuple[str, int, int]], dict[str, int]]:
    """Routes (iface, dest, mask) from /proc/net/route and MTUs by interface."""
    routes, mtus = [], {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "mtu":
            mtus[parts[1]] = int(parts[2])
        elif len(parts) >= 8 and all(_HEX8.fullmatch(parts[i]) for i in (1, 7)):
            # /proc/net/route holds addresses as little-endian hex
            dest = int.from_bytes(bytes.fromhex(parts[1]), "little")
            mask = int.from_bytes(bytes.fromhex(parts[7]), "little")
            routes.append((parts[0], dest, mask))
    return routes, mtus


def mtu_for(text: str, address: str) -> int | None:
    """MTU of the interface whose most specific route covers `address`."""
    routes, mtus = _parse_mtus(text)
    addr = int(ipaddress.IPv4Address(address))
    best = None
    for iface, dest, mask in routes:
        if mask and addr & mask == dest and (best is None or mask > best[1]):
            best = (iface, mask)
    return mtus.get(best[0]) if best else None


def mtu_for_subnet(text: str, subnet: str) -> int | None:
    net = ipaddress.IPv4Network(subnet)
    return mtu_for(text, str(net.network_address + 1))


def overlay_subnet(clients: dict[str, docker.DockerClient], overlay: str) -> str | None:
    """The overlay network's subnet, from whichever engine can see the network."""
    for client in clients.values():
        try:
            net = client.networks.get(overlay)
        except (docker.errors.NotFound, docker.errors.APIError):
            continue  # a swarm worker sees an attachable network only once it is used
        for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
            if cfg.get("Subnet") and ":" not in cfg["Subnet"]:
                return cfg["Subnet"]
    return None


def node_facts(client: docker.DockerClient, node: dict[str, Any], image: str, overlay: str | None,
               overlay_net: str | None, session: str) -> dict[str, Any]:
    """Engine version, kernel, OS, and the MTUs of the host link and of the overlay network
    (None for `overlay`: the plan measures no overlay, and its MTU is not read)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        # The overlay container's attach is the slow part (about 1 s): both at once.
        # The host-network container also prints the tool versions: one container less.
        host_f = pool.submit(run_in, client, image, ["sh", "-c", _MTU_SCRIPT + "; " + _VERSIONS_SCRIPT],
                             session=session, network_mode="host")
        ovl_f = pool.submit(with_store_retries, lambda: run_in(client, image, ["sh", "-c", _MTU_SCRIPT],
                                                               session=session, network=overlay)) if overlay else None
        info = client.info()
        host, ovl = host_f.result(), ovl_f.result() if ovl_f else None
    facts = {
        "engine_version": info.get("ServerVersion"),
        "kernel": info.get("KernelVersion"),
        "os": info.get("OperatingSystem"),
        "host_mtu_bytes": mtu_for(host, node["address"]),
        "overlay_mtu_bytes": None,
        "tool_versions": tools.versions(host),
    }
    if ovl is None:
        return facts
    if overlay_net:
        facts["overlay_mtu_bytes"] = mtu_for_subnet(ovl, overlay_net)
    if facts["overlay_mtu_bytes"] is None:
        # Docker puts the first network a container joins on eth0.
        facts["overlay_mtu_bytes"] = _parse_mtus(ovl)[1].get("eth0")
    return facts


_VERSIONS_SCRIPT = tools.versions_command()


def mtu_warnings(nodes: dict[str, dict[str, Any]]) -> list[str]:
    """One line per node whose overlay MTU is not its link's less VXLAN's 50 bytes: below,
    every overlay packet carries less than the link could (Docker's default 1450 on a jumbo
    link); above, VXLAN packets outgrow the link and are fragmented or dropped."""
    out = []
    for name, facts in nodes.items():
        link, overlay = facts.get("host_mtu_bytes"), facts.get("overlay_mtu_bytes")
        if not link or not overlay:
            continue
        fits = overlay_mtu_bytes(link)
        if overlay < fits:
            out.append(f"node {name}: overlay MTU {overlay} is {fits - overlay} bytes below the {fits} "
                       f"its {link}-byte link carries: overlay results understate what the overlay "
                       f"can do (create the overlay network with -o {OVERLAY_MTU_OPTION}={link})")
        elif overlay > fits:
            out.append(f"node {name}: overlay MTU {overlay} is above the {fits} its {link}-byte link "
                       f"carries: VXLAN packets outgrow the link and are fragmented or dropped "
                       f"(create the overlay network with -o {OVERLAY_MTU_OPTION}={link})")
    return out


def remove_own_containers(clients: dict[str, docker.DockerClient], timeout_s: float = 10) -> list[str]:
    """Remove every container this process made (whichever session name it carries: a new
    session's name can get a suffix after its node facts were read), on every engine that
    still answers. Returns the nodes that could not be cleaned (engine gone)."""
    return _remove_labelled(clients, f"{LABEL_PROCESS}={PROCESS_TOKEN}", timeout_s)


def remove_session_containers(clients: dict[str, docker.DockerClient], session: str,
                              timeout_s: float = 10) -> list[str]:
    """Remove every container of `session`, whichever process made it. Only the session's
    one writer may (store.writer says no other process runs it): what is left is what
    processes that no longer run left behind."""
    return _remove_labelled(clients, f"{LABEL_SESSION}={session}", timeout_s)


def _remove_labelled(clients: dict[str, docker.DockerClient], label: str, timeout_s: float) -> list[str]:
    unreachable = []

    def clean(name: str, client: docker.DockerClient) -> None:
        def remove(ctr) -> None:
            with contextlib.suppress(docker.errors.APIError):
                ctr.remove(force=True)

        def none_left() -> bool:
            ctrs = client.containers.list(all=True, sparse=True, filters={"label": label})
            # All at once: a session keeps a few containers up on each node (servers, clients,
            # its CPU sampler), and each removal waits for its process to end.
            with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(8, len(ctrs)))) as pool:
                list(pool.map(remove, ctrs))
            return not ctrs

        try:
            # Until none is listed: one container's refusal ("removal already in progress",
            # a start still finishing) must not leave the others behind.
            if not poll(none_left, timeout_s, delay_s=0.1, backoff=1):
                unreachable.append(name)
        except (docker.errors.APIError, *ENGINE_DOWN):
            unreachable.append(name)

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(clients))) as pool:
        list(pool.map(lambda kv: clean(*kv), clients.items()))
    return unreachable


def ensure_image(clients: dict[str, docker.DockerClient], name: str,
                 tarball: os.PathLike | None) -> str:
    """The bench image on every node (loaded in parallel where missing); its image ID.

    With a custom --image, it must already be on every node with the same ID."""
    if tarball is not None:
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(clients)) as pool:
            ids = dict(zip(clients, pool.map(lambda c: bench_image.ensure(c, tarball, name),
                                             clients.values())))
    else:
        ids = {}
        for node, client in clients.items():
            try:
                ids[node] = client.images.get(name).id
            except docker.errors.ImageNotFound:
                raise bench_image.ImageError(f"--image {name} is not on node {node}: load it there "
                                             "first (nothing can be pulled)") from None
    if len(set(ids.values())) != 1:
        raise bench_image.ImageError(f"--image {name} differs between nodes ({ids}): load the same "
                                     "image everywhere")
    return next(iter(ids.values()))
