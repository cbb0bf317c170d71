"""What the overlay costs in CPU: CPU per Gbit/s on host and overlay, measured twice in a row.

Brings up a 2-node lab, unshaped (or uses --outputs FILE), and runs `python -m bench
--networks host,overlay --tools iperf2 --streams 10 --runs 10` (interleaved) twice. For each
session it prints, from `python -m analysis`'s own tables: CPU per Gbit/s per network (percent
of a core per Gbit/s, mean and 95 % interval), the overlay's extra CPU against host in percent
with Fieller's interval, the throughputs, the idle baseline and the load average. Then whether
the two figures agree: each one's estimate inside the other's interval.
Run as root: `.venv/bin/python benchmarks/cpu_cost.py [--duration 5] [--mode classic]`.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import own_lab  # noqa: E402


def session(outputs: Path, results: Path, args) -> tuple[list[str], Path, float]:
    cmd = [sys.executable, "-m", "bench", "--outputs", str(outputs), "--results", str(results),
           "--networks", "host,overlay", "--tools", "iperf2", "--streams", "10", "--runs", str(args.runs),
           "--duration", str(args.duration), "--warmup", str(args.warmup), "--quiet"]
    load = os.getloadavg()[0]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stdout, proc.stderr, file=sys.stderr)
        raise SystemExit(1)
    (path,) = results.glob("*/metadata.json")
    return cmd, path.parent, (load + os.getloadavg()[0]) / 2


def figures(session_dir: Path) -> dict:
    from analysis import load, precision
    from analysis import table as tbl

    sessions = load.load([str(session_dir)])
    setups = load.assign_setups(sessions, merge=False)
    summary = tbl.summarize(load.runs_table(setups), {k: "local" for k in setups}, load.node_mtus(setups),
                            precision.targets(setups))
    (row,) = [r for _, r in summary.iterrows()]
    idle = sessions[0].metadata["cpu"]["kernels"][0]["idle"]
    return {"row": row, "idle": idle}


def show(n: int, cmd: list[str], fig: dict, load: float) -> None:
    row, idle = fig["row"], fig["idle"]
    print(f"session {n}: python -m bench {' '.join(cmd[3:])}")
    for net in ("host", "overlay"):
        print(f"  {net:8s} CPU {row[f'{net}_cpu_percent_per_gbps_mean']:.2f} % of a core per Gbit/s "
              f"[{row[f'{net}_cpu_percent_per_gbps_ci_low']:.2f}, {row[f'{net}_cpu_percent_per_gbps_ci_high']:.2f}] "
              f"(usr/sys/softirq {row[f'{net}_cpu_user_percent_per_gbps_mean']:.2f}/"
              f"{row[f'{net}_cpu_system_percent_per_gbps_mean']:.2f}/"
              f"{row[f'{net}_cpu_softirq_percent_per_gbps_mean']:.2f}); "
              f"throughput {row[f'{net}_mean']:.0f} Mbit/s, n={row[f'{net}_cpu_n']}")
    print(f"  overlay's extra CPU per Gbit/s: {row['overlay_cpu_extra_percent']:+.1f} % "
          f"[{row['overlay_cpu_extra_ci_low_percent']:+.1f}, {row['overlay_cpu_extra_ci_high_percent']:+.1f}]"
          f" (Fieller, 95 %); throughput {row['overlay_overhead_percent']:+.1f} % "
          f"[{row['overlay_overhead_ci_low_percent']:+.1f}, {row['overlay_overhead_ci_high_percent']:+.1f}]")
    print(f"  scope: {row['cpu_scope']}; idle baseline {idle['total_cores']:.3f} cores "
          f"over {idle['window_s']:.2f} s; load average {load:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", help="use this stack's outputs instead of a lab of our own")
    parser.add_argument("--mode", default="classic", choices=("classic", "swarm"))
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        tmp_path = Path(tmp)
        outputs = own_lab.outputs(stack, args.outputs, tmp_path, "btcc", mode=args.mode)
        if args.outputs is None:
            print(f"lab: {args.mode} mode, 2 nodes, unshaped; {os.cpu_count()} CPUs")
        extra = []
        for n in (1, 2):
            started = time.monotonic()
            cmd, session_dir, load = session(outputs, tmp_path / f"r{n}", args)
            fig = figures(session_dir)
            show(n, cmd, fig, load)
            print(f"  ({time.monotonic() - started:.0f} s)")
            row = fig["row"]
            extra.append((row["overlay_cpu_extra_percent"], row["overlay_cpu_extra_ci_low_percent"],
                          row["overlay_cpu_extra_ci_high_percent"]))
    (a, a_low, a_high), (b, b_low, b_high) = extra
    agree = a_low <= b <= a_high and b_low <= a <= b_high
    print(f"the two figures {'agree' if agree else 'DO NOT agree'}: {a:+.1f} % [{a_low:+.1f}, {a_high:+.1f}] "
          f"then {b:+.1f} % [{b_low:+.1f}, {b_high:+.1f}] (each inside the other's interval: {agree})")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
