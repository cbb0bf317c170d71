"""Once the machines exist: check each engine, form the cluster, make the overlay network.

One implementation over SSH (pulumi-command's `remote.Command`), two callers: the `ssh`
provider (machines you already have) and the `digitalocean` provider (after its droplets
boot). Per machine, in order:

- `nodeN-ready`: Docker is installed and its engine answers (after the caller's boot check,
  for a machine just made: the DigitalOcean stack waits there for cloud-init, the engine and
  its store), `privateAddress` is on one of the machine's interfaces; prints the engine's
  name and that interface's MTU. Classic mode: the engine is older than 23.0 and has a
  cluster store, the same as the first machine's.
- swarm mode: `swarm-init` on the first machine, `swarm-token` reads the worker token (a
  secret output, never logged), `nodeN-join` on each other machine with the token on stdin.
  The join goes to the engine's API through `docker system dial-stdio` with a request
  written by the shell's printf, so the token is in no process's argv.
- `overlay-network` on the first machine: `docker network create -d overlay` (attachable in
  swarm mode; in classic mode through the cluster store, retried while the engines reach
  their store), labelled with the stack's name.
- classic mode, `nodeN-stale-endpoints`: nothing at create; at delete, before the network
  goes, each machine removes from it the endpoints of its containers that no longer exist
  (an engine under load sometimes leaves them in the store).

A machine already in a swarm, or a network of that name already there, is refused: delete
then undoes exactly what create did (the network removed if it still carries the stack's
label, the workers leave, then the first machine), nothing more. Every failure a user can
cause prints one line starting with `overlay-bench:` saying what to do.

Scripts are plain functions of their inputs (tested without Pulumi); `declare` imports
Pulumi: reading the configuration never loads it.
"""
from __future__ import annotations

import dataclasses
import json
import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pulumi

LABEL = "overlay-bench.stack"
SWARM_PORT = 2377
# Classic mode: engines reach their key-value store a few seconds after it answers.
CLASSIC_NETWORK_TRIES = 30
CLASSIC_NETWORK_DELAY_S = 2
SWARM_NETWORK_REMOVE_TRIES = 3
# Classic mode: an engine that has just removed a container may not have told the store yet.
CLASSIC_NETWORK_REMOVE_TRIES = 10
# Cluster-store (classic mode) was removed from the engine in Docker 23.0.
CLASSIC_MAX_ENGINE_MAJOR = 22



def _say(machine: str) -> str:
    """Shell: `say MESSAGE` prints one line (an engine's message may span several: joined)
    on stderr, naming the machine as the configuration does."""
    joined = "$(printf '%s' \"$*\" | tr '\\n' ' ' 2>/dev/null || printf '%s' \"$*\")"  # even without tr
    return f"say() {{ printf 'overlay-bench: machine {machine}: %s\\n' \"{joined}\" >&2; }}"


def _fail(machine: str) -> str:
    """Shell: `fail MESSAGE` says it and exits 1."""
    return _say(machine) + '\nfail() { say "$@"; exit 1; }'


# The engine's HTTP API through the docker CLI, whatever its version (a CLI newer than the
# engine no longer shows fields such as ClusterStore): METHOD PATH [JSON BODY]. Prints the
# response body; on an error status, fails with the engine's message.
API = r"""api() {
  r=$(printf '%s %s HTTP/1.0\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: %s\r\n\r\n%s' \
    "$1" "$2" "${#3}" "$3" | docker system dial-stdio) || fail "cannot reach the Docker engine"
  body=$(printf '%s\n' "$r" | tr -d '\r' | sed '1,/^$/d')
  case $(printf '%s\n' "$r" | head -n 1 | cut -d ' ' -f 2) in
    2??) printf '%s\n' "$body" ;;
    *) message=$(printf '%s' "$body" | sed -n 's/.*"message":"\(.*\)"}.*/\1/p')
       fail "the Docker engine refused $1 $2: $message" ;;
  esac
}"""
SWARM_STATE = "docker info --format '{{.Swarm.LocalNodeState}}'"


@dataclasses.dataclass(frozen=True)
class Machine:
    """One machine as the commands reach it."""

    # Resource names start with it: node1, node2, ...
    name: str
    # Where SSH goes (pulumi.Input[str]): part of the triggers, so that another machine
    # under the same name replaces the resources (delete on the old one, create on the new).
    address: Any
    # pulumi_command.remote.ConnectionArgs
    connection: Any
    # Where cluster traffic goes (pulumi.Input[str]).
    private_address: Any
    # Shell run first on a machine just made (pulumi.Input[str]): waits until it is ready,
    # or exits non-zero saying why. None for a machine that is up already.
    boot_check: Any = None


@dataclasses.dataclass
class Cluster:
    # Per machine, in order: {"name": engine name, "mtu_bytes": int, "cluster_store": url or None}
    facts: pulumi.Output[list[dict[str, Any]]]
    # Resolves (not a secret) once the overlay network exists.
    done: pulumi.Output[str]


# --- the scripts ---------------------------------------------------------------------------

def _script(*parts: str) -> str:
    return "\n".join(parts) + "\n"


def ready_script(machine: str, private_address: str, mode: str, expected_store: str | None = None,
                 boot_check: str | None = None) -> str:
    """Check the machine and print `key=value` facts; `boot_check` runs first (Machine)."""
    private = shlex.quote(private_address)
    parts = [_fail(machine)]
    if mode == "classic":
        parts.append(API)
    if boot_check:
        parts.append(boot_check)
    parts += [
        'command -v docker >/dev/null 2>&1 || fail "Docker is not installed (no docker command): '
        'install it (Debian: apt-get install docker.io) and start it"',
        "version=$(docker version --format '{{.Server.Version}}' 2>&1) || fail \"the Docker engine does not "
        "answer ($(printf '%s' \"$version\" | tail -n 1)): start it (systemctl start docker)\"",
        f"iface=$(ip -o -4 addr show | awk -v a={private} '{{split($4, p, \"/\")}} p[1] == a {{print $2; exit}}')",
        f"[ -n \"$iface\" ] || fail \"no interface has the address {private} (privateAddress): "
        "give the machine's address on its private network\"",
        "echo \"name=$(docker info --format '{{.Name}}')\"",
        # From ip, not /sys/class/net: sysfs shows the namespace it was mounted in.
        "echo \"mtu_bytes=$(ip -o link show dev \"$iface\" | sed -n 's/.* mtu \\([0-9]*\\).*/\\1/p')\"",
    ]
    if mode == "classic":
        parts += [
            f"[ \"${{version%%.*}}\" -le {CLASSIC_MAX_ENGINE_MAJOR} ] 2>/dev/null || fail \"classic mode needs "
            "a Docker engine older than 23.0, which removed cluster-store; this one is $version: use swarm "
            "mode (pulumi config set mode swarm)\"",
            "info=$(api GET /info) || exit 1",
            "store=$(printf '%s' \"$info\" | grep -o '\"ClusterStore\":\"[^\"]*\"' | cut -d '\"' -f 4)",
            "[ -n \"$store\" ] || fail \"the Docker engine has no cluster store (classic mode): set "
            "cluster-store (etcd://KEYSTORE:2379) and cluster-advertise (INTERFACE:2376) in "
            "/etc/docker/daemon.json and restart docker, or use swarm mode (pulumi config set mode swarm)\"",
        ]
        if expected_store:
            expected = shlex.quote(expected_store)
            parts.append(f"[ \"$store\" = {expected} ] || fail \"the Docker engine uses cluster store $store, "
                         f"the first machine's uses {expected}: give every engine the same cluster-store\"")
        parts.append('echo "cluster_store=$store"')
    return _script(*parts)


def parse_facts(stdout: str) -> dict[str, Any]:
    """What ready_script printed."""
    facts: dict[str, Any] = {"cluster_store": None}
    for line in stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            facts[key.strip()] = value.strip()
    facts["mtu_bytes"] = int(facts["mtu_bytes"])
    return facts


def _not_in_a_swarm() -> str:
    return (f"state=$({SWARM_STATE})\n"
            "[ \"$state\" = inactive ] || fail \"the engine is already in a swarm (state: $state): this stack "
            "forms its own; run 'docker swarm leave --force' there first, or use another machine\"")


def swarm_init_script(machine: str, private_address: str) -> str:
    address = shlex.quote(private_address)
    return _script(_fail(machine), _not_in_a_swarm(),
                   f"docker swarm init --advertise-addr {address} --listen-addr {address}:{SWARM_PORT} >/dev/null")


def swarm_leave_script(force: bool) -> str:
    """Leave the swarm, if the machine is still in one."""
    return f"[ \"$({SWARM_STATE})\" = inactive ] || docker swarm leave{' --force' if force else ''} >/dev/null\n"


SWARM_TOKEN = "docker swarm join-token -q worker"


def swarm_join_script(machine: str, private_address: str, manager_address: str) -> str:
    """The token comes on stdin; only shell builtins (read, printf) see it."""
    body = {"ListenAddr": f"{private_address}:{SWARM_PORT}", "AdvertiseAddr": private_address,
            "RemoteAddrs": [f"{manager_address}:{SWARM_PORT}"], "JoinToken": "TOKEN"}
    text = json.dumps(body, separators=(",", ":")).replace('"', '\\"').replace("TOKEN", "$TOKEN")
    return _script(_fail(machine), API, "read -r TOKEN", _not_in_a_swarm(),
                   f'api POST /swarm/join "{text}" >/dev/null || exit 1')


def network_script(machine: str, network: str, mode: str, stack: str) -> str:
    net, label = shlex.quote(network), shlex.quote(f"{LABEL}={stack}")
    exists = (f"docker network inspect {net} >/dev/null 2>&1 && fail \"a network {net} already exists: "
              f"remove it (docker network rm {net}) or set overlayNetwork to another name\"")
    if mode == "swarm":
        return _script(_fail(machine), exists,
                       f"docker network create -d overlay --attachable --label {label} {net} >/dev/null")
    return _script(
        _fail(machine), exists,
        f"for try in $(seq {CLASSIC_NETWORK_TRIES}); do",
        f"  err=$(docker network create -d overlay --label {label} {net} 2>&1 >/dev/null) && exit 0",
        # A create the engine failed to report may still have stored the network.
        f"  docker network inspect {net} >/dev/null 2>&1 && exit 0",
        f"  sleep {CLASSIC_NETWORK_DELAY_S}",
        "done",
        f"fail \"could not create the overlay network {net} through the cluster store: $err\"")


def network_delete_script(machine: str, network: str, mode: str, stack: str) -> str:
    """Remove the network if it is still the stack's (by its label).

    Swarm mode: an engine sometimes keeps the attachment of a container that failed to join
    the network (seen with Docker 20.10: "network ... is in use by task ...", the container
    long gone), and then refuses to remove it. The network belongs to the stack's swarm,
    which the machines leave right after: it goes with it, and this says so."""
    net = shlex.quote(network)
    ours = (f"[ \"$(docker network inspect --format '{{{{index .Labels \"{LABEL}\"}}}}' {net} 2>/dev/null)\" "
            f"= {shlex.quote(stack)} ] || exit 0")
    if mode == "classic":
        names = (f"$(docker network inspect --format '{{{{range .Containers}}}}{{{{.Name}}}} {{{{end}}}}' {net} "
                 "2>/dev/null)")
        return _script(
            _fail(machine), ours,
            f"for try in $(seq {CLASSIC_NETWORK_REMOVE_TRIES}); do",
            f"  err=$(docker network rm {net} 2>&1 >/dev/null) && exit 0",
            f"  sleep {CLASSIC_NETWORK_DELAY_S}",
            "done",
            f"fail \"the engine does not remove the network {net} ($err); its endpoints: {names}: remove "
            f"those containers; for containers that no longer exist (an engine that failed to update its "
            f"store keeps theirs), run 'docker network disconnect -f {net} NAME' on a machine; then pulumi "
            f"destroy again\"")
    return _script(
        ours,
        f"for try in $(seq {SWARM_NETWORK_REMOVE_TRIES}); do",
        f"  err=$(docker network rm {net} 2>&1 >/dev/null) && exit 0",
        "  sleep 1",
        "done",
        _say(machine),
        f"say \"the network {net} goes with the swarm, which the machines leave next (the engine refused "
        "to remove it: $err)\"")


def stale_endpoints_script(machine: str, network: str) -> str:
    """Classic mode, before the network goes: remove this machine's endpoints on it whose
    container no longer exists. An engine that fails to read the network from its store
    while it removes a container (seen under load: "Failed getting network for ep ... during
    sandbox ... delete: network ... not found") keeps the endpoint there, and the network
    cannot be removed while it has one. The inspect of the machine that made an endpoint
    names it by its container's ID (others by `ep-ID`): only those are looked at, and only
    a container this engine no longer has makes one stale."""
    net = shlex.quote(network)
    return _script(
        _say(machine),
        f"docker network inspect {net} >/dev/null 2>&1 || exit 0",
        f"docker network inspect --format '{{{{range $id, $ep := .Containers}}}}{{{{$id}}}} {{{{$ep.Name}}}}"
        f"{{{{println}}}}{{{{end}}}}' {net} | while read -r id name; do",
        '  case $id in ep-*|"") continue ;; esac',
        '  docker inspect --type container "$id" >/dev/null 2>&1 && continue',
        f'  docker network disconnect -f {net} "$name" >/dev/null 2>&1 || say "the endpoint of $name, a container '
        f'that no longer exists, stays on {net}"',
        "done")


# --- the resources -------------------------------------------------------------------------

def declare(machines: Sequence[Machine], mode: str, overlay_network: str, stack: str, *,
            after: Sequence[pulumi.Resource] = ()) -> Cluster:
    """The commands on `machines` (the first is the manager) for a cluster in `mode`;
    `after`: what the machines' checks wait for (a key-value node that must answer first)."""
    import pulumi
    from pulumi_command import remote

    def command(name: str, machine: Machine, create: pulumi.Input[str], *, delete: pulumi.Input[str] | None = None,
                depends_on: Sequence[pulumi.Resource] = (), **more: Any) -> remote.Command:
        secret_outputs = more.pop("additional_secret_outputs", None)
        return remote.Command(
            name, connection=machine.connection, create=create, delete=delete,
            triggers=[machine.address, machine.private_address],
            # The previous stdout through the environment needs the server's AcceptEnv: unused.
            add_previous_output_in_env=False,
            opts=pulumi.ResourceOptions(depends_on=list(depends_on), delete_before_replace=True,
                                        additional_secret_outputs=secret_outputs),
            **more)

    def ready(machine: Machine, expected: pulumi.Input[str | None]) -> remote.Command:
        script = pulumi.Output.all(machine.address, machine.private_address, expected, machine.boot_check).apply(
            lambda v: ready_script(v[0], v[1], mode, v[2], v[3]))
        return command(f"{machine.name}-ready", machine, script, depends_on=after)

    def facts(cmd: remote.Command) -> pulumi.Output[dict[str, Any]]:
        # Names and MTUs only: nothing secret, whatever the provider marks.
        return pulumi.Output.unsecret(cmd.stdout).apply(parse_facts)

    manager, workers = machines[0], machines[1:]
    manager_ready = ready(manager, None)
    manager_facts = facts(manager_ready)
    worker_ready = [ready(m, manager_facts.apply(lambda f: f["cluster_store"]) if mode == "classic" else None)
                    for m in workers]
    checked = [manager_ready, *worker_ready]

    if mode == "swarm":
        init_script = pulumi.Output.all(manager.address, manager.private_address).apply(
            lambda v: swarm_init_script(v[0], v[1]))
        init = command("swarm-init", manager, init_script, delete=swarm_leave_script(force=True), depends_on=checked)
        token = command("swarm-token", manager, SWARM_TOKEN, depends_on=[init], logging=remote.Logging.NONE,
                        additional_secret_outputs=["stdout"])
        joins = [command(f"{m.name}-join", m,
                         pulumi.Output.all(m.address, m.private_address, manager.private_address).apply(
                             lambda v: swarm_join_script(*v)),
                         delete=swarm_leave_script(force=False), depends_on=[init],
                         stdin=pulumi.Output.secret(token.stdout.apply(lambda t: t.strip() + "\n")))
                 for m in workers]
        before_network = [init, *joins]
    else:
        before_network = checked
    network = command("overlay-network", manager,
                      pulumi.Output.from_input(manager.address).apply(
                          lambda a: network_script(a, overlay_network, mode, stack)),
                      delete=pulumi.Output.from_input(manager.address).apply(
                          lambda a: network_delete_script(a, overlay_network, mode, stack)),
                      depends_on=before_network)
    if mode == "classic":
        # Nothing to make; on delete, before the network goes (they depend on it), each
        # machine removes its stale endpoints from it.
        for m in machines:
            command(f"{m.name}-stale-endpoints", m, "true",
                    delete=pulumi.Output.from_input(m.address).apply(
                        lambda a: stale_endpoints_script(a, overlay_network)),
                    depends_on=[network])
    return Cluster(facts=pulumi.Output.all(manager_facts, *[facts(c) for c in worker_ready]),
                   done=pulumi.Output.unsecret(network.stdout))
