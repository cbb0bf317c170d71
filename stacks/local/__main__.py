"""python -m stacks.local up|down|status: the local lab on its own (Pulumi drives the same).

`up` and `status` print the stack outputs document (stacks/outputs.py) on stdout; progress
goes to stderr, so `python -m stacks.local up --name lab > outputs.json` works. `down` and
`residue` end with a note on stderr for each thing that looks like the lab's but is not.
"""
from __future__ import annotations

import argparse
import signal
import sys

import docker.errors

from common.errors import UserError
from stacks import outputs
from stacks.local import host, lab, spec


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m stacks.local", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="bring a lab up (idempotent; rebuilds a broken one)")
    p_up.add_argument("--name", required=True, help="lab name, 1-8 lowercase letters or digits")
    p_up.add_argument("--nodes", type=int, default=2, help="number of engine nodes (default 2)")
    p_up.add_argument("--mode", choices=outputs.MODES, default="classic",
                      help="classic: 2015 --cluster-store on a key-value node; swarm: swarm mode")
    p_up.add_argument("--link-rate", default=None, metavar="RATE",
                      help="shape each node's link with tc, e.g. 1gbit (default: unshaped)")
    p_up.add_argument("--mtu", type=int, default=1500, metavar="BYTES", help="lab link MTU (default 1500)")
    p_up.add_argument("--subnet", default=lab.DEFAULT_SUBNET, help=f"lab subnet (default {lab.DEFAULT_SUBNET})")
    p_up.add_argument("--access", choices=spec.ACCESS, default="unix",
                      help="how the outputs reach the engines: unix sockets (default), or ssh as on a "
                           "droplet (sshd in each node on a management network, ssh://root@ADDRESS)")
    p_up.add_argument("--management-subnet", default=spec.DEFAULT_MANAGEMENT_SUBNET, metavar="SUBNET",
                      help=f"subnet of the management network of --access ssh; the root namespace takes "
                           f"its first address (default {spec.DEFAULT_MANAGEMENT_SUBNET})")
    p_up.add_argument("--firewall", action="store_true",
                      help="each node drops what the DigitalOcean firewall would (iptables in its namespace)")
    p_up.add_argument("--bare", action="store_true",
                      help="machines only, as a cloud hands them over: engines (and the key-value store), "
                           "no swarm, no overlay network")
    p_up.add_argument("--retain", action="store_true", help="keep a partial lab when up fails (debugging)")
    p_down = sub.add_parser("down", help="remove everything a lab made")
    group = p_down.add_mutually_exclusive_group(required=True)
    group.add_argument("--name", help="the lab to remove")
    group.add_argument("--all", action="store_true",
                       help="remove every lab that carries overlay-bench's marks on this machine")
    p_status = sub.add_parser("status", help="print a lab's outputs if it is up")
    p_status.add_argument("--name", required=True)
    p_residue = sub.add_parser("residue", help="list what a lab left on this machine (empty: nothing)")
    p_residue.add_argument("--name", required=True)
    return parser.parse_args(argv)


def print_notes(name: str, left_alone: list[lab.Foreign]) -> None:
    for thing in left_alone:
        print(f"note: left alone, not made by overlay-bench for lab {name}: {thing}; "
              f"remove it with `{thing.remove}` if it is yours to remove", file=sys.stderr)


def down_all() -> int:
    """Every lab found by its marks; then the look-alikes of any lab name, reported."""
    failed = []
    for name in lab.list_labs():
        try:
            print_notes(name, lab.down(name))
        except lab.LabError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed.append(name)
    for name in lab.lab_like_names():
        if name not in failed:
            print_notes(name, lab.foreign(name))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "up":
            doc = lab.up(args.name, nodes=args.nodes, mode=args.mode, link_rate=args.link_rate,
                         mtu_bytes=args.mtu, subnet=args.subnet, retain=args.retain, access=args.access,
                         firewall=args.firewall, bare=args.bare, management_subnet=args.management_subnet)
            print(outputs.dumps(doc))
        elif args.command == "status":
            print(outputs.dumps(lab.status_of(args.name)))
        elif args.command == "residue":
            left = lab.residue(args.name)
            for kind, items in left.items():
                print(f"{kind}: {' '.join(map(str, items))}")
            print_notes(args.name, lab.foreign(args.name))
            return 1 if left else 0
        elif args.all:
            return down_all()
        else:
            print_notes(args.name, lab.down(args.name))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (docker.errors.APIError, host.HostError) as exc:
        # The engine or a host tool refused; one line, the partial lab is already gone.
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except lab.Interrupted as exc:
        kept = "kept (--retain)" if getattr(args, "retain", False) else "removed"
        print(f"interrupted by {signal.Signals(exc.signum).name}: the partial lab was {kept}",
              file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    return 0


if __name__ == "__main__":
    sys.exit(main())
