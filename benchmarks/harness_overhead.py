"""Harness overhead of `python -m bench`: its wall time divided by the seconds it measured.

Brings up a 2-node lab (or uses --outputs FILE), runs `python -m bench` for RUNS runs of
DURATION seconds with no warm-up (the warm-up is measurement time the user asks for, not
harness cost), and prints the ratio; target <= 1.10 for 20 runs of 5 s. For reference,
the 2015 loop spent about 0.2 s per `docker run` plus a fixed 1 s sleep per test.
Run as root: `.venv/bin/python benchmarks/harness_overhead.py [--network host] [--mode classic]`.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests import names  # noqa: E402  (a lab name and subnet no other run on this machine uses)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", help="use this stack's outputs instead of a lab of our own")
    parser.add_argument("--mode", default="classic", choices=("classic", "swarm"))
    parser.add_argument("--network", default="host", help="network under test (default host)")
    parser.add_argument("--tool", default="iperf2", help="tool (default iperf2, the 2015 profile's)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--duration", type=int, default=5)
    args = parser.parse_args()

    from common.status import Status
    from stacks.local import lab

    own_lab = args.outputs is None
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        tmp_path = Path(tmp)
        if own_lab:
            doc = stack.enter_context(lab.running(names.lab_name("btoh"), mode=args.mode, subnet=names.subnet(),
                                                  status=Status(quiet=True)))
            outputs = tmp_path / "outputs.json"
            outputs.write_text(json.dumps(doc))
        else:
            outputs = Path(args.outputs)
        cmd = [sys.executable, "-m", "bench", "--outputs", str(outputs), "--results", str(tmp_path / "r"),
               "--networks", args.network, "--tools", args.tool, "--runs", str(args.runs),
               "--duration", str(args.duration), "--warmup", "0", "--quiet"]
        start = time.monotonic()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        wall_s = time.monotonic() - start
        if proc.returncode != 0:
            print(proc.stdout, proc.stderr, file=sys.stderr)
            return 1
        (runs_file,) = (tmp_path / "r").glob("*/runs.jsonl")
        runs = [json.loads(line) for line in runs_file.read_text().splitlines()]
    measured_s = sum(r["duration_s"] for r in runs if r["status"] == "ok")
    per_run = [r["wall_s"] - r["duration_s"] for r in runs if r["status"] == "ok"]
    ok = sum(r["status"] == "ok" for r in runs)
    print(f"command: {' '.join(['python', '-m', 'bench'] + cmd[3:])}")
    print(f"lab: {args.mode} mode, 2 nodes, unshaped; network {args.network}, tool {args.tool}")
    print(f"runs ok: {ok}/{len(runs)}")
    print(f"wall time of python -m bench: {wall_s:.1f} s (interpreter start to exit)")
    print(f"sum of measured durations: {measured_s:.1f} s")
    print(f"harness overhead ratio: {wall_s / measured_s:.3f} (target <= 1.10)")
    print(f"per-run overhead (run wall - duration): median {statistics.median(per_run):.2f} s, "
          f"max {max(per_run):.2f} s")
    print(f"fixed cost (start, image, node facts, summary): "
          f"{wall_s - sum(r['wall_s'] for r in runs if r['wall_s']):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
