"""macvlan and ipvlan: one network per node on its cluster interface, probed before the matrix.

The stack outputs say where their containers get addresses (`underlay_network`: the parent
interface, the subnet, a range no machine uses); each node's engine gets one block of the
range (stacks.outputs.node_ranges), half of it for each network, so no two engines and no
two networks of one engine hand out the same address. The
networks are local to each engine under one name, so a run names the same network on both
ends, as it does for the overlay; the frames go over the cluster network as they are.

Support is probed per node: the network is created and a throwaway container is started
on it, because an engine creates an ipvlan network on a kernel without ipvlan and only
fails when a container attaches (seen on a kernel without CONFIG_IPVLAN: "failed to create
the ipvlan port: operation not supported"). The engine's own words become the reason its
runs are skipped with.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
from typing import Any

import docker
import docker.errors
import docker.types

from bench import engines
from bench.engines import LABEL_SESSION
from stacks import outputs as contract

NETWORKS = contract.UNDERLAY_NETWORKS
# The mode of each: macvlan's bridge (containers of one parent reach each other directly)
# and ipvlan's L2 (the parent's MAC for every container, neighbours on the same segment).
MODES = {"macvlan": ("macvlan_mode", "bridge"), "ipvlan": ("ipvlan_mode", "l2")}
# Words of the kernel's refusal, and the kernel option they point at.
KERNEL_OPTION = {"macvlan": "CONFIG_MACVLAN", "ipvlan": "CONFIG_IPVLAN"}
PROBE_TIMEOUT_S = 30


def network_name(kind: str, session: str) -> str:
    return f"ob-{kind}-{session}"[:60]


def prepare(kind: str, outputs: dict[str, Any], clients: dict[str, docker.DockerClient],
            image: str, session: str) -> tuple[list[tuple[str, Any]], str | None]:
    """Create `kind`'s network on every node and attach a throwaway container to each.

    Returns the networks made, as (node, network) pairs for the session to remove, and None,
    or the reason `kind` cannot run here (the networks made are then already removed).
    """
    underlay = outputs["underlay_network"]
    ranges = contract.node_ranges(underlay["address_range"], len(outputs["nodes"]), kind)
    name = network_name(kind, session)
    option, mode = MODES[kind]

    def one(node: dict[str, Any], block: str) -> tuple[Any | None, str | None]:
        client = clients[node["name"]]
        try:
            with engines.answering(node["name"], doing=f"while creating the {kind} network"):
                net = client.networks.create(
                    name, driver=kind, labels={LABEL_SESSION: session},
                    options={"parent": underlay["parent_interface"], option: mode},
                    ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(
                        subnet=underlay["subnet"], iprange=block)]))
        except engines.EngineRefused as exc:
            return None, f"{kind} network cannot be created on {node['name']}: {_said(exc)}"
        try:
            with engines.answering(node["name"], doing=f"while probing the {kind} network"):
                engines.run_in(client, image, ["sh", "-c", ":"], session=session, network=name,
                               timeout_s=PROBE_TIMEOUT_S)
        except engines.EngineRefused as exc:
            # A container whose start failed stays created: gone before its network goes.
            with contextlib.suppress(Exception):
                for ctr in client.containers.list(all=True, filters={"label": f"{LABEL_SESSION}={session}",
                                                                     "network": name}):
                    ctr.remove(force=True)
            return net, (f"{kind} carries no container on {node['name']}: {_said(exc)} (this "
                         f"kernel may lack {KERNEL_OPTION[kind]})")
        return net, None

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(outputs["nodes"])) as pool:
        results = list(pool.map(one, outputs["nodes"], ranges))
    made = [(node["name"], net) for node, (net, _) in zip(outputs["nodes"], results) if net is not None]
    reasons = [reason for _, reason in results if reason]
    if reasons:
        remove(made)
        return [], reasons[0]
    return made, None


def remove(made: list[tuple[str, Any]]) -> None:
    for _node, net in made:
        with contextlib.suppress(Exception):
            net.remove()


def _said(exc: engines.EngineError) -> str:
    """The engine's words, without the prefix `answering` adds."""
    text = str(exc)
    return text.split(": ", 1)[1] if ": " in text else text
