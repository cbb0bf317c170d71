"""`python -m analysis`: turn the runs `python -m bench` stored into tables, statistics and plots.

load    read metadata.json + runs.jsonl (results format versions 1 and 2, docs/results-format.md)
stats   per-network statistics, overhead against host (Welch test, Fieller interval), VXLAN bound
table   the comparison table: one row per setup and case, columns per network
cpu     CPU per Gbit/s per network and the overlay's extra CPU against host (format 2)
precision  the half-width reached per case, against the target a --precision session set
plots   the PNG figures (matplotlib, Agg backend)
report  writes report.md, runs.csv, summary.csv, report.html and the plots
compare `python -m analysis compare A B`, in the manner of pyperf's compare_to
parallel the two helper processes (parser, plotter) that keep a large analysis within 5 s
"""

from common.errors import UsageError


class AnalysisError(UsageError):
    """Something the user can fix (a path, a flag, a results file); the message says what."""
