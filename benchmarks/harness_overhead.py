"""Harness overhead of `python -m bench`: its wall time over the time its runs were asked to take.

Brings up a 2-node lab (or uses --outputs FILE) and runs `python -m bench` twice, on host
networking and on the overlay: RUNS runs of DURATION seconds after WARMUP seconds each, and
prints, for each, wall time / (runs x (warm-up + duration)): targets 1.03 (host) and 1.05
(overlay) for 20 runs of 5 s after 1 s. The wall time is the whole command's, interpreter
start to exit (image check, node facts, servers, idle CPU baseline, summary, cleanup).
The bench image is put on the nodes first: loading it is a cost of a new stack, not of a
session. The load average is printed with each figure: other jobs on the machine slow the
harness.
For reference, the 2015 loop spent about 0.2 s per `docker run` plus a fixed 1 s sleep per test.
Run as root: `.venv/bin/python benchmarks/harness_overhead.py [--mode classic]`.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import own_lab  # noqa: E402

TARGETS = {"host": 1.03, "overlay": 1.05}


def measure(outputs: Path, out_dir: Path, network: str, args) -> dict:
    cmd = [sys.executable, "-m", "bench", "--outputs", str(outputs), "--results", str(out_dir),
           "--networks", network, "--tools", args.tool, "--runs", str(args.runs),
           "--duration", str(args.duration), "--warmup", str(args.warmup), "--quiet"]
    load_before = os.getloadavg()[0]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall_s = time.monotonic() - start
    if proc.returncode != 0:
        print(proc.stdout, proc.stderr, file=sys.stderr)
        raise SystemExit(1)
    (runs_file,) = out_dir.glob("*/runs.jsonl")
    runs = [json.loads(line) for line in runs_file.read_text().splitlines()]
    ok = [r for r in runs if r["status"] == "ok"]
    return {"cmd": cmd, "wall_s": wall_s, "runs": runs, "ok": ok, "load": (load_before, os.getloadavg()[0])}


def report(network: str, result: dict, args) -> None:
    method_s = args.runs * (args.warmup + args.duration)
    ok, runs = result["ok"], result["runs"]
    per_run = [r["wall_s"] - (args.warmup + args.duration) for r in ok]
    ratio = result["wall_s"] / method_s
    cmd = result["cmd"]
    print(f"command: {' '.join(['python', '-m', 'bench'] + cmd[3:])}")
    print(f"  network {network}, tool {args.tool}; runs ok: {len(ok)}/{len(runs)}")
    print(f"  wall time of python -m bench: {result['wall_s']:.1f} s (interpreter start to exit)")
    print(f"  runs x (warm-up + duration): {method_s:.1f} s")
    print(f"  harness overhead ratio: {ratio:.3f} (target <= {TARGETS.get(network, float('nan')):.2f})")
    print(f"  per run beyond warm-up + duration: median {statistics.median(per_run):.3f} s, "
          f"max {max(per_run):.3f} s")
    print(f"  outside the runs (start, image, node facts and servers, idle CPU, summary, cleanup): "
          f"{result['wall_s'] - sum(r['wall_s'] for r in runs if r['wall_s']):.1f} s")
    print(f"  load average (1 min) before / after: {result['load'][0]:.2f} / {result['load'][1]:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", help="use this stack's outputs instead of a lab of our own")
    parser.add_argument("--mode", default="classic", choices=("classic", "swarm"))
    parser.add_argument("--networks", default="host,overlay", help="networks measured, one session each")
    parser.add_argument("--tool", default="iperf2", help="tool (default iperf2, the 2015 profile's)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        tmp_path = Path(tmp)
        outputs = own_lab.outputs(stack, args.outputs, tmp_path, "btoh", mode=args.mode)
        if args.outputs is None:
            print(f"lab: {args.mode} mode, 2 nodes, unshaped")
        print(f"bench image put on the nodes first: {own_lab.load_image(outputs):.1f} s (once per stack, "
              "not per session)")
        for network in args.networks.split(","):
            report(network, measure(outputs, tmp_path / network, network, args), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
