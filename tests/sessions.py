"""Synthetic result sessions for analysis tests: a full matrix over every network of the results
format (so a network added there is in it too), written as `python -m bench` writes them."""
from __future__ import annotations

import json
import random
from pathlib import Path

from bench import results_format as fmt

# Per network, the throughput as a fraction of host's (a network added later gets 0.95).
SHARE = {"host": 1.0, "overlay": 0.9655, "overlay-encrypted": 0.80, "bridge": 0.99}
NODES = ("matrix-node-number-1", "matrix-node-number-2")  # long names: the widest case labels


def write_matrix_session(root: Path, name: str = "20261129-120000-matrix", runs: int = 5,
                         skipped: dict[str, str] | None = None, seed: int = 7) -> Path:
    """A session with iperf2/iperf3 TCP, iperf3 UDP and sockperf cases on every network;
    networks in `skipped` are skipped with that reason in every case. sockperf has 2 runs per
    network, with p99.9 spread wide (its Student interval reaches below zero)."""
    rng = random.Random(seed)
    skipped = skipped or {}
    session = root / name
    session.mkdir(parents=True)
    nodes = {n: {"engine_version": "20.10.24", "kernel": "6.18.0", "os": "Debian GNU/Linux 12",
                 "host_mtu_bytes": 1500, "overlay_mtu_bytes": 1450} for n in NODES}
    outputs = {"schema_version": 2, "stack": "matrix", "provider": "local", "mode": "swarm",
               "nodes": [{"name": n, "role": "manager" if i == 0 else "worker", "address": f"10.77.0.{11 + i}",
                          "docker_host": f"unix:///run/overlay-bench/matrix/{n}/docker.sock",
                          "tls_cert_path": None, "ssh_key_path": None} for i, n in enumerate(NODES)],
               "keystore": None, "overlay_network": "ob-overlay", "link_rate": "1gbit", "mtu_bytes": 1500,
               "unsupported_networks": skipped}
    metadata = fmt.metadata(session=name, started_at="2026-11-29T12:00:00Z", command_line=["python", "-m", "bench"],
                            seed=seed, stack_outputs=outputs, nodes=nodes,
                            cpu={"source": "/proc/stat", "scope": "machine", "idle_baseline_s": 1.0,
                                 "kernels": [{"boot_id": "0", "nodes": list(NODES), "cpus": 2, "idle": None}],
                                 "unavailable": {}},
                            image={"name": "overlay-bench/tools:1", "id": "sha256:0"},
                            tool_versions={"iperf2": "2.1.8", "iperf3": "3.12", "sockperf": "3.7"}, plan={})
    (session / "metadata.json").write_text(json.dumps(metadata, indent=2))
    cases = [("iperf2", "tcp", 10, None), ("iperf3", "tcp", 1, None), ("iperf3", "tcp", 10, None),
             ("iperf3", "udp", 1, 500.0), ("sockperf", "tcp", 1, None)]
    lines = []
    for tool, protocol, streams, target in cases:
        for net in fmt.NETWORKS:
            case_id = f"{tool}-{protocol}-P{streams}-forward-{net}"
            count = 2 if tool == "sockperf" else runs
            for i in range(1, count + 1):
                record = dict.fromkeys(fmt.RUN_FIELDS)
                record.update(format_version=fmt.FORMAT_VERSION, run_id=f"{case_id}#{i}", case_id=case_id,
                              run_index=i, network=net, tool=tool, protocol=protocol, streams=streams,
                              direction="forward", server_node=NODES[0], client_node=NODES[1], duration_s=10,
                              warmup_s=1, udp_target_mbps=target, started_at="2026-11-29T12:00:10Z",
                              wall_s=11.2, status="ok")
                share = SHARE.get(net, 0.95)
                if net in skipped:
                    record.update(status="skipped", reason=skipped[net], wall_s=None)
                elif tool == "sockperf":
                    base = 32.0 / share
                    record.update(latency_p50_us=round(base + rng.uniform(-0.5, 0.5), 2),
                                  latency_p99_us=round(2 * base + rng.uniform(-5, 5), 2),
                                  # two runs far apart: mean - t * se is well below zero
                                  latency_p999_us=[150.0, 1900.0][i - 1])
                elif protocol == "udp":
                    record.update(throughput_mbps=round(499.9 + rng.uniform(-0.1, 0.1), 2),
                                  udp_loss_percent=round(rng.uniform(0, 0.02) / share, 4),
                                  udp_jitter_ms=round(0.010 / share + rng.uniform(-0.002, 0.002), 4))
                else:
                    record.update(throughput_mbps=round(957.0 * share + rng.uniform(-1.5, 1.5), 1),
                                  retransmits=rng.randint(0, 40) + (0 if net == "host" else 25))
                lines.append(fmt.run_line(record))
    (session / "runs.jsonl").write_text("".join(lines))
    return session
