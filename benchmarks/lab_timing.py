"""Time `python -m stacks.local up` and `down` for 2 and 4 nodes in each mode.

Prints one row per (mode, nodes) with the median of REPEATS wall times, as a Markdown
table for the README. Target: a 2-node swarm lab up in <= 20 s and down in <= 10 s.
Run as root: `.venv/bin/python benchmarks/lab_timing.py [--repeats 3]`.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def timed(*args: str) -> float:
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "stacks.local", *args], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from tests import names

    name = names.lab_name("time")  # unique: other labs may run on this machine
    print(f"| mode | nodes | up (median of {args.repeats}) | down (median of {args.repeats}) |")
    print("|---|---|---|---|")
    for mode in ("swarm", "classic"):
        for nodes in (2, 4):
            ups, downs = [], []
            for _ in range(args.repeats):
                ups.append(timed("up", "--name", name, "--mode", mode, "--nodes", str(nodes)))
                downs.append(timed("down", "--name", name))
            print(f"| {mode} | {nodes} | {statistics.median(ups):.1f} s | {statistics.median(downs):.1f} s |",
                  flush=True)


if __name__ == "__main__":
    main()
