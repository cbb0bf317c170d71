"""Time `pulumi up` and `pulumi destroy` of the 2-node local stack, and the Pulumi set-up
(scripts/setup-pulumi.sh) cold and warm.

- up/destroy: a copy of the project in a temporary directory with its own file backend and
  the `local` stack's configuration (Pulumi.local.yaml), under another lab name and subnet
  so that a user's lab is not touched. Median, min and max of REPEATS rounds.
- set-up cold: an empty cache (XDG_CACHE_HOME, and so the Go build cache, in a temporary
  directory) and an empty PULUMI_HOME; with --cold-modules also an empty Go module cache,
  as on a fresh machine (every module then comes from the Go module proxy). Then the same
  set-up again: warm.

Prints Markdown tables for the README. Run as root:
  .venv/bin/python benchmarks/pulumi_timing.py [--repeats 3] [--setup] [--cold-modules]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests import names  # noqa: E402  (a lab name and subnet no other run on this machine uses)

LAB_NAME = names.lab_name("ptim")
SUBNET = names.subnet()


def pulumi_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment of `. scripts/pulumi-env.sh` (with `extra` set before sourcing it)."""
    env = dict(os.environ, **extra)
    out = subprocess.run(["bash", "-c", f". {REPO}/scripts/pulumi-env.sh && env -0"], env=env,
                         capture_output=True, check=True).stdout
    return dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)


def timed(cmd: list[str], **kwargs) -> float:
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    elapsed_s = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"`{' '.join(cmd)}` failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return elapsed_s


def seconds(value_s: float) -> str:
    return f"{value_s:.2f} s" if value_s < 1 else f"{value_s:.1f} s"


def row(what: str, times_s: list[float]) -> str:
    return (f"| {what} | {seconds(statistics.median(times_s))} | {seconds(min(times_s))} | "
            f"{seconds(max(times_s))} | {len(times_s)} |")


def time_up_destroy(repeats: int) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="pulumi-timing-") as tmp:
        project, state = Path(tmp, "project"), Path(tmp, "state")
        project.mkdir()
        state.mkdir()
        for name in ("Pulumi.yaml", "__main__.py", "Pulumi.local.yaml"):
            shutil.copy(REPO / name, project / name)
        for package in ("stacks", "common", "bench"):  # the program's stacks and what they import
            shutil.copytree(REPO / package, project / package, ignore=shutil.ignore_patterns("__pycache__"))
        (project / ".venv").symlink_to(REPO / ".venv")
        env = pulumi_env({"OVERLAY_BENCH_PULUMI_STATE": str(state)})

        def pulumi(*args: str) -> float:
            return timed(["pulumi", *args, "--stack", "local"], cwd=project, env=env)

        timed(["pulumi", "stack", "init", "local"], cwd=project, env=env)
        pulumi("config", "set", "overlay-bench:labName", LAB_NAME)
        pulumi("config", "set", "overlay-bench:subnet", SUBNET)
        ups, destroys = [], []
        try:
            for _ in range(repeats):
                ups.append(pulumi("up", "--yes"))
                destroys.append(pulumi("destroy", "--yes"))
        finally:
            subprocess.run(["pulumi", "destroy", "--yes", "--stack", "local"], cwd=project, env=env,
                           capture_output=True)
    return [row("`pulumi up --stack local --yes` (2 nodes, classic, 1gbit)", ups),
            row("`pulumi destroy --stack local --yes`", destroys)]


def time_setup(cold_modules: bool) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="pulumi-setup-") as tmp:
        extra = {"XDG_CACHE_HOME": str(Path(tmp, "cache")), "PULUMI_HOME": str(Path(tmp, "pulumi-home"))}
        if cold_modules:
            extra["GOMODCACHE"] = str(Path(tmp, "gomod"))
        # Not the user's cached toolchain: drop it from PATH so that the set-up cannot find it.
        path = ":".join(p for p in os.environ["PATH"].split(":") if "/overlay-bench/pulumi/" not in p)
        env = dict(os.environ, PATH=path, **extra)
        cmd = [str(REPO / "scripts/setup-pulumi.sh")]
        cold = timed(cmd, cwd=REPO, env=env)
        warm = timed(cmd, cwd=REPO, env=env)
        if cold_modules:
            # Module cache files are read-only: let the temporary directory go.
            subprocess.run(["go", "clean", "-modcache"], env=env, capture_output=True)
    what = "empty build and module caches" if cold_modules else "empty build cache, modules downloaded"
    return [row(f"set-up cold ({what})", [cold]), row("set-up warm (second run)", [warm])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="up/destroy rounds (default 3)")
    parser.add_argument("--setup", action="store_true", help="also time the set-up cold and warm (minutes)")
    parser.add_argument("--cold-modules", action="store_true",
                        help="with --setup: start from an empty Go module cache too")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the local stack needs root: run it with sudo")
    print("| what | median | min | max | runs |")
    print("|---|---|---|---|---|")
    for line in time_up_destroy(args.repeats):
        print(line, flush=True)
    if args.setup:
        for line in time_setup(args.cold_modules):
            print(line, flush=True)


if __name__ == "__main__":
    main()
