"""The cloud path's costs on droplet-like lab nodes: `pulumi up`/`destroy` of the `ssh`
stack, and bench over ssh:// against bench over unix:// on the same machines.

- A 2-node lab made as a cloud hands machines over (`--access ssh --firewall --bare`), and
  a copy of the project with its own file backend whose stack `ssh` points at it
  (tests/test_ssh_stack.py's set-up). `pulumi up` then `pulumi destroy`, REPEATS rounds:
  median, min, max (targets: up 20 s or less, destroy 10 s or less).
- One more `pulumi up`, then `python -m bench` twice on the same engines, in one run of
  this script: once with the stack's outputs (ssh://, the docker SDK over SSH with the
  lab's key), once with the same document pointing at the engines' unix sockets. RUNS host
  runs of DURATION s each, no warm-up (as benchmarks/harness_overhead.py); --rounds N
  alternates the two N times (unix, ssh, ssh, unix, ...). Wall time of each bench command
  and their ratio (target 1.05 or less).

Prints the load average before and after: the machine may be shared. Run as root:
  .venv/bin/python benchmarks/ssh_stack.py [--repeats 3] [--mode swarm] [--runs 20] [--duration 5] [--rounds 1]
"""
from __future__ import annotations

import argparse
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

from tests import names  # noqa: E402  (a lab name and subnets no other run on this machine uses)


def seconds(values: list[float]) -> str:
    return (f"{statistics.median(values):.1f} s | {min(values):.1f} s | {max(values):.1f} s | {len(values)}")


def timed(run, *args: str) -> float:
    start = time.monotonic()
    run(*args)
    return time.monotonic() - start


def bench(outputs: Path, results: Path, args: argparse.Namespace) -> float:
    cmd = [sys.executable, "-m", "bench", "--outputs", str(outputs), "--results", str(results),
           "--networks", "host", "--tools", args.tool, "--runs", str(args.runs), "--duration", str(args.duration),
           "--warmup", "0", "--quiet"]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall_s = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"`{' '.join(cmd)}` failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return wall_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="up/destroy rounds (default 3)")
    parser.add_argument("--mode", default="swarm", choices=("classic", "swarm"))
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--tool", default="iperf2", help="tool (default iperf2, the 2015 profile's)")
    parser.add_argument("--rounds", type=int, default=1, help="unix/ssh bench pairs, alternated (default 1)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the lab needs root: run it with sudo")

    from common.status import Status
    from stacks import outputs
    from stacks.local import lab
    from tests.test_ssh_stack import ssh_project

    load_before = os.getloadavg()
    name = names.lab_name("bssh")
    subnet, management = names.subnets(2)
    ups, destroys, walls = [], [], {"unix": [], "ssh": []}
    with tempfile.TemporaryDirectory(prefix="ssh-stack-") as tmp, \
            lab.running(name, mode=args.mode, subnet=subnet, access="ssh", management_subnet=management,
                        firewall=True, bare=True, status=Status(quiet=True)) as lab_doc:
        proj = ssh_project(Path(tmp), lab_doc, args.mode)
        try:
            for _ in range(args.repeats):
                ups.append(timed(proj.up))
                destroys.append(timed(proj.destroy))
            proj.up()
            doc = outputs.loads(proj.outputs())
            over_ssh, over_unix = Path(tmp, "ssh.json"), Path(tmp, "unix.json")
            over_ssh.write_text(json.dumps(doc))
            over_unix.write_text(json.dumps({**doc, "nodes": [
                {**node, "docker_host": f"unix://{lab.node_socket(name, i)}", "ssh_key_path": None}
                for i, node in enumerate(doc["nodes"], start=1)]}))
            order = []
            for round_index in range(args.rounds):
                order += ["unix", "ssh"] if round_index % 2 == 0 else ["ssh", "unix"]
            for i, access in enumerate(order):
                source = over_ssh if access == "ssh" else over_unix
                walls[access].append(bench(source, Path(tmp, f"results-{i}"), args))
        finally:
            subprocess.run(["pulumi", "destroy", "--yes", "--stack", "ssh"], cwd=proj.dir, env=proj.env,
                           capture_output=True)
    load_after = os.getloadavg()

    print(f"lab: 2 nodes, {args.mode} mode, --access ssh --firewall --bare, unshaped; "
          f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} ({os.cpu_count()} cores)")
    print()
    print("| what | median | min | max | n |")
    print("|---|---|---|---|---|")
    print(f"| `pulumi up --stack ssh` ({args.mode}, 2 machines; target 20 s) | {seconds(ups)} |")
    print(f"| `pulumi destroy --stack ssh` (target 10 s) | {seconds(destroys)} |")
    for access in ("unix", "ssh"):
        print(f"| `python -m bench` over {access}:// ({args.runs} {args.tool} host runs of {args.duration} s) | "
              f"{seconds(walls[access])} |")
    ratio = statistics.median(walls["ssh"]) / statistics.median(walls["unix"])
    print()
    print(f"bench wall time, ssh:// / unix://: {ratio:.3f} (target 1.05 or less)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
