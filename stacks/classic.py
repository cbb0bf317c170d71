"""Classic (2015) mode's settings, defined once for the lab and the droplets.

The post's topology: a key-value node, and every engine started with `cluster-store`
pointing at it and `cluster-advertise` on the cluster network. The key-value store is
etcd with its v2 API (Debian's `etcd-server`), because the engine both the lab and the
droplets run is Debian 12's `docker.io` (20.10), which is built without the Consul
backend (its changelog, 20.10.17+dfsg1-1: "avoid dependencies on consul"): pointed at
`consul://...` it exits with "failed to start daemon: discovery initialization failed
(discovery service not supported)". Its etcd, zookeeper and boltdb backends remain, and
libkv's etcd backend speaks only etcd's v2 API.

`engine_settings()` is what an engine's daemon.json holds (the lab writes it into each
node's daemon.json, cloud-init into each droplet's); `etcd_args()` is the key-value
store's command line (the lab runs `etcd` with it, the key-value droplet's systemd unit
too). Nothing here imports docker or Pulumi.
"""
from __future__ import annotations

ETCD_CLIENT_PORT = 2379
# Peers talk on loopback: the store is a single member, nothing else needs to reach it.
ETCD_PEER_URL = "http://127.0.0.1:2380"
ETCD_MEMBER = "keystore"
# libnetwork needs a host:port for cluster-advertise; nothing listens on it (no TCP API).
ADVERTISE_PORT = 2376

# What an engine prints when classic mode fails, most telling first: the line of a
# dockerd that gave up (an unsupported store), then the store errors of one that runs
# without its store (it keeps running, and retries every 20 s).
ENGINE_GAVE_UP = "failed to start daemon"
STORE_ERROR = "discovery error"
# Said after each failed store watch, whatever the cause: the line before it says why.
UNTELLING = ("Unexpected watch error",)


def store_url(address: str) -> str:
    """What engines get as cluster-store, and the outputs' `keystore.url`."""
    return f"etcd://{address}:{ETCD_CLIENT_PORT}"


def engine_settings(keystore_address: str, interface: str) -> dict[str, str]:
    """The engine's daemon.json settings of classic mode: network state in the key-value
    store, gossip advertised on `interface` (the cluster network's)."""
    return {"cluster-store": store_url(keystore_address),
            "cluster-advertise": f"{interface}:{ADVERTISE_PORT}"}


def etcd_args(client_address: str, data_dir: str) -> list[str]:
    """etcd's arguments (after the program name): one member, clients on `client_address`.

    `--enable-v2`: libkv speaks only the v2 API, which etcd 3.4 serves only when asked.
    The advertised client URL must be the address engines reach: libkv's client syncs its
    endpoint list from it.
    """
    client_url = f"http://{client_address}:{ETCD_CLIENT_PORT}"
    return ["--name", ETCD_MEMBER, "--data-dir", data_dir,
            "--enable-v2=true",
            "--listen-client-urls", client_url,
            "--advertise-client-urls", client_url,
            "--listen-peer-urls", ETCD_PEER_URL,
            "--initial-advertise-peer-urls", ETCD_PEER_URL,
            "--initial-cluster", f"{ETCD_MEMBER}={ETCD_PEER_URL}"]


def engine_message(log_lines: list[str]) -> str | None:
    """The engine's own words for a classic-mode failure, from its log: the last line that
    says it gave up, else its last store error; None when it has said neither."""
    for marker in (ENGINE_GAVE_UP, STORE_ERROR):
        found = [_message(line) for line in log_lines if marker in line]
        telling = [m for m in found if not any(u in m for u in UNTELLING)]
        if telling or found:
            return (telling or found)[-1]
    return None


def _message(line: str) -> str:
    """A dockerd log line without its logrus prefix: `msg="..."`'s text, or the line."""
    line = line.strip()
    start = line.find('msg="')
    if start < 0:
        return line
    text = line[start + len('msg="'):]
    end = text.find('"', 0)
    while end > 0 and text[end - 1] == "\\":
        end = text.find('"', end + 1)
    text = text[:end] if end >= 0 else text
    return text.replace("\\n", " ").replace('\\"', '"').strip()
