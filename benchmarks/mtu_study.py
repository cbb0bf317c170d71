"""The MTU study: what the overlay costs against host at MTU 1500 and at 9000, beside the VXLAN bound.

For each link MTU (and link rate) a lab is brought up (its overlay at the link MTU less 50,
as every stack makes it), `python -m bench` measures the networks against host, and
`python -m analysis`'s own statistics give each network's throughput as a percentage of
host's with its 95% interval (Fieller), printed beside the VXLAN bound: TCP payload per
packet inside the overlay over the host's, (MTU - 50 - 52) / (MTU - 52): 96.55% at 1500,
99.44% at 9000. On a shaped (link-bound) lab the overlay should reach the bound; unshaped,
the path is CPU-bound and the gap is the encapsulation's CPU cost. CPU per Gbit/s is printed
when the bench records it.

    .venv/bin/python benchmarks/mtu_study.py                          # `make mtu-study`
    .venv/bin/python benchmarks/mtu_study.py --link-rates 1gbit --mtus 9000   # target: 0.5 points
    .venv/bin/python benchmarks/mtu_study.py --networks host,overlay,macvlan,ipvlan \\
        --link-rates 1gbit,unshaped --mtus 1500                       # `make underlay-study`

Run as root. Labs get names and subnets no other run on this machine uses, and are removed
(checked clean) whatever happens; `--results DIR` keeps the sessions (else a temporary directory).
"""
from __future__ import annotations

import argparse
import math
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests import names  # noqa: E402  (a lab name and subnet no other run on this machine uses)

TCP_IP_HEADERS_BYTES = 52  # IPv4 20 + TCP 20 + timestamp option 12
# On a link-bound path the overlay should reach its VXLAN bound within this many points.
TARGET_POINTS = 0.5


def vxlan_bound_percent(link_mtu: int) -> float:
    from stacks.outputs import overlay_mtu_bytes

    return (overlay_mtu_bytes(link_mtu) - TCP_IP_HEADERS_BYTES) / (link_mtu - TCP_IP_HEADERS_BYTES) * 100


def measure(mtu: int, rate: str | None, args: argparse.Namespace, results: Path) -> Path:
    """A lab at `mtu` (shaped to `rate`), one bench session on it; the session's directory."""
    from common.status import Status
    from stacks import outputs
    from stacks.local import lab

    name = names.lab_name("mtu")
    spec = dict(mode=args.mode, mtu_bytes=mtu, link_rate=rate, subnet=names.subnet())
    where = results / f"mtu{mtu}-{rate or 'unshaped'}"
    with lab.running(name, status=Status(quiet=True), **spec) as doc:
        path = where.parent / f"{where.name}.outputs.json"
        path.write_text(outputs.dumps(doc))
        cmd = [sys.executable, "-m", "bench", "--quiet", "--outputs", str(path), "--results", str(where),
               "--networks", args.networks, "--tools", args.tool, "--runs", str(args.runs),
               "--duration", str(args.duration)]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        for line in proc.stdout.splitlines():
            if line.startswith("warning: "):
                print(f"  {line}")
        if proc.returncode != 0:
            raise SystemExit(f"bench failed on the MTU {mtu} lab ({proc.returncode}): "
                             f"{(proc.stderr or proc.stdout).strip()}")
    return where


def summary(session_root: Path):
    """analysis's table for the session(s) under `session_root`, and its runs."""
    from analysis import load
    from analysis import table as tbl

    setups = load.assign_setups(load.load([str(session_root)]), merge=False)
    runs = load.runs_table(setups)
    providers = {label: members[0].metadata["stack_outputs"]["provider"] for label, members in setups.items()}
    return tbl.summarize(runs, providers, load.node_mtus(setups)), runs


def percent(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.2f}%"


def report(mtu: int, rate: str | None, session_root: Path) -> list[str]:
    table, runs = summary(session_root)
    networks = [n.strip() for n in NETWORKS_ARG if n.strip() != "host"]
    link = rate or "unshaped"
    lines = []
    for _, row in table.iterrows():
        mtus = f"link MTU {row['host_mtu_bytes']:.0f}, overlay MTU {row['overlay_mtu_bytes']:.0f}"
        lines.append(f"MTU {mtu}, {link} ({mtus}), {row['tool']} -P {row['streams']}: "
                     f"host {row['host_mean']:.0f} Mbit/s (n={row['host_n']})")
        for net in networks:
            if f"{net}_n" not in row or row[f"{net}_n"] == 0:
                reason = row.get(f"{net}_skipped_reason") or row.get(f"{net}_failed_reason") or "no run"
                lines.append(f"  {net:<8} not measured: {reason}")
                continue
            ratio = 100 + row[f"{net}_overhead_percent"]
            low, high = (100 + row[f"{net}_overhead_ci_low_percent"], 100 + row[f"{net}_overhead_ci_high_percent"])
            interval = "unbounded" if math.isnan(low) or math.isnan(high) else f"[{percent(low)}, {percent(high)}]"
            text = (f"  {net:<8} {row[f'{net}_mean']:.0f} Mbit/s = {percent(ratio)} of host "
                    f"{interval} (n={row[f'{net}_n']})")
            if net.startswith("overlay"):
                bound = vxlan_bound_percent(mtu)
                text += f"; VXLAN bound {bound:.2f}%, measured {ratio - bound:+.2f} points from it"
                if rate:
                    met = abs(ratio - bound) <= TARGET_POINTS
                    text += f" (target {TARGET_POINTS} points on a shaped link: {'met' if met else 'MISSED'})"
            lines.append(text)
        cpu = cpu_per_gbps(runs, row)
        if cpu:
            lines.append("  CPU per Gbit/s (cores): " + ", ".join(f"{n} {v:.3f}" for n, v in cpu.items()))
    return lines


def cpu_per_gbps(runs, row) -> dict[str, float]:
    """Mean CPU cores per Gbit/s per network, when the bench records it (else empty)."""
    if "cpu_cores_per_gbps" not in runs:
        return {}
    mine = runs[(runs["row"] == row.name) & (runs["status"] == "ok")]
    means = mine.groupby("network")["cpu_cores_per_gbps"].mean().dropna()
    return {n: float(v) for n, v in means.items()}


NETWORKS_ARG: list[str] = []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mtus", default="1500,9000", help="link MTUs, one lab each (default 1500,9000)")
    parser.add_argument("--link-rates", default="unshaped",
                        help="tc rates, one lab each per MTU, `unshaped` for none (default unshaped)")
    parser.add_argument("--networks", default="host,overlay", help="bench --networks (default host,overlay)")
    parser.add_argument("--tool", default="iperf2", help="bench --tools (default iperf2, the 2015 method)")
    parser.add_argument("--mode", default="swarm", choices=("swarm", "classic"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--results", type=Path, help="keep the sessions here (default: a temporary directory)")
    args = parser.parse_args()

    def interrupted(signum, frame):
        raise KeyboardInterrupt  # the lab's `with` removes it (and bench's run is stopped)

    # SIGTERM, and SIGINT even when started in the background (which ignores it), remove the lab.
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    NETWORKS_ARG[:] = args.networks.split(",")
    if "host" not in NETWORKS_ARG:
        parser.error("--networks must include host: every figure is against host")
    mtus = [int(m) for m in args.mtus.split(",")]
    rates = [None if r == "unshaped" else r for r in args.link_rates.split(",")]
    with tempfile.TemporaryDirectory(prefix="mtu-study-") as tmp:
        results = args.results or Path(tmp)
        results.mkdir(parents=True, exist_ok=True)
        print(f"MTU study: {args.networks} with {args.tool}, {args.runs} runs x {args.duration} s, "
              f"{args.mode} mode; figures are % of host with 95% intervals (Fieller)")
        for rate in rates:
            for mtu in mtus:
                where = measure(mtu, rate, args, results)
                for line in report(mtu, rate, where):
                    print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
