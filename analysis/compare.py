"""`python -m analysis compare A B`: per case and network, B against the reference A.

Modelled on pyperf's compare_to: the reference first, "1.05x slower" / "1.05x faster" in the
user's sense of better (more throughput, less latency), and the cases where Welch's test does
not tell A and B apart hidden and counted (`--all` shows them).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis import AnalysisError, stats
from analysis import table as tbl
from analysis.load import Session, assign_setups, runs_table
from bench.results_format import HIGHER_IS_BETTER, TOOL_METRICS

KEYS = [*tbl.CASE_KEYS, "network"]


def side_stats(sessions: list[Session], which: str) -> tuple[str, pd.DataFrame]:
    setups = assign_setups(sessions, merge=False)
    if len(setups) > 1:
        raise AnalysisError(f"{which} holds sessions of different setups ({', '.join(setups)}): "
                            "compare one setup against another")
    label = next(iter(setups))
    runs = runs_table(setups)
    runs = runs.assign(value=tbl.metric_values(runs))
    ok = runs[(runs["status"] == "ok") & runs["value"].notna()]
    desc = stats.describe(ok.set_index(KEYS)["value"], KEYS).reset_index()
    return label, desc


def compare(a_sessions: list[Session], b_sessions: list[Session], show_all: bool = False) -> list[str]:
    """The lines of the comparison (the command prints them)."""
    a_label, a = side_stats(a_sessions, "A")
    b_label, b = side_stats(b_sessions, "B")
    lines = [f"A (reference): {s.shown_path} [{a_label}: {s.identity_text()}]" for s in a_sessions]
    lines += [f"B (changed):   {s.shown_path} [{b_label}: {s.identity_text()}]" for s in b_sessions]
    keys = list(KEYS)
    a_nodes = set(a["server_node"]) | set(a["client_node"])
    b_nodes = set(b["server_node"]) | set(b["client_node"])
    if not a_nodes & b_nodes:
        # Two stacks never share node names: match cases on everything else.
        keys = [k for k in keys if k not in ("server_node", "client_node")]
        for side, name in ((a, "A"), (b, "B")):
            if side.duplicated(keys).any():
                raise AnalysisError(f"{name} measures a case on several node pairs and A and B have no "
                                    "node in common: cannot tell which pair to compare")
        lines.append("A and B have no node name in common: cases matched without node names.")
    lines.append("")
    both = a.merge(b, on=keys, how="outer", suffixes=("_a", "_b"), indicator=True)
    both = both.sort_values(keys, na_position="first", kind="stable")
    common = both[both["_merge"] == "both"].copy()
    p = stats.welch_p(common["mean_a"], common["sd_a"], common["n_a"],
                      common["mean_b"], common["sd_b"], common["n_b"])
    hidden = []
    for (_, row), p_value in zip(common.iterrows(), p):
        name = _case_name(row, keys)
        unit = TOOL_METRICS[row["tool"]][1]
        higher_better = TOOL_METRICS[row["tool"]][0] in HIGHER_IS_BETTER
        ratio = row["mean_b"] / row["mean_a"]
        significant = not math.isnan(p_value) and p_value < stats.ALPHA
        if significant:
            better = (ratio > 1) == higher_better
            factor = ratio if ratio >= 1 else 1 / ratio
            # Two decimals as pyperf, three when two would read "1.00x".
            digits = 2 if round(factor, 2) != 1 else 3
            verdict = f"{factor:.{digits}f}x {'faster' if better else 'slower'}"
        else:
            verdict = "not significant"
            hidden.append(name)
            if not show_all:
                continue
        p_text = "n<2" if math.isnan(p_value) else f"p={tbl.fmt_p(p_value)}".replace("=<", "<")
        lines.append(f"{name}: {_value(row, 'a', unit)} -> {_value(row, 'b', unit)}: {verdict} "
                     f"(B/A {ratio:.3f}, {p_text})")
    if hidden and not show_all:
        lines.append(f"{_count(len(hidden))} hidden as not significant (--all shows them): "
                     + "; ".join(hidden))
    elif not hidden:
        lines.append("No case hidden: every difference is significant.")
    for tag, name in (("left_only", "A"), ("right_only", "B")):
        only = both[both["_merge"] == tag]
        if len(only):
            lines.append(f"Only in {name}, not compared ({_count(len(only))}): "
                         + "; ".join(_case_name(r, keys) for _, r in only.iterrows()))
    if common.empty:
        lines.append("No case in common between A and B.")
    return lines


def _case_name(row, keys) -> str:
    name = f"{row['tool']} {row['protocol']} P{int(row['streams'])} {row['direction']}"
    if "server_node" in keys:
        name += f" {row['client_node']}->{row['server_node']}"
    name += f" {row['duration_s']:g}s"
    if not pd.isna(row["udp_target_mbps"]):
        name += f" @{row['udp_target_mbps']:g}M"
    return f"{name}, {row['network']}"


def _value(row, side: str, unit: str) -> str:
    sd = row[f"sd_{side}"]
    spread = "" if np.isnan(sd) else f" +- {sd:.1f}"
    return f"{row[f'mean_{side}']:.1f}{spread} {unit}"


def _count(n: int) -> str:
    return f"{n} case" + ("" if n == 1 else "s")
