"""python -m bench: measure overlay networking against host networking, and keep every figure.

Reads a stack's outputs (--stack NAME or --outputs FILE), runs the measurement matrix in
containers pinned to the nodes, and stores each run as it completes under --results.
"""
from __future__ import annotations

import argparse
import contextlib
import random
import sys
from pathlib import Path
from typing import Any

from bench import image as bench_image
from bench import plan as bench_plan
from bench import ports, store
from bench import stack as bench_stack
from bench.plan import PlanError
from bench.progress import Progress
from bench.session import Session, check_resumable, static_skip
from common.errors import EXIT_ENVIRONMENT, EXIT_INTERRUPTED, EXIT_USAGE, UserError


def _csv(kind):
    def parse(text: str):
        items = [x.strip() for x in text.split(",") if x.strip()]
        try:
            return tuple(kind(x) for x in items)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of {kind.__name__}") from None
    return parse


MATRIX_OPTIONS = ("networks", "tools", "protocols", "streams", "directions", "runs", "duration_s",
                  "warmup_s", "pairs", "udp_target_mbps", "port_base", "precision_points", "max_runs")


class _Parser(argparse.ArgumentParser):
    """argparse, with a mistake told in one line (its usage block is for --help)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"bench: {message} (see python -m bench --help)\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _Parser(prog="python -m bench", description=__doc__.splitlines()[0])
    src = p.add_argument_group("input")
    src.add_argument("--stack", metavar="NAME", help="read the outputs of this Pulumi stack")
    src.add_argument("--outputs", metavar="FILE", help="read the outputs document from a file")
    src.add_argument("--results", metavar="PATH", default="results",
                     help="directory of results sessions (default: results/)")
    src.add_argument("--resume", metavar="DIR", help="continue a session: run only what is missing")
    src.add_argument("--image", metavar="NAME", default=None,
                     help=f"use this image (already on every node) instead of building {bench_image.IMAGE_NAME}")
    m = p.add_argument_group("matrix (each overrides the profile)")
    m.add_argument("--profile", choices=sorted(bench_plan.PROFILES), default=None,
                   help="2015 (default): iperf2, tcp, 10 streams, host and overlay, 5 runs; full: everything")
    m.add_argument("--networks", type=_csv(str), help=f"from {','.join(bench_plan.NETWORKS)}")
    m.add_argument("--tools", type=_csv(str), help=f"from {','.join(bench_plan.TOOLS)}")
    m.add_argument("--protocols", type=_csv(str), help="tcp,udp")
    m.add_argument("--streams", type=_csv(int), help="parallel streams, e.g. 1,10")
    m.add_argument("--directions", type=_csv(str), help="forward,reverse")
    m.add_argument("--runs", type=int, help="runs per case (default 5)")
    m.add_argument("--duration", dest="duration_s", type=int, help="measured seconds per run (default 10)")
    m.add_argument("--warmup", dest="warmup_s", type=int, help="seconds left out at the start (default 1)")
    m.add_argument("--pairs", choices=bench_plan.PAIRS, help="first (default): the first two nodes; all; ring")
    m.add_argument("--udp-rate", dest="udp_target_mbps", type=float,
                   help="UDP target rate in Mbit/s, over all streams (default 500)")
    m.add_argument("--shuffle", action="store_true", help="shuffle the cases within each round")
    m.add_argument("--seed", type=int, help="shuffle seed (recorded; random when not given)")
    m.add_argument("--port-base", dest="port_base", type=int,
                   help=f"first server port (default {ports.DEFAULT_BASE}; one port per server, one server "
                        f"per case, inside the {ports.OPEN[0]}-{ports.OPEN[1]} the stacks' firewalls open)")
    m.add_argument("--precision", dest="precision_points", type=float, metavar="PCT",
                   help="add rounds until every network's 95%% interval against host has a half-width "
                   f"of at most PCT percentage points (--runs: the rounds before the first check, "
                   f"default {bench_plan.PRECISION_MIN_RUNS})")
    m.add_argument("--max-runs", dest="max_runs", type=int, metavar="N",
                   help=f"with --precision: at most N runs per case (default {bench_plan.PRECISION_MAX_RUNS})")
    r = p.add_argument_group("running")
    r.add_argument("--dry-run", action="store_true", help="list the cases and the estimated time, run nothing")
    r.add_argument("--keep-going", action="store_true",
                   help="continue after a node's engine stops answering (its runs are recorded as failed)")
    r.add_argument("--quiet", action="store_true", help="no progress output (the summary is still printed)")
    return p.parse_args(argv)


def _plan_from_args(args: argparse.Namespace) -> bench_plan.Plan:
    overrides: dict[str, Any] = {k: getattr(args, k) for k in MATRIX_OPTIONS}
    if args.seed is not None and not args.shuffle:
        raise PlanError("--seed only makes sense with --shuffle")
    overrides["shuffle"] = args.shuffle or None
    if args.shuffle:
        overrides["seed"] = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    return bench_plan.make_plan(args.profile or "2015", **overrides)


def _matrix_given(args: argparse.Namespace) -> bool:
    return any(getattr(args, k) is not None for k in MATRIX_OPTIONS) or args.profile or args.shuffle


def _outputs(args: argparse.Namespace, meta: dict[str, Any] | None) -> dict[str, Any]:
    if args.stack and args.outputs:
        raise bench_stack.StackError("give --stack or --outputs, not both")
    if args.outputs:
        return bench_stack.from_file(args.outputs)
    if args.stack:
        return bench_stack.from_pulumi(args.stack)
    if meta is not None:
        return bench_stack.validate(meta["stack_outputs"])
    raise bench_stack.StackError("say which cluster to measure: --stack NAME (a Pulumi stack) or "
                                 "--outputs FILE (its `pulumi stack output --json`)")


def dry_run(plan: bench_plan.Plan, outputs: dict[str, Any], done: set[str], out=print) -> None:
    names = [n["name"] for n in outputs["nodes"]]
    cases = bench_plan.cases(plan, names)
    ports = bench_plan.server_ports(plan, cases)
    runs = [r for r in bench_plan.run_order(plan, cases) if r.run_id not in done]
    count = f"{plan.runs} runs" if plan.precision_points is None else (
        f"{plan.runs} to {plan.max_rounds} runs (until every interval against host is within "
        f"+-{plan.precision_points:g} points)")
    out(f"{len(cases)} cases x {count}, {plan.duration_s} s each after {plan.warmup_s} s warm-up"
        f" (profile {plan.profile}, stack {outputs['stack']}, {outputs['mode']} mode)")
    for case in cases:
        reason = static_skip(case, outputs)
        note = f"  skipped: {reason}" if reason else ""
        if not reason and case.network in ("overlay-encrypted", "macvlan", "ipvlan"):
            note = "  (probed first: skipped if this host cannot carry it)"
        out(f"  {case.case_id}{note}")
    runnable = [r for r in runs if static_skip(r.case, outputs) is None]
    est = bench_plan.estimate_s(plan, runnable)
    order = f"shuffled within rounds, seed {plan.seed}" if plan.shuffle else "interleaved by round"
    first = "in the first rounds " if plan.precision_points is not None else ""
    out(f"{len(runs)} runs to do {first}({len(runnable)} measured), {order}; estimated {est / 60:.1f} min "
        f"({bench_plan.RUN_OVERHEAD_S} s overhead per run, {bench_plan.SERVER_START_S:g} s per server)")
    out(f"server ports {min(ports.values())}-{max(ports.values())}: one per network, tool, protocol and node pair")


def _resumed(resume: Path, args: argparse.Namespace, held: contextlib.ExitStack) -> tuple[
        dict[str, Any], bench_plan.Plan, set[str]]:
    """A session to resume, checked as a dry run checks it: its metadata, its plan, and which
    runs are done. Unless this is a dry run, this process becomes the session's one writer
    first (`held` keeps the lock): another process running it is refused at once."""
    meta = store.read_metadata(resume)
    check_resumable(meta, resume)
    try:
        plan = bench_plan.Plan.from_json(meta["plan"])
    except (PlanError, TypeError, ValueError) as exc:
        raise store.SessionInputError(f"{resume / 'metadata.json'}: plan is not one this bench can run "
                                      f"({exc}): start a new session") from None
    if _matrix_given(args) and _plan_from_args(args).to_json() != plan.to_json():
        raise PlanError(f"--resume {resume} runs the plan stored there: drop the matrix options")
    bench_stack.validate(meta["stack_outputs"], source=f"{resume / 'metadata.json'}: stack_outputs")
    if not args.dry_run:
        held.enter_context(store.writer(resume))
    runs, damaged = store.read_runs(resume)
    for line in damaged:
        print(f"bench: {line}", file=sys.stderr)
    if damaged:
        print(f"bench: {len(damaged)} damaged line(s) of {resume / 'runs.jsonl'} left in place; their "
              "runs count as not done", file=sys.stderr)
    return meta, plan, store.done_ids(runs)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    held = contextlib.ExitStack()  # a resumed session's lock, until its summary
    try:
        meta, done = None, set()
        resume = Path(args.resume) if args.resume else None
        if resume is not None:
            meta, plan, done = _resumed(resume, args, held)
        else:
            plan = _plan_from_args(args)
        outputs = _outputs(args, meta)
        bench_plan.node_pairs([n["name"] for n in outputs["nodes"]], plan.pairs)
        if args.dry_run:
            dry_run(plan, outputs, done)
            return 0
        image_name = args.image or (meta["image"]["name"] if meta else bench_image.IMAGE_NAME)
        session = Session(outputs, plan, Path(args.results), image_name=image_name,
                          use_builtin_image=image_name == bench_image.IMAGE_NAME,
                          keep_going=args.keep_going, command_line=["python", "-m", "bench", *argv],
                          resume_dir=resume, progress=Progress(enabled=not args.quiet))
        summary = session.run()
    except UserError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("bench: interrupted before any run; nothing was measured", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        held.close()
    for line in summary.lines():
        print(line)
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_ENVIRONMENT if (summary.failed or summary.stopped_reason) else 0


if __name__ == "__main__":
    sys.exit(main())
