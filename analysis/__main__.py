"""python -m analysis [RESULTS_DIR ...] [--out DIR] [--merge]
python -m analysis compare A B [--all]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

from analysis import AnalysisError

DESCRIPTION = """\
Turn the runs `python -m bench` stored into the comparison table (printed), report.md,
report.html, runs.csv, summary.csv and PNG plots. RESULTS_DIR is a session directory, or a
directory of sessions (its latest session is taken); default: the latest session in results/.
`python -m analysis compare A B` compares two results, A the reference."""


def main_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="*", metavar="RESULTS_DIR",
                        help="session directories, or directories of sessions (latest taken)")
    parser.add_argument("--out", metavar="DIR", help="output directory (default: SESSION/analysis "
                        "for one session, RESULTS/analysis-<id> for several)")
    parser.add_argument("--merge", action="store_true",
                        help="merge sessions whose identifying metadata differ into the same cases")
    parser.add_argument("--plain", action="store_true", help="print the table as plain text even on a terminal")
    return parser


def compare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analysis compare",
                                     description="Per case and network: B against the reference A "
                                     "(the ratio B/A and whether Welch's t-test finds it significant).")
    parser.add_argument("a", metavar="A", help="reference results (session or directory of sessions)")
    parser.add_argument("b", metavar="B", help="changed results")
    parser.add_argument("--all", action="store_true", help="also show the cases that are not significant")
    return parser


def default_out(sessions) -> Path:
    if len(sessions) == 1:
        return sessions[0].path / "analysis"
    names = "\n".join(sorted(str(s.path.resolve()) for s in sessions))
    digest = hashlib.sha1(names.encode()).hexdigest()[:8]
    return sessions[-1].path.parent / f"analysis-{digest}"


def print_table(display, notes: list[str], plain: bool) -> None:
    if not plain and sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table
        table = Table(show_lines=False)
        for column in display.columns:
            table.add_column(str(column), overflow="fold")
        for row in display.itertuples(index=False):
            table.add_row(*[str(v) for v in row])
        console = Console()
        console.print(table)
        for line in notes:
            console.print(line, markup=False, highlight=False)
        return
    from analysis.report import markdown_table
    print(markdown_table(display))
    if notes:
        print()
        print("\n".join(notes))


def run_analysis(args) -> int:
    from analysis import load, parallel, precision, report
    from analysis import table as tbl

    # Bad paths fail here, before any work.
    load.resolve(args.results)
    if args.out:
        report.check_out(Path(args.out))
    with parallel.workers() as pool:
        sessions = load.load(args.results, pool=pool)
        problems = [p for s in sessions for p in s.problems]
        for problem in problems:
            print(problem, file=sys.stderr)
        for session in sessions:
            for warning in session.metadata.get("warnings") or []:
                print(f"warning: session {session.name}: {warning}", file=sys.stderr)
        out = Path(args.out) if args.out else default_out(sessions)
        report.prepare_out(out)  # an output that cannot be written fails here, before any work
        setups = load.assign_setups(sessions, args.merge)
        runs = load.runs_table(setups)
        providers = {label: members[0].metadata["stack_outputs"]["provider"] for label, members in setups.items()}
        summary = tbl.summarize(runs, providers, load.node_mtus(setups), precision.targets(setups))
        written = report.write(out, setups, runs, summary, problems, pool)
    notes = tbl.Footnotes()
    print_table(tbl.terminal_table(summary, notes), notes.lines(), args.plain)
    if problems:
        print(f"{len(problems)} damaged line(s) skipped (listed above and in report.md)", file=sys.stderr)
    print(f"wrote {out}/: {', '.join(written)}", file=sys.stderr)
    return 0


def run_compare(args) -> int:
    from analysis import load
    from analysis.compare import compare

    a, b = load.load([args.a]), load.load([args.b])
    for problem in [p for s in a + b for p in s.problems]:
        print(problem, file=sys.stderr)
    print("\n".join(compare(a, b, show_all=args.all)))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["compare"]:
            return run_compare(compare_parser().parse_args(argv[1:]))
        return run_analysis(main_parser().parse_args(argv))
    except AnalysisError as exc:
        print(f"analysis: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    try:
        code = main()
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # `python -m analysis | head`: the reader has what it wanted
        code = 1
    # Everything is written and closed; freeing the millions of objects of a large analysis
    # one by one at exit would add a quarter of a second for nothing.
    os._exit(code)
